"""The srvsvc messages: the [in] and [out] parameters of each operation, as values.

The codecs read and write them (``ndr`` for NetrSessionEnum / NetrSessionDel,
``srvsvc_ndr`` for the share, server and time-of-day calls); the client, the
server endpoint and the rules pass them around. Nothing here knows a byte of
NDR, as h11 keeps its ``_events.py`` apart from its readers and writers.
"""

from __future__ import annotations

from dataclasses import dataclass

from .levels import MAX_PREFERRED_LENGTH, SessionInfo
from .srvsvc_levels import ServerInfo, ShareInfo

# --------------------------------------------------------------------------- sessions (opnums 12, 13)


@dataclass(frozen=True, slots=True)
class EnumRequest:
    """NetrSessionEnum [in] parameters.

    ``resume_handle=None`` sends a NULL ResumeHandle pointer;
    ``container=False`` sends a NULL container pointer (a "count only" query).
    """

    level: int
    server_name: str | None = None
    client_name: str | None = None
    user_name: str | None = None
    prefmaxlen: int = MAX_PREFERRED_LENGTH
    resume_handle: int | None = 0
    container: bool = True


@dataclass(frozen=True, slots=True)
class EnumResponse:
    """NetrSessionEnum [out] parameters and return value.

    ``entries`` is ``None`` when the container pointer was NULL or the level
    has no arm (the server answered an unknown level).
    """

    level: int
    entries: list[SessionInfo] | None
    total_entries: int
    resume_handle: int | None
    status: int


@dataclass(frozen=True, slots=True)
class DelRequest:
    """NetrSessionDel [in] parameters."""

    server_name: str | None = None
    client_name: str | None = None
    user_name: str | None = None


# --------------------------------------------------------------------------- shares, server, time of day


@dataclass(frozen=True, slots=True)
class ShareEnumRequest:
    """NetrShareEnum / NetrShareEnumSticky [in]; ``container=False`` sends a NULL arm."""

    level: int
    server_name: str | None = None
    prefmaxlen: int = MAX_PREFERRED_LENGTH
    resume_handle: int | None = 0
    container: bool = True


@dataclass(frozen=True, slots=True)
class ShareEnumResponse:
    """NetrShareEnum [out]; ``entries=None`` is a NULL container (or no arm at all)."""

    level: int
    entries: list[ShareInfo] | None
    total_entries: int
    resume_handle: int | None
    status: int


@dataclass(frozen=True, slots=True)
class ShareGetInfoRequest:
    net_name: str
    level: int
    server_name: str | None = None


@dataclass(frozen=True, slots=True)
class ShareGetInfoResponse:
    level: int
    info: ShareInfo | None
    status: int


@dataclass(frozen=True, slots=True)
class ShareCheckRequest:
    device: str
    server_name: str | None = None


@dataclass(frozen=True, slots=True)
class ShareCheckResponse:
    type: int
    status: int


@dataclass(frozen=True, slots=True)
class ServerGetInfoRequest:
    level: int
    server_name: str | None = None


@dataclass(frozen=True, slots=True)
class ServerGetInfoResponse:
    level: int
    info: ServerInfo | None
    status: int


@dataclass(frozen=True, slots=True)
class TimeOfDay:
    """TIME_OF_DAY_INFO (MS-SRVS 2.2.4.105); ``timezone`` is signed minutes west of UTC."""

    elapsed: int
    msecs: int
    hours: int
    mins: int
    secs: int
    hunds: int
    timezone: int
    tinterval: int
    day: int
    month: int
    year: int
    weekday: int


@dataclass(frozen=True, slots=True)
class RemoteTodResponse:
    tod: TimeOfDay | None
    status: int
