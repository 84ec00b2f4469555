"""The five SESSION_INFO levels, declared once.

Everything else (the NDR codec, projection, the pywin32 dict form, output
columns, the sessions-file loader) is derived from ``FIELDS`` and ``LEVELS``.
Adding a field or a level touches this file only.

MS-SRVS 2.2.4.(11-15): SESSION_INFO_0/1/2/10/502. A level is a projection of
the 502 record; fields keep the 502 order.
"""

from __future__ import annotations

import enum
import functools
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

MAX_PREFERRED_LENGTH = 0xFFFFFFFF
U32_MAX = 0xFFFFFFFF


class UserFlags(enum.IntFlag):
    """sesiX_user_flags bits."""

    SESS_GUEST = 0x1
    SESS_NOENCRYPTION = 0x2


def user_flag_names(flags: int) -> list[str]:
    """Names of the bits set in ``flags``; unknown bits as ``0x...``."""
    return list(_user_flag_names(flags))


@functools.lru_cache(maxsize=256)
def _user_flag_names(flags: int) -> tuple[str, ...]:
    # Cached: a listing repeats the same few flag values on every row.
    names = [flag.name for flag in UserFlags if flags & flag and flag.name]
    # int(): the complement of an IntFlag stays inside its declared bits.
    unknown = flags & ~int(UserFlags.SESS_GUEST | UserFlags.SESS_NOENCRYPTION)
    if unknown:
        names.append(f"0x{unknown:X}")
    return tuple(names)


@dataclass(frozen=True)
class Field:
    """One SESSION_INFO_502 member."""

    name: str  # attribute of SessionInfo; the wire name is "sesi<level>_" + name
    kind: Literal["str", "u32"]
    win32_key: str  # pywin32's win32net key
    title: str  # human column heading
    doc: str


FIELDS: tuple[Field, ...] = (
    Field("cname", "str", "client_name", "Client", "computer the session comes from"),
    Field("username", "str", "user_name", "User", "account that set up the session"),
    Field("num_opens", "u32", "num_opens", "Opens", "files, devices and pipes open"),
    Field("time", "u32", "active_time", "Time", "seconds since the session was set up"),
    Field("idle_time", "u32", "idle_time", "Idle", "seconds since the last request"),
    Field("user_flags", "u32", "user_flags", "Flags", "SESS_GUEST / SESS_NOENCRYPTION"),
    Field("cltype_name", "str", "client_type", "Client type", "client software type"),
    Field("transport", "str", "transport", "Transport", "transport the session uses"),
)
FIELD_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
FIELD_BY_WIN32_KEY: dict[str, Field] = {f.win32_key: f for f in FIELDS}


def _pick(*names: str) -> tuple[Field, ...]:
    return tuple(FIELD_BY_NAME[n] for n in names)


LEVELS: dict[int, tuple[Field, ...]] = {
    0: _pick("cname"),
    1: _pick("cname", "username", "num_opens", "time", "idle_time", "user_flags"),
    2: _pick("cname", "username", "num_opens", "time", "idle_time", "user_flags", "cltype_name"),
    10: _pick("cname", "username", "time", "idle_time"),
    502: FIELDS,
}
VALID_LEVELS: tuple[int, ...] = tuple(LEVELS)
# Richest first: what a client tries when the caller did not choose a level.
FALLBACK_ORDER: tuple[int, ...] = (502, 10, 2, 1, 0)


class SessionInfo(NamedTuple):
    """One session, as SESSION_INFO_502 (the superset of every level).

    Fields a level does not carry are ``None``. String fields may also be
    ``None`` when the wire carried a NULL pointer.
    """

    cname: str | None = None
    username: str | None = None
    num_opens: int | None = None
    time: int | None = None
    idle_time: int | None = None
    user_flags: int | None = None
    cltype_name: str | None = None
    transport: str | None = None

    def project(self, level: int) -> SessionInfo:
        """The same session as the server would send it at ``level``."""
        if level == 502:  # every field: the projection is the record itself
            return self
        keep = _LEVEL_MASK[level]
        return SessionInfo._make(v if k else None for v, k in zip(self, keep, strict=True))

    def to_win32(self, level: int = 502) -> dict[str, Any]:
        """pywin32 ``win32net.NetSessionEnum`` dict for ``level``."""
        keys, pick = _WIN32_VIEW[level]
        return dict(zip(keys, pick(self), strict=True))

    @classmethod
    def from_win32(cls, record: Mapping[str, Any]) -> SessionInfo:
        """Build from a pywin32-style dict; unknown keys are ignored, values checked.

        Raises ``ValueError`` with the offending key when a value has the wrong type.
        """
        values: dict[str, Any] = {}
        for key, field in FIELD_BY_WIN32_KEY.items():
            if key not in record or record[key] is None:
                continue
            value = record[key]
            if field.kind == "str":
                if not isinstance(value, str):
                    raise ValueError(f"{key!r} must be a string, not {type(value).__name__}")
            elif isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{key!r} must be an integer, not {type(value).__name__}")
            elif not 0 <= value <= U32_MAX:
                raise ValueError(f"{key!r} must be between 0 and {U32_MAX}, not {value}")
            values[field.name] = value
        return cls(**values)


_LEVEL_MASK: dict[int, tuple[bool, ...]] = {
    level: tuple(f in fields for f in FIELDS) for level, fields in LEVELS.items()
}


def _picker(indexes: tuple[int, ...]) -> Callable[[SessionInfo], tuple[Any, ...]]:
    if len(indexes) == len(FIELDS):
        return tuple  # the whole record, in order
    if len(indexes) == 1:
        (only,) = indexes
        return lambda info: (info[only],)
    return operator.itemgetter(*indexes)


# Per level: the pywin32 keys and a C-level picker of the matching SessionInfo fields.
_WIN32_VIEW: dict[int, tuple[tuple[str, ...], Callable[[SessionInfo], tuple[Any, ...]]]] = {
    level: (tuple(f.win32_key for f in fields), _picker(tuple(FIELDS.index(f) for f in fields)))
    for level, fields in LEVELS.items()
}


def check_level(level: int) -> None:
    """Raise ``ValueError`` for a level outside 0, 1, 2, 10, 502."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(map(str, VALID_LEVELS))}, not {level}")


def columns(level: int) -> list[str]:
    """The pywin32 keys a level carries, in wire order (output columns)."""
    return [f.win32_key for f in LEVELS[level]]
