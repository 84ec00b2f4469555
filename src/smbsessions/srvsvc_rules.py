"""MS-SRVS share, server-info and time-of-day calls as pure functions (3.1.4.8-3.1.4.21).

Input: the server's ``ServerIdentity`` (its shares and what it says about
itself), who is calling, the decoded request. Output: the response to encode.
Like ``rules.py`` for sessions; no I/O.

Choices, made once here:

* Every answer is at exactly the level asked, or ERROR_INVALID_LEVEL with a
  NULL arm (or no arm, for a level the IDL has none for). Never another level.
* Access, as Windows answers it and as smbtorture's rpc.srvsvc expects: levels
  0 and 1 (and 501, 1004-1006 of NetrShareGetInfo) for anyone who can open
  the pipe, null sessions included; 2, 502 and 503 (and 501 of NetrShareEnum)
  for administrators only (ERROR_ACCESS_DENIED otherwise). SERVER_INFO 100 and
  101 for anyone, 102 for administrators. Denial is checked after the level.
* PreferedMaximumLength and ResumeHandle as for sessions (``rules``): 4 bytes
  per fixed member, 2 per UTF-16 unit of each string with its NUL, the
  descriptor's bytes; the first entry always goes; the handle is the 1-based
  index of the last entry sent, 0 on a complete answer.
* Share names compare case-insensitively (as Windows and Samba do).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

from .levels import MAX_PREFERRED_LENGTH
from .messages import (
    RemoteTodResponse,
    ServerGetInfoRequest,
    ServerGetInfoResponse,
    ShareCheckRequest,
    ShareCheckResponse,
    ShareEnumRequest,
    ShareEnumResponse,
    ShareGetInfoRequest,
    ShareGetInfoResponse,
    TimeOfDay,
)
from .rules import Caller, utf16_length
from .srvsvc_levels import (
    SERVER_INFO_ARMS,
    SERVER_INFO_LEVELS,
    SERVER_LEVELS,
    SHARE_ENUM_LEVELS,
    SHARE_ENUM_STICKY_LEVELS,
    SHARE_GET_INFO_LEVELS,
    SHARE_LEVELS,
    ServerIdentity,
    ShareInfo,
)
from .status import NetApiStatus

# Levels only administrators may read.
ADMIN_SHARE_LEVELS = frozenset({2, 502, 503})
ADMIN_SHARE_ENUM_LEVELS = ADMIN_SHARE_LEVELS | {501}
ADMIN_SERVER_LEVELS = frozenset({102})
# The clock tick Windows reports, in 0.0001 s units.
TOD_TICK_INTERVAL = 310


def _is_admin(caller: Caller) -> bool:
    return caller.authenticated and caller.admin


def share_entry_size(level: int, share: ShareInfo) -> int:
    """Bytes a share counts against PreferedMaximumLength at ``level``."""
    size = 0
    for field in SHARE_LEVELS[level]:
        value = getattr(share, field.name)
        if field.kind == "u32":
            size += 4
        elif field.kind == "str":
            size += 4 + (0 if value is None else 2 * (utf16_length(value) + 1))
        else:
            size += 8 + (0 if value is None else len(value))
    return size


def enumerate_shares(
    shares: Sequence[ShareInfo], request: ShareEnumRequest, caller: Caller, sticky: bool = False
) -> ShareEnumResponse:
    """NetrShareEnum (opnum 15), or NetrShareEnumSticky (36) with ``sticky``."""
    level = request.level
    finished = None if request.resume_handle is None else 0

    def refuse(status: int) -> ShareEnumResponse:
        # The client's own (empty) container goes back, as Windows and Samba answer.
        entries: list[ShareInfo] | None = [] if request.container and level in SHARE_LEVELS else None
        return ShareEnumResponse(level, entries, 0, finished, status)

    # "If the Level parameter is not equal to one of the valid values, the server MUST fail
    # the call with an ERROR_INVALID_LEVEL error code."
    if level not in (SHARE_ENUM_STICKY_LEVELS if sticky else SHARE_ENUM_LEVELS):
        return refuse(NetApiStatus.ERROR_INVALID_LEVEL)
    if level in ADMIN_SHARE_ENUM_LEVELS and not _is_admin(caller):
        return refuse(NetApiStatus.ERROR_ACCESS_DENIED)
    start = request.resume_handle or 0
    if start >= len(shares) and start:
        return ShareEnumResponse(level, [] if request.container else None, 0, finished,
                                 NetApiStatus.NERR_Success)
    rest = list(shares[start:])
    total = len(rest)
    if request.prefmaxlen == MAX_PREFERRED_LENGTH:
        taken = total
    else:
        taken, used = 0, 0
        for share in rest:
            used += share_entry_size(level, share)
            if taken and used > request.prefmaxlen:
                break
            taken += 1
    entries = [share.project(level) for share in rest[:taken]]
    if taken == total:
        return ShareEnumResponse(level, entries, total, finished, NetApiStatus.NERR_Success)
    resume = None if request.resume_handle is None else start + taken
    return ShareEnumResponse(level, entries, total, resume, NetApiStatus.ERROR_MORE_DATA)


def find_share(shares: Sequence[ShareInfo], name: str) -> ShareInfo | None:
    """The share called ``name`` (case-insensitive), or None."""
    wanted = name.casefold()
    for share in shares:
        if share.netname is not None and share.netname.casefold() == wanted:
            return share
    return None


def share_get_info(
    shares: Sequence[ShareInfo], request: ShareGetInfoRequest, caller: Caller
) -> ShareGetInfoResponse:
    """NetrShareGetInfo (opnum 16, MS-SRVS 3.1.4.10)."""
    level = request.level
    if level not in SHARE_GET_INFO_LEVELS:
        return ShareGetInfoResponse(level, None, NetApiStatus.ERROR_INVALID_LEVEL)
    if level in ADMIN_SHARE_LEVELS and not _is_admin(caller):
        return ShareGetInfoResponse(level, None, NetApiStatus.ERROR_ACCESS_DENIED)
    share = find_share(shares, request.net_name)
    # "If the share is not found ..., the server MUST fail the call with NERR_NetNameNotFound."
    if share is None:
        return ShareGetInfoResponse(level, None, NetApiStatus.NERR_NetNameNotFound)
    return ShareGetInfoResponse(level, share.project(level), NetApiStatus.NERR_Success)


def share_check(shares: Sequence[ShareInfo], request: ShareCheckRequest) -> ShareCheckResponse:
    """NetrShareCheck (opnum 20, 3.1.4.14): is ``device`` (a local path) shared, and as what."""
    # IPC$'s path is "" (as on Windows), so NetrShareCheck("") finds IPC$: smbtorture checks
    # every path NetrShareGetInfo level 2 returns, IPC$'s included.
    wanted = request.device.casefold().rstrip("\\")
    for share in shares:
        if share.path is not None and share.path.casefold().rstrip("\\") == wanted:
            return ShareCheckResponse(share.type or 0, NetApiStatus.NERR_Success)
    return ShareCheckResponse(0, NetApiStatus.NERR_DeviceNotShared)


def server_get_info(
    identity: ServerIdentity, request: ServerGetInfoRequest, caller: Caller
) -> ServerGetInfoResponse:
    """NetrServerGetInfo (opnum 21, 3.1.4.17) at levels 100, 101 and 102."""
    level = request.level
    if level not in SERVER_INFO_LEVELS:
        return ServerGetInfoResponse(level, None, NetApiStatus.ERROR_INVALID_LEVEL)
    if level in ADMIN_SERVER_LEVELS and not _is_admin(caller):
        return ServerGetInfoResponse(level, None, NetApiStatus.ERROR_ACCESS_DENIED)
    assert level in SERVER_LEVELS and level in SERVER_INFO_ARMS
    return ServerGetInfoResponse(level, identity.server_info().project(level), NetApiStatus.NERR_Success)


def time_of_day(now: _dt.datetime, uptime_seconds: float) -> TimeOfDay:
    """TIME_OF_DAY_INFO for the aware datetime ``now`` (MS-SRVS 2.2.4.105).

    The clock fields are UTC; ``timezone`` is minutes *west* of UTC (local
    time + timezone = UTC), as Windows fills tod_timezone.
    """
    offset = now.utcoffset()
    if offset is None:
        raise ValueError("now must be timezone-aware")
    utc = now.astimezone(_dt.UTC)
    return TimeOfDay(
        elapsed=int(utc.timestamp()) & 0xFFFFFFFF,
        msecs=int(uptime_seconds * 1000) & 0xFFFFFFFF,
        hours=utc.hour,
        mins=utc.minute,
        secs=utc.second,
        hunds=utc.microsecond // 10000,
        timezone=-int(offset.total_seconds() // 60),
        tinterval=TOD_TICK_INTERVAL,
        day=utc.day,
        month=utc.month,
        year=utc.year,
        weekday=(utc.weekday() + 1) % 7,  # 0 = Sunday
    )


def remote_tod(now: _dt.datetime, uptime_seconds: float) -> RemoteTodResponse:
    """NetrRemoteTOD (opnum 28, 3.1.4.21): open to every caller."""
    return RemoteTodResponse(time_of_day(now, uptime_seconds), NetApiStatus.NERR_Success)
