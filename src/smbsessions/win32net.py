"""pywin32's ``win32net`` session functions, same argument order and keys, over the network.

A script written for pywin32 changes only its import::

    # import win32net
    from smbsessions import win32net
    rows = win32net.NetSessionEnum(10, "\\\\\\\\fileserver", None, None, credentials=creds)

As in pywin32: the level comes first, ``NetSessionEnum`` returns every session
(all pages) as a list of dicts with pywin32's keys (``client_name``,
``user_name``, ``num_opens``, ``active_time``, ``idle_time``, ``user_flags``,
``client_type``, ``transport``, as the level carries them), ``NetSessionGetInfo``
one dict, ``NetSessionDel`` nothing. What differs: the credentials (keyword-only:
Windows takes them from the logon session, we cannot), ``port`` and ``timeout``
keywords, and failures raise ``smbsessions.NetApiError`` (``.status``) rather
than ``pywintypes.error``. ``server`` None means this computer (localhost).
"""

from __future__ import annotations

from typing import Any

from . import win32
from .auth import Credentials
from .levels import MAX_PREFERRED_LENGTH, check_level

__all__ = ["NetSessionDel", "NetSessionEnum", "NetSessionGetInfo"]


def _check_level(function: str, level: object) -> int:
    if isinstance(level, bool) or not isinstance(level, int):
        raise TypeError(
            f"smbsessions.win32net.{function} takes the level first, as pywin32 does "
            f"({function}(level, server, client, username)); for the Win32 C order "
            f"(server first) use smbsessions.win32.{function}"
        )
    check_level(level)
    return level


def NetSessionEnum(
    level: int,
    server: str | None = None,
    client: str | None = None,
    username: str | None = None,
    *,
    credentials: Credentials,
    port: int | None = None,
    timeout: float = 10.0,
) -> list[dict[str, Any]]:
    """Every session on ``server`` at ``level``, as pywin32's ``win32net.NetSessionEnum`` returns them."""
    return win32.NetSessionEnum(server, client, username, _check_level("NetSessionEnum", level),
                                MAX_PREFERRED_LENGTH, credentials=credentials, port=port, timeout=timeout)


def NetSessionGetInfo(
    level: int,
    server: str | None,
    client: str,
    username: str,
    *,
    credentials: Credentials,
    port: int | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """The session of ``username`` from ``client`` at ``level``, as one pywin32 dict."""
    return win32.NetSessionGetInfo(server, client, username, _check_level("NetSessionGetInfo", level),
                                   credentials=credentials, port=port, timeout=timeout)


def NetSessionDel(
    server: str | None,
    client: str | None = None,
    username: str | None = None,
    *,
    credentials: Credentials,
    port: int | None = None,
    timeout: float = 10.0,
) -> None:
    """Disconnect the sessions of ``username`` and/or from ``client`` (both None is refused)."""
    win32.NetSessionDel(server, client, username, credentials=credentials, port=port, timeout=timeout)
