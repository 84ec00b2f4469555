"""MS-SRVS 3.1.4.5 (NetrSessionEnum) and 3.1.4.6 (NetrSessionDel) as pure functions.

Input: the server's session list (502 records, in a stable order), who is
calling, and the decoded request. Output: exactly what the spec prescribes.
No I/O; the server endpoint only moves bytes around these functions.

Choices the spec leaves open, made once here:

* Resume handle: the number of list positions already consumed, i.e. the
  1-based index of the last entry sent. A call resumes at 0-based index
  ``resume_handle`` of the *unfiltered* list (as Samba and Windows do), so a
  value of 0 always means "from the start" and every page makes progress.
  On a complete answer the handle returned is 0 (enumeration finished).
* PreferedMaximumLength accounting, per entry: 4 bytes for every DWORD or
  pointer of the level's structure plus 2 bytes per UTF-16 code unit of each
  string, its NUL included (the structure-plus-strings sum Win32 buffers hold).
  Entries are added while the running sum stays within the limit; the first
  entry is always sent, so paging always progresses. MAX_PREFERRED_LENGTH
  sends everything.
* Order of checks (enum): anonymous caller, policy, ClientName, UserName,
  level, per-level access, resume position, qualifiers.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from .addresses import bracketed, canonical_ip
from .levels import LEVELS, MAX_PREFERRED_LENGTH, SessionInfo
from .messages import DelRequest, EnumRequest, EnumResponse
from .status import NetApiStatus

# Names longer than this many UTF-16 characters *including* the NUL are refused.
MAX_NAME_CHARS = 1024
# Levels that Windows' older default (and --session-info authenticated) opens
# to any authenticated user; 1, 2 and 502 always need an administrator.
UNPRIVILEGED_LEVELS = frozenset({0, 10})


class SessionInfoPolicy(enum.StrEnum):
    """Who may enumerate, like Windows' SrvsvcSessionInfo security descriptor."""

    ADMINS = "admins"  # Windows 10 1607+ / Server 2019 default: administrators only
    AUTHENTICATED = "authenticated"  # older Windows: levels 0 and 10 for any authenticated user


@dataclass(frozen=True, slots=True)
class Caller:
    """The identity behind an RPC call, as the SMB session established it."""

    authenticated: bool
    admin: bool = False


ANONYMOUS = Caller(authenticated=False)


@dataclass(frozen=True, slots=True)
class EnumResult:
    status: int
    level: int
    entries: list[SessionInfo]
    total_entries: int
    resume_handle: int | None

    def to_response(self, container: bool = True) -> EnumResponse:
        """The NDR response; ``container=False`` answers a NULL-container request.

        An unknown level has no union arm, so it carries no container at all.
        """
        entries = self.entries if container and self.level in LEVELS else None
        return EnumResponse(self.level, entries, self.total_entries, self.resume_handle, self.status)


@dataclass(frozen=True, slots=True)
class DelResult:
    status: int
    indices: list[int]  # positions in the session list to close, in list order


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units (characters outside the BMP count twice)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def entry_size(level: int, info: SessionInfo) -> int:
    """Bytes an entry counts against PreferedMaximumLength (see module docstring)."""
    size = 0
    for field in LEVELS[level]:
        size += 4
        if field.kind == "str":
            value = getattr(info, field.name)
            if value is not None:
                size += 2 * (utf16_length(value) + 1)
    return size


def _given(name: str | None) -> bool:
    """A NULL or zero-length qualifier means "not specified"."""
    return bool(name)


def _too_long(name: str | None) -> bool:
    return name is not None and utf16_length(name) + 1 > MAX_NAME_CHARS


def canonical_client_name(name: str) -> str:
    """A client name as Windows writes sesi502_cname: ``\\\\NAME``, ``\\\\<ipv4>``, ``\\\\[<ipv6>]``.

    One leading ``\\\\`` whatever was given (Samba sends none); an IP address in
    its canonical text (``0:0::1`` -> ``::1``; IPv4-mapped IPv6 as IPv4); names
    kept as they are. The one client-name canonicaliser: the client, the server's
    session table, the watch store and the filters all use it.
    """
    bare = name.lstrip("\\")
    # Fast path (most names; every entry of a large listing): without ':' and
    # brackets a name is an IPv4 address or a host name, both kept as they are:
    # ipaddress accepts only canonical dotted quads (no leading zeros), so a
    # valid one already is its canonical text, and anything else (127.0.0.300,
    # an embedded NUL, 1.2.3.4%x) is a name. No parsing needed.
    if ":" not in bare and not bare.startswith("["):
        return "\\\\" + bare
    return _canonical_bracketed_or_v6(bare)


@lru_cache(maxsize=4096)
def _canonical_bracketed_or_v6(bare: str) -> str:
    if bare.startswith("[") and bare.endswith("]"):
        bare = bare[1:-1]
    address = canonical_ip(bare)
    return "\\\\" + (bare if address is None else bracketed(address))


def _client_key(name: str) -> str:
    """Comparable form of a client name: canonical, case-folded."""
    return canonical_client_name(name).casefold()


def session_matches(info: SessionInfo, client_name: str | None, user_name: str | None) -> bool:
    """True when ``info`` passes every given qualifier (names compare case-insensitively)."""
    if _given(client_name) and (
        info.cname is None or _client_key(info.cname) != _client_key(client_name or "")
    ):
        return False
    return not (
        _given(user_name)
        and (info.username is None or info.username.casefold() != (user_name or "").casefold())
    )


def not_found_status(sessions: Sequence[SessionInfo], client_name: str | None) -> int:
    """Which "not found" applies when the qualifiers matched nothing in ``sessions``.

    NERR_ClientNameNotFound if no session comes from the client, else
    NERR_UserNotFound (the client is there, the user is not).
    """
    if _given(client_name) and not any(session_matches(s, client_name, None) for s in sessions):
        return NetApiStatus.NERR_ClientNameNotFound
    return NetApiStatus.NERR_UserNotFound


def check_enum_access(caller: Caller, level: int | None, policy: SessionInfoPolicy) -> int | None:
    """ERROR_ACCESS_DENIED when ``caller`` may not enumerate at ``level``, else None.

    ``level=None`` asks whether the caller may enumerate at any level at all.
    """
    if not caller.authenticated:
        return NetApiStatus.ERROR_ACCESS_DENIED
    if caller.admin:
        return None
    if policy is SessionInfoPolicy.ADMINS or (level is not None and level not in UNPRIVILEGED_LEVELS):
        return NetApiStatus.ERROR_ACCESS_DENIED
    return None


def _error(status: int, request: EnumRequest) -> EnumResult:
    resume = None if request.resume_handle is None else 0
    return EnumResult(status, request.level, [], 0, resume)


def enumerate_sessions(
    sessions: Sequence[SessionInfo],
    request: EnumRequest,
    caller: Caller,
    policy: SessionInfoPolicy = SessionInfoPolicy.ADMINS,
) -> EnumResult:
    """Answer NetrSessionEnum over ``sessions`` (MS-SRVS 3.1.4.5)."""
    level = request.level
    # "The server SHOULD enforce the security measures ..." (denial before anything else,
    # as Windows and Samba do, so a denied caller learns nothing about names or levels).
    denied = check_enum_access(caller, None, policy)
    if denied is not None:
        return _error(denied, request)
    client, user = request.client_name, request.user_name
    # "If a ClientName is specified, it MUST start with "\\"; otherwise ... NERR_InvalidComputer."
    if _given(client) and not (client or "").startswith("\\\\"):
        return _error(NetApiStatus.NERR_InvalidComputer, request)
    # "... contains more than 1,024 characters, including the terminating null character,
    # ... ERROR_INVALID_PARAMETER" (ClientName and UserName alike).
    if _too_long(client) or _too_long(user):
        return _error(NetApiStatus.ERROR_INVALID_PARAMETER, request)
    # "If the Level member is not equal to one of the valid values ... ERROR_INVALID_LEVEL."
    if level not in LEVELS:
        return _error(NetApiStatus.ERROR_INVALID_LEVEL, request)
    denied = check_enum_access(caller, level, policy)
    if denied is not None:
        return _error(denied, request)

    # "If the ResumeHandle parameter is either NULL or points to 0x00000000, the enumeration
    # MUST start from the beginning"; ">= the size of the SessionList: NERR_Success and zero entries."
    start = request.resume_handle or 0
    if start >= len(sessions) and start:
        return EnumResult(NetApiStatus.NERR_Success, level, [], 0, _finished(request))

    # Qualifiers apply after the resume position, to the unfiltered list's indices.
    if _given(client) or _given(user):
        positions = [
            i for i in range(start, len(sessions)) if session_matches(sessions[i], client, user)
        ]
        if not positions:
            # "... MUST fail the call with either an NERR_UserNotFound or NERR_ClientNameNotFound."
            return _error(not_found_status(sessions[start:], client), request)
    else:
        positions = list(range(start, len(sessions)))

    total = len(positions)
    # "If this parameter is equal to MAX_PREFERRED_LENGTH, the server MUST return all ..."
    if request.prefmaxlen == MAX_PREFERRED_LENGTH:
        taken = total
    else:
        taken, used = 0, 0
        for i in positions:
            used += entry_size(level, sessions[i])
            if taken and used > request.prefmaxlen:
                break
            taken += 1
    entries = [sessions[i] for i in positions[:taken]]
    if taken == total:
        return EnumResult(NetApiStatus.NERR_Success, level, entries, total, _finished(request))
    # "... return the maximum number of entries that will fit ... and return ERROR_MORE_DATA",
    # with ResumeHandle set to the (1-based) index of the last enumerated session.
    resume = None if request.resume_handle is None else positions[taken - 1] + 1
    return EnumResult(NetApiStatus.ERROR_MORE_DATA, level, entries, total, resume)


def _finished(request: EnumRequest) -> int | None:
    return None if request.resume_handle is None else 0


def select_sessions_to_delete(
    sessions: Sequence[SessionInfo], request: DelRequest, caller: Caller
) -> DelResult:
    """Answer NetrSessionDel over ``sessions`` (MS-SRVS 3.1.4.6): which to close, or why not."""
    if not (caller.authenticated and caller.admin):
        return DelResult(NetApiStatus.ERROR_ACCESS_DENIED, [])
    client, user = request.client_name, request.user_name
    if _too_long(client) or _too_long(user):
        return DelResult(NetApiStatus.ERROR_INVALID_PARAMETER, [])
    # Closing every session on the server is never what a NULL/NULL call should do.
    if not _given(client) and not _given(user):
        return DelResult(NetApiStatus.ERROR_INVALID_PARAMETER, [])
    # Unlike NetrSessionEnum, a ClientName without "\\" is NERR_ClientNameNotFound here.
    if _given(client) and not (client or "").startswith("\\\\"):
        return DelResult(NetApiStatus.NERR_ClientNameNotFound, [])
    indices = [i for i, info in enumerate(sessions) if session_matches(info, client, user)]
    if not indices:
        return DelResult(NetApiStatus.NERR_ClientNameNotFound, [])
    return DelResult(NetApiStatus.NERR_Success, indices)
