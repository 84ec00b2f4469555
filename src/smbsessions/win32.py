"""Win32-shaped NetSessionEnum / NetSessionGetInfo / NetSessionDel, pywin32-style results.

For scripts ported from Windows: the arguments keep the Win32 order and
meaning (``servername`` None = this computer; ``UncClientName`` ``\\\\NAME``),
results are lists of dicts with pywin32's ``win32net`` keys (``client_name``,
``user_name``, ``num_opens``, ``active_time``, ``idle_time``, ``user_flags``,
``client_type``, ``transport``). Failures raise ``NetApiError`` (with
``.status``), never a bare number. Credentials are keyword-only: Windows
takes them from the logon session, we cannot.
"""

from __future__ import annotations

from typing import Any

from .auth import SMB_PORT, Credentials, parse_host_port
from .client import SessionClient
from .levels import MAX_PREFERRED_LENGTH


def _client(
    servername: str | None, credentials: Credentials, port: int | None, timeout: float
) -> SessionClient:
    host, parsed_port = parse_host_port((servername or "localhost").lstrip("\\"))
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
    with _client(servername, credentials, port, timeout) as client:
        client.delete(UncClientName, username)
