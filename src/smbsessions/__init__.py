"""smbsessions: who is connected to an SMB server (MS-SRVS NetrSessionEnum / NetrSessionDel).

The pure core: ``levels`` (SESSION_INFO levels, ``SessionInfo``), ``status``
(status codes, exceptions), ``ndr`` (wire codec), ``dcerpc`` (PDU framing),
``rules`` (MS-SRVS processing rules). The shells: ``client`` (SessionClient),
``win32`` / ``win32net`` (NetSessionEnum-style functions), ``sweep``, ``server``, ``cli``.

The names below are imported on first use: ``smbsessions --version`` and
``--help`` must not pay for modules they do not need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .levels import MAX_PREFERRED_LENGTH, SessionInfo, UserFlags
    from .status import (
        AuthenticationError,
        DecodeError,
        HostTimeoutError,
        HostUnreachableError,
        NetApiError,
        NetApiStatus,
        ProtocolError,
        RpcFaultError,
        SmbSessionsError,
        TransportError,
    )

__version__ = "0.1.0"

_HOMES = {
    "MAX_PREFERRED_LENGTH": "levels",
    "SessionInfo": "levels",
    "UserFlags": "levels",
    "AuthenticationError": "status",
    "DecodeError": "status",
    "HostTimeoutError": "status",
    "HostUnreachableError": "status",
    "NetApiError": "status",
    "NetApiStatus": "status",
    "ProtocolError": "status",
    "RpcFaultError": "status",
    "SmbSessionsError": "status",
    "TransportError": "status",
}

__all__ = [
    "MAX_PREFERRED_LENGTH",
    "AuthenticationError",
    "DecodeError",
    "HostTimeoutError",
    "HostUnreachableError",
    "NetApiError",
    "NetApiStatus",
    "ProtocolError",
    "RpcFaultError",
    "SessionInfo",
    "SmbSessionsError",
    "TransportError",
    "UserFlags",
    "__version__",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
