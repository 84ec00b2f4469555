"""Win32-shaped NetSessionEnum / NetSessionGetInfo / NetSessionDel, pywin32-style results.

For scripts ported from Windows: the arguments keep the Win32 order and
meaning (``servername`` None = this computer; ``UncClientName`` ``\\\\NAME``),
results are lists of dicts with pywin32's ``win32net`` keys (``client_name``,
``user_name``, ``num_opens``, ``active_time``, ``idle_time``, ``user_flags``,
``client_type``, ``transport``). Failures raise ``NetApiError`` (with
``.status``), never a bare number. Credentials are keyword-only: Windows
takes them from the logon session, we cannot.

pywin32's ``win32net`` puts the level first (``NetSessionEnum(level, server,
client, username)``); that order is in ``smbsessions.win32net``. Called here
pywin32-style (a level where the server name belongs), these functions raise
``TypeError`` naming the Win32 order instead of guessing.
"""

from __future__ import annotations

from typing import Any

from .addresses import SMB_PORT, parse_host_port
from .auth import Credentials
from .client import SessionClient
from .levels import MAX_PREFERRED_LENGTH

_ORDER = {
    "NetSessionEnum": "NetSessionEnum(servername, UncClientName, username, level, prefmaxlen)",
    "NetSessionGetInfo": "NetSessionGetInfo(servername, UncClientName, username, level)",
    "NetSessionDel": "NetSessionDel(servername, UncClientName, username)",
}


def check_win32_order(function: str, servername: object, names: tuple[object, ...], level: object) -> None:
    """Raise ``TypeError`` naming the Win32 C order when the arguments do not fit it."""
    misplaced = (servername is not None and not isinstance(servername, str)) or any(
        name is not None and not isinstance(name, str) for name in names
    ) or (level is not None and (isinstance(level, bool) or not isinstance(level, int)))
    if misplaced:
        raise TypeError(
            f"smbsessions.win32.{function} keeps the Win32 C argument order, {_ORDER[function]}; "
            f"for pywin32's order (level first) use smbsessions.win32net.{function}"
        )


def _client(
    servername: str | None, credentials: Credentials, port: int | None, timeout: float
) -> SessionClient:
    host, parsed_port = parse_host_port((servername or "localhost").lstrip("\\/"))
    return SessionClient(host, port or parsed_port or SMB_PORT, credentials=credentials, timeout=timeout)


def NetSessionEnum(
    servername: str | None,
    UncClientName: str | None = None,
    username: str | None = None,
    level: int | None = None,
    prefmaxlen: int = MAX_PREFERRED_LENGTH,
    *,
    credentials: Credentials,
    port: int | None = None,
    timeout: float = 10.0,
) -> list[dict[str, Any]]:
    """Every session on ``servername`` at ``level`` (all pages), as pywin32 dicts.

    ``level=None`` takes the richest level the server allows (502, 10, 2, 1, 0):
    Samba, for one, answers only levels 0 and 1.
    """
    check_win32_order("NetSessionEnum", servername, (UncClientName, username), level)
    with _client(servername, credentials, port, timeout) as client:
        return [s.info.to_win32(s.level) for s in client.enum(level, UncClientName, username, prefmaxlen)]


def NetSessionGetInfo(
    servername: str | None,
    UncClientName: str,
    username: str,
    level: int | None = None,
    *,
    credentials: Credentials,
    port: int | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """The session of ``username`` from ``UncClientName`` (both required), as a pywin32 dict."""
    check_win32_order("NetSessionGetInfo", servername, (UncClientName, username), level)
    with _client(servername, credentials, port, timeout) as client:
        session = client.get_info(UncClientName, username, level)
        return session.info.to_win32(session.level)


def NetSessionDel(
    servername: str | None,
    UncClientName: str | None,
    username: str | None,
    *,
    credentials: Credentials,
    port: int | None = None,
    timeout: float = 10.0,
) -> None:
    """Disconnect sessions: None client = all of ``username``'s; None user = all from the client.

    Both None is refused (it would disconnect everyone, the caller included);
    use ``SessionClient.delete(force_all=True)`` if that is really meant.
    """
    check_win32_order("NetSessionDel", servername, (UncClientName, username), None)
    with _client(servername, credentials, port, timeout) as client:
        client.delete(UncClientName, username)
