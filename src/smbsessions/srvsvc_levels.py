"""The SHARE_INFO and SERVER_INFO levels, declared once (MS-SRVS 2.2.4.22-2.2.4.41).

Like ``levels.py`` for sessions: each level is a tuple of fields taken from
one superset record (``ShareInfo``, ``ServerInfo``); the NDR codec
(``srvsvc_ndr``), projection and the processing rules (``srvsvc_rules``) all
derive from ``SHARE_LEVELS`` and ``SERVER_LEVELS``. Unlike session levels,
share levels do not keep one field order (SHARE_INFO_501 puts its flags
after the remark, SHARE_INFO_503 its server name before the security
descriptor), so each level lists its fields in wire order.

``*_ARMS`` are the union cases the IDLs declare (MS-SRVS and Samba's
srvsvc.idl together). A level with an arm but no answer here is refused with
ERROR_INVALID_LEVEL and a NULL arm; a level without an arm gets the
discriminant alone (the IDL's ``default`` case), exactly as Samba answers.

``ServerIdentity`` is what a server says about itself: the source of every
SERVER_INFO level and of the share list.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

U32_MAX = 0xFFFFFFFF


class ShareType(enum.IntFlag):
    """shiX_type (MS-SRVS 2.2.2.4): a base type in the low bits plus flags."""

    STYPE_DISKTREE = 0x0
    STYPE_PRINTQ = 0x1
    STYPE_DEVICE = 0x2
    STYPE_IPC = 0x3
    STYPE_CLUSTER_FS = 0x02000000
    STYPE_CLUSTER_SOFS = 0x04000000
    STYPE_CLUSTER_DFS = 0x08000000
    STYPE_TEMPORARY = 0x40000000
    STYPE_SPECIAL = 0x80000000


class ServerType(enum.IntFlag):
    """sv101_type bits (MS-SRVS 2.2.2.7) a Windows server sets."""

    SV_TYPE_WORKSTATION = 0x00000001
    SV_TYPE_SERVER = 0x00000002
    SV_TYPE_DOMAIN_CTRL = 0x00000008
    SV_TYPE_NT = 0x00001000
    SV_TYPE_SERVER_NT = 0x00008000
    SV_TYPE_POTENTIAL_BROWSER = 0x00010000


PLATFORM_ID_NT = 500
DEFAULT_SERVER_TYPE = (
    ServerType.SV_TYPE_WORKSTATION | ServerType.SV_TYPE_SERVER | ServerType.SV_TYPE_NT
    | ServerType.SV_TYPE_SERVER_NT
)
IPC_SHARE_TYPE = ShareType.STYPE_IPC | ShareType.STYPE_SPECIAL  # 0x80000003, as Windows types IPC$

FieldKind = Literal["str", "u32", "sd"]


@dataclass(frozen=True)
class Field:
    """One member of a superset record.

    ``kind``: ``str`` is a ``[string] wchar_t*`` (a pointer in the fixed part, the
    string deferred); ``u32`` a DWORD; ``sd`` a security descriptor, which the
    wire carries as two members (a DWORD length, ``shiX_reserved``, and a
    pointer to that many bytes, deferred like a string).
    """

    name: str
    kind: FieldKind
    wire: str  # MS-SRVS member name without the level prefix ("netname" -> shi1_netname)


def _kept_values(record: ShareInfo | ServerInfo, level_fields: tuple[Field, ...]) -> list[object]:
    """``record``'s values with every field the level does not carry set to None."""
    keep = {f.name for f in level_fields}
    return [value if name in keep else None
            for value, name in zip(record, record._fields, strict=True)]


class ShareInfo(NamedTuple):
    """One share as SHARE_INFO_503 plus the 501/1005 flags (the superset of every level).

    Fields a level does not carry are ``None``; string fields may also be ``None``
    for a NULL pointer on the wire.
    """

    netname: str | None = None
    type: int | None = None
    remark: str | None = None
    permissions: int | None = None
    max_uses: int | None = None
    current_uses: int | None = None
    path: str | None = None
    passwd: str | None = None
    servername: str | None = None
    flags: int | None = None
    security_descriptor: bytes | None = None

    def project(self, level: int) -> ShareInfo:
        """The same share as a server sends it at ``level``."""
        return ShareInfo._make(_kept_values(self, SHARE_LEVELS[level]))


class ServerInfo(NamedTuple):
    """The server as SERVER_INFO_102 (the superset of levels 100, 101 and 102)."""

    platform_id: int | None = None
    name: str | None = None
    version_major: int | None = None
    version_minor: int | None = None
    type: int | None = None
    comment: str | None = None
    users: int | None = None
    disc: int | None = None
    hidden: int | None = None
    announce: int | None = None
    anndelta: int | None = None
    licenses: int | None = None
    userpath: str | None = None

    def project(self, level: int) -> ServerInfo:
        """The same record as a server sends it at ``level``."""
        return ServerInfo._make(_kept_values(self, SERVER_LEVELS[level]))


SHARE_FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        Field("netname", "str", "netname"),
        Field("type", "u32", "type"),
        Field("remark", "str", "remark"),
        Field("permissions", "u32", "permissions"),
        Field("max_uses", "u32", "max_uses"),
        Field("current_uses", "u32", "current_uses"),
        Field("path", "str", "path"),
        Field("passwd", "str", "passwd"),
        Field("servername", "str", "servername"),
        Field("flags", "u32", "flags"),
        Field("security_descriptor", "sd", "security_descriptor"),
    )
}
SERVER_FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        Field("platform_id", "u32", "platform_id"),
        Field("name", "str", "name"),
        Field("version_major", "u32", "version_major"),
        Field("version_minor", "u32", "version_minor"),
        Field("type", "u32", "type"),
        Field("comment", "str", "comment"),
        Field("users", "u32", "users"),
        Field("disc", "u32", "disc"),
        Field("hidden", "u32", "hidden"),
        Field("announce", "u32", "announce"),
        Field("anndelta", "u32", "anndelta"),
        Field("licenses", "u32", "licenses"),
        Field("userpath", "str", "userpath"),
    )
}


def _share(*names: str) -> tuple[Field, ...]:
    return tuple(SHARE_FIELDS[n] for n in names)


def _server(*names: str) -> tuple[Field, ...]:
    return tuple(SERVER_FIELDS[n] for n in names)


_SHARE_2 = ("netname", "type", "remark", "permissions", "max_uses", "current_uses", "path", "passwd")
SHARE_LEVELS: dict[int, tuple[Field, ...]] = {
    0: _share("netname"),
    1: _share("netname", "type", "remark"),
    2: _share(*_SHARE_2),
    501: _share("netname", "type", "remark", "flags"),
    502: _share(*_SHARE_2, "security_descriptor"),
    503: _share(*_SHARE_2, "servername", "security_descriptor"),
    1004: _share("remark"),
    1005: _share("flags"),
    1006: _share("max_uses"),
}
SERVER_LEVELS: dict[int, tuple[Field, ...]] = {
    100: _server("platform_id", "name"),
    101: _server("platform_id", "name", "version_major", "version_minor", "type", "comment"),
    102: tuple(SERVER_FIELDS.values()),
}

# Levels NetrShareEnum / NetrShareEnumSticky answer (MS-SRVS 3.1.4.8, 3.1.4.25), and
# NetrShareGetInfo (3.1.4.10). Sticky enumeration has no 501 (Windows answers
# ERROR_INVALID_LEVEL, which smbtorture's NetShareEnum expects).
SHARE_ENUM_LEVELS = frozenset({0, 1, 2, 501, 502, 503})
SHARE_ENUM_STICKY_LEVELS = frozenset({0, 1, 2, 502, 503})
SHARE_GET_INFO_LEVELS = frozenset({0, 1, 2, 501, 502, 503, 1004, 1005, 1006})
SERVER_INFO_LEVELS = frozenset(SERVER_LEVELS)

# Union arms (pointer cases) of SHARE_ENUM_UNION / SHARE_INFO / SERVER_INFO in either IDL.
SHARE_ENUM_ARMS = frozenset({0, 1, 2, 501, 502, 503, 1004, 1005, 1006, 1007, 1501})
SHARE_INFO_ARMS = SHARE_ENUM_ARMS
SERVER_INFO_ARMS = frozenset(
    {100, 101, 102, 103, 402, 403, 502, 503, 599, 1005, 1010, 1016, 1017, 1018, 1107, 1501, 1502, 1503,
     1506, 1509, 1510, 1511, 1512, 1513, 1514, 1515, 1516, 1518, 1520, 1521, 1522, 1523, 1524, 1525,
     1528, 1529, 1530, *range(1533, 1551), 1552, 1553, 1554, 1555, 1556}
)

IPC_SHARE = ShareInfo(
    netname="IPC$", type=int(IPC_SHARE_TYPE), remark="Remote IPC", permissions=0, max_uses=U32_MAX,
    current_uses=0, path="", passwd=None, servername="*", flags=0, security_descriptor=None,
)


def decoy_share(spec: str) -> ShareInfo:
    """A listed-only share from ``NAME`` or ``NAME:REMARK``.

    A name ending in ``$`` is a special (administrative) share, typed
    STYPE_DISKTREE | STYPE_SPECIAL as Windows types ``ADMIN$`` and ``C$``; the
    path is Windows-looking and never refers to this host's filesystem.
    Raises ``ValueError`` for an empty or over-long name.
    """
    name, _, remark = spec.partition(":")
    if not name or len(name) > 80 or any(c in name for c in '\\/[]:|<>+=;,*?"') or not name.isprintable():
        raise ValueError(f"bad share name {name!r}")
    special = name.endswith("$")
    if name.upper() == "ADMIN$":
        path, remark = "C:\\Windows", remark or "Remote Admin"
    elif special and len(name) == 2 and name[0].isalpha():
        path, remark = f"{name[0].upper()}:\\", remark or "Default share"
    else:
        path = f"C:\\Shares\\{name.rstrip('$')}"
    share_type = ShareType.STYPE_DISKTREE | (ShareType.STYPE_SPECIAL if special else 0)
    return ShareInfo(
        netname=name, type=int(share_type), remark=remark, permissions=0, max_uses=U32_MAX,
        current_uses=0, path=path, passwd=None, servername="*", flags=0, security_descriptor=None,
    )


@dataclass(frozen=True)
class ServerIdentity:
    """What the server says about itself through srvsvc (and the NTLM target names).

    ``name`` is sent exactly as configured (no upper-casing); ``shares`` are
    listed by NetrShareEnum after ``IPC$`` and never served.
    """

    name: str = "SMBSESSIONS"
    domain: str = "WORKGROUP"
    comment: str = ""
    version_major: int = 10
    version_minor: int = 0
    server_type: int = int(DEFAULT_SERVER_TYPE)
    decoy_shares: tuple[ShareInfo, ...] = field(default=())

    def shares(self) -> list[ShareInfo]:
        """Every share NetrShareEnum lists, IPC$ first, in configuration order."""
        return [IPC_SHARE, *self.decoy_shares]

    def server_info(self) -> ServerInfo:
        """The SERVER_INFO_102 record (lower levels are its projections)."""
        return ServerInfo(
            platform_id=PLATFORM_ID_NT, name=self.name, version_major=self.version_major,
            version_minor=self.version_minor, type=self.server_type, comment=self.comment,
            users=U32_MAX, disc=15, hidden=0, announce=240, anndelta=3000, licenses=0, userpath="c:\\",
        )
