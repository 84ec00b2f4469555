"""smbsessions: who is connected to an SMB server (MS-SRVS NetrSessionEnum / NetrSessionDel).

The pure core: ``levels`` (SESSION_INFO levels, ``SessionInfo``), ``status``
(status codes, exceptions), ``ndr`` (wire codec), ``dcerpc`` (PDU framing),
``rules`` (MS-SRVS processing rules). The shells: ``client`` (SessionClient),
``win32`` (NetSessionEnum-style functions), ``sweep``, ``server``, ``cli``.
"""

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
