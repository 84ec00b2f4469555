"""Status codes and the exception hierarchy.

Three numbering spaces meet in this library and must never be confused:

* ``NET_API_STATUS`` (``NetApiStatus``): the return value of NetrSessionEnum /
  NetrSessionDel, carried inside a *successful* DCE/RPC response.
* DCE/RPC fault status (``RpcFaultStatus``): the server refused to run the call
  at all (unknown opnum, bad stub data, ...). It arrives in a fault PDU.
* NTSTATUS: the SMB layer's own codes (logon failure, connection refused...).

Each gets its own exception type, all deriving from ``SmbSessionsError``.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TypeVar


class NetApiStatus(IntEnum):
    """NET_API_STATUS values this library produces or meets (MS-ERREF 2.2 and MS-SRVS 3.1.4.5-3.1.4.6)."""

    NERR_Success = 0
    ERROR_ACCESS_DENIED = 5
    ERROR_NOT_ENOUGH_MEMORY = 8
    ERROR_BAD_NETPATH = 53
    ERROR_INVALID_PARAMETER = 87
    ERROR_INVALID_LEVEL = 124
    ERROR_MORE_DATA = 234
    ERROR_NO_NETWORK = 1222
    NERR_BufTooSmall = 2123
    NERR_UserNotFound = 2221
    NERR_NetNameNotFound = 2310
    NERR_DeviceNotShared = 2311
    NERR_ClientNameNotFound = 2312
    NERR_InvalidComputer = 2351


NET_API_MESSAGES: dict[int, str] = {
    NetApiStatus.NERR_Success: "The operation completed successfully.",
    NetApiStatus.ERROR_ACCESS_DENIED: "Access is denied.",
    NetApiStatus.ERROR_NOT_ENOUGH_MEMORY: "Not enough storage is available to process this command.",
    NetApiStatus.ERROR_BAD_NETPATH: "The network path was not found.",
    NetApiStatus.ERROR_INVALID_PARAMETER: "The parameter is incorrect.",
    NetApiStatus.ERROR_INVALID_LEVEL: "The system call level is not correct.",
    NetApiStatus.ERROR_MORE_DATA: "More data is available.",
    NetApiStatus.ERROR_NO_NETWORK: "The network is not present or not started.",
    NetApiStatus.NERR_BufTooSmall: "The API return buffer is too small.",
    NetApiStatus.NERR_UserNotFound: "The user name could not be found.",
    NetApiStatus.NERR_NetNameNotFound: "The share name does not exist.",
    NetApiStatus.NERR_DeviceNotShared: "The device is not shared.",
    NetApiStatus.NERR_ClientNameNotFound: "A session does not exist with that computer name.",
    NetApiStatus.NERR_InvalidComputer: "This computer name is invalid.",
}


class RpcFaultStatus(IntEnum):
    """DCE/RPC fault codes (C706 appendix E, MS-RPCE 2.2.2.11)."""

    nca_s_comm_failure = 0x1C010001
    nca_s_op_rng_error = 0x1C010002
    nca_s_unk_if = 0x1C010003
    nca_s_wrong_boot_time = 0x1C010006
    nca_s_you_crashed = 0x1C010009
    nca_s_proto_error = 0x1C01000B
    nca_s_out_args_too_big = 0x1C010013
    nca_s_server_too_busy = 0x1C010014
    nca_s_unsupported_type = 0x1C010017
    nca_s_fault_int_div_by_zero = 0x1C000001
    nca_s_fault_addr_error = 0x1C000002
    nca_s_fault_context_mismatch = 0x1C00001A
    RPC_X_BAD_STUB_DATA = 0x000006F7  # MS-RPCE also calls it nca_s_fault_ndr
    nca_s_fault_remote_no_memory = 0x1C000022
    nca_s_unsupported_authn_level = 0x1C00001D
    nca_s_fault_sec_pkg_error = 0x00000721  # a verifier failed its check (Samba: DCERPC_FAULT_SEC_PKG_ERROR)
    rpc_s_access_denied = 0x00000005
    RPC_S_INVALID_TAG = 0x000006A6
    RPC_S_UNKNOWN_IF = 0x000006B5
    RPC_S_CALL_FAILED = 0x000006BE
    RPC_S_PROTOCOL_ERROR = 0x000006C0
    RPC_S_PROCNUM_OUT_OF_RANGE = 0x000006D1
    RPC_S_CANNOT_SUPPORT = 0x000006E4


class NtStatus(IntEnum):
    """NTSTATUS values (MS-ERREF 2.3.1) by their symbolic names: what SMB servers answer
    the client with, and what our server core and NTLM/SPNEGO answer with.

    The one home for NTSTATUS names in this library: add a value here, never a
    bare ``0xC...`` constant elsewhere.
    """

    STATUS_SUCCESS = 0x00000000
    STATUS_PENDING = 0x00000103
    STATUS_NOTIFY_CLEANUP = 0x0000010B
    STATUS_NOTIFY_ENUM_DIR = 0x0000010C
    STATUS_BUFFER_OVERFLOW = 0x80000005
    STATUS_NO_MORE_FILES = 0x80000006
    STATUS_INVALID_EA_NAME = 0x80000013
    STATUS_EA_LIST_INCONSISTENT = 0x80000014
    STATUS_STOPPED_ON_SYMLINK = 0x8000002D
    STATUS_UNSUCCESSFUL = 0xC0000001
    STATUS_NOT_IMPLEMENTED = 0xC0000002
    STATUS_INVALID_INFO_CLASS = 0xC0000003
    STATUS_INFO_LENGTH_MISMATCH = 0xC0000004
    STATUS_INVALID_HANDLE = 0xC0000008
    STATUS_INVALID_PARAMETER = 0xC000000D
    STATUS_NO_SUCH_FILE = 0xC000000F
    STATUS_INVALID_DEVICE_REQUEST = 0xC0000010
    STATUS_END_OF_FILE = 0xC0000011
    STATUS_MORE_PROCESSING_REQUIRED = 0xC0000016
    STATUS_ACCESS_DENIED = 0xC0000022
    STATUS_BUFFER_TOO_SMALL = 0xC0000023
    STATUS_OBJECT_NAME_INVALID = 0xC0000033
    STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034
    STATUS_OBJECT_NAME_COLLISION = 0xC0000035
    STATUS_OBJECT_PATH_INVALID = 0xC0000039
    STATUS_OBJECT_PATH_NOT_FOUND = 0xC000003A
    STATUS_OBJECT_PATH_SYNTAX_BAD = 0xC000003B
    STATUS_SHARING_VIOLATION = 0xC0000043
    STATUS_EAS_NOT_SUPPORTED = 0xC000004F
    STATUS_EA_TOO_LARGE = 0xC0000050
    STATUS_NONEXISTENT_EA_ENTRY = 0xC0000051
    STATUS_NO_EAS_ON_FILE = 0xC0000052
    STATUS_EA_CORRUPT_ERROR = 0xC0000053
    STATUS_DELETE_PENDING = 0xC0000056
    STATUS_NO_LOGON_SERVERS = 0xC000005E
    STATUS_PRIVILEGE_NOT_HELD = 0xC0000061
    STATUS_NO_SUCH_USER = 0xC0000064
    STATUS_WRONG_PASSWORD = 0xC000006A
    STATUS_LOGON_FAILURE = 0xC000006D
    STATUS_ACCOUNT_RESTRICTION = 0xC000006E
    STATUS_INVALID_LOGON_HOURS = 0xC000006F
    STATUS_INVALID_WORKSTATION = 0xC0000070
    STATUS_PASSWORD_EXPIRED = 0xC0000071
    STATUS_ACCOUNT_DISABLED = 0xC0000072
    STATUS_NONE_MAPPED = 0xC0000073
    STATUS_DISK_FULL = 0xC000007F
    STATUS_INSUFFICIENT_RESOURCES = 0xC000009A
    STATUS_PIPE_NOT_AVAILABLE = 0xC00000AC
    STATUS_PIPE_BUSY = 0xC00000AE
    STATUS_PIPE_DISCONNECTED = 0xC00000B0
    STATUS_PIPE_CLOSING = 0xC00000B1
    STATUS_IO_TIMEOUT = 0xC00000B5
    STATUS_FILE_IS_A_DIRECTORY = 0xC00000BA
    STATUS_NOT_SUPPORTED = 0xC00000BB
    STATUS_INVALID_NETWORK_RESPONSE = 0xC00000C3
    STATUS_NETWORK_NAME_DELETED = 0xC00000C9
    STATUS_NETWORK_ACCESS_DENIED = 0xC00000CA
    STATUS_BAD_NETWORK_NAME = 0xC00000CC
    STATUS_REQUEST_NOT_ACCEPTED = 0xC00000D0
    STATUS_PIPE_EMPTY = 0xC00000D9
    STATUS_INTERNAL_ERROR = 0xC00000E5
    STATUS_DIRECTORY_NOT_EMPTY = 0xC0000101
    STATUS_NOT_A_DIRECTORY = 0xC0000103
    STATUS_CANCELLED = 0xC0000120
    STATUS_CANNOT_DELETE = 0xC0000121
    STATUS_FILE_CLOSED = 0xC0000128
    STATUS_PIPE_BROKEN = 0xC000014B
    STATUS_LOGON_TYPE_NOT_GRANTED = 0xC000015B
    STATUS_TRUSTED_RELATIONSHIP_FAILURE = 0xC000018D
    STATUS_ACCOUNT_EXPIRED = 0xC0000193
    STATUS_FS_DRIVER_REQUIRED = 0xC000019C
    STATUS_USER_SESSION_DELETED = 0xC0000203
    STATUS_INSUFF_SERVER_RESOURCES = 0xC0000205
    STATUS_PASSWORD_MUST_CHANGE = 0xC0000224
    STATUS_NOT_FOUND = 0xC0000225
    STATUS_ACCOUNT_LOCKED_OUT = 0xC0000234
    STATUS_PATH_NOT_COVERED = 0xC0000257
    STATUS_DFS_UNAVAILABLE = 0xC000026D
    STATUS_NOT_A_REPARSE_POINT = 0xC0000275
    STATUS_NETWORK_SESSION_EXPIRED = 0xC000035C
    STATUS_DOWNGRADE_DETECTED = 0xC0000388
    STATUS_AUTHENTICATION_FIREWALL_FAILED = 0xC0000413
    STATUS_SERVER_UNAVAILABLE = 0xC0000466
    STATUS_INVALID_SIGNATURE = 0xC000A000
    STATUS_SMB_NO_PREAUTH_INTEGRITY_HASH_OVERLAP = 0xC05D0000


LOGON_REFUSALS: frozenset[int] = frozenset({
    NtStatus.STATUS_LOGON_FAILURE,
    NtStatus.STATUS_WRONG_PASSWORD,
    NtStatus.STATUS_NO_SUCH_USER,
    NtStatus.STATUS_ACCOUNT_LOCKED_OUT,
    NtStatus.STATUS_ACCOUNT_DISABLED,
    NtStatus.STATUS_ACCOUNT_EXPIRED,
    NtStatus.STATUS_ACCOUNT_RESTRICTION,
    NtStatus.STATUS_PASSWORD_EXPIRED,
    NtStatus.STATUS_PASSWORD_MUST_CHANGE,
    NtStatus.STATUS_INVALID_LOGON_HOURS,
    NtStatus.STATUS_INVALID_WORKSTATION,
    NtStatus.STATUS_LOGON_TYPE_NOT_GRANTED,
})
"""Session-setup answers meaning "these credentials are not accepted here": the ones a
sweep counts before it stops trying a password that would lock the account out."""


def ntstatus_name(code: int) -> str:
    """Symbolic name of an NTSTATUS (``STATUS_LOGON_FAILURE``), or ``NTSTATUS_0x...`` if unknown."""
    try:
        return NtStatus(code).name
    except ValueError:
        return f"NTSTATUS_0x{code & 0xFFFFFFFF:08X}"


def ntstatus_text(code: int) -> str:
    """``STATUS_LOGON_FAILURE (0xC000006D)``: an NTSTATUS as every message shows it."""
    return f"{ntstatus_name(code)} (0x{code:08X})"


def net_api_status_name(status: int) -> str:
    """Symbolic name of a NET_API_STATUS, or ``NET_API_STATUS_0x...`` if unknown."""
    try:
        return NetApiStatus(status).name
    except ValueError:
        return f"NET_API_STATUS_0x{status:08X}"


def rpc_fault_name(code: int) -> str:
    """Symbolic name of a DCE/RPC fault status, or ``RPC_FAULT_0x...`` if unknown."""
    try:
        return RpcFaultStatus(code).name
    except ValueError:
        return f"RPC_FAULT_0x{code:08X}"


class SmbSessionsError(Exception):
    """Base class of every error this library raises on purpose."""


class NetApiError(SmbSessionsError):
    """The server ran the call and answered with a NET_API_STATUS other than success.

    ``status`` is the number, ``name`` its symbolic name (``ERROR_ACCESS_DENIED``).
    ``attempts`` lists ``(level, status)`` for each level a client tried first.
    """

    def __init__(
        self, status: int, detail: str | None = None, attempts: list[tuple[int, int]] | None = None
    ) -> None:
        self.status = int(status)
        self.attempts = list(attempts or [])
        self.name = net_api_status_name(self.status)
        self.message = NET_API_MESSAGES.get(self.status, "Unknown NET_API_STATUS.")
        self.detail = detail
        text = f"{self.name} ({self.status}): {self.message}"
        if detail:
            text += f" {detail}"
        super().__init__(text)


class RpcFaultError(SmbSessionsError):
    """The server answered with a DCE/RPC fault PDU: the call itself was refused."""

    def __init__(self, code: int, detail: str | None = None) -> None:
        self.code = int(code)
        self.name = rpc_fault_name(self.code)
        self.detail = detail
        text = f"DCE/RPC fault {self.name} (0x{self.code:08X})"
        if detail:
            text += f": {detail}"
        super().__init__(text)


class ProtocolError(SmbSessionsError):
    """The peer sent something that violates DCE/RPC or the srvsvc wire format."""


class DecodeError(ProtocolError):
    """An NDR stub could not be decoded (truncated, inconsistent or hostile)."""


class _CarriesNtStatus:
    ntstatus: int | None

    @property
    def ntstatus_name(self) -> str | None:
        """``STATUS_LOGON_FAILURE`` and so on, or None when no NTSTATUS was involved."""
        return None if self.ntstatus is None else ntstatus_name(self.ntstatus)


class TransportError(_CarriesNtStatus, SmbSessionsError):
    """The SMB transport failed: connection refused, reset, or an SMB error."""

    def __init__(self, message: str, ntstatus: int | None = None) -> None:
        self.ntstatus = ntstatus
        super().__init__(message)


_SmbError = TypeVar("_SmbError", TransportError, "AuthenticationError")


def ntstatus_failure(kind: type[_SmbError], context: str, status: int) -> _SmbError:
    """The one SMB error for an NTSTATUS answer: ``context failed: STATUS_X (0x...)``, with
    ``ntstatus`` set (``kind`` is ``TransportError``, ``AuthenticationError`` or a subclass)."""
    return kind(f"{context} failed: {ntstatus_text(status)}", ntstatus=status)


class HostUnreachableError(TransportError):
    """No TCP connection could be made (refused, no route, name not resolved)."""


class HostTimeoutError(TransportError):
    """The host did not complete the exchange within the allowed time."""


class UnsupportedDialectError(TransportError):
    """The server offers no SMB 2/3 dialect (SMB1-only servers are not supported)."""


class NtStatusError(_CarriesNtStatus, SmbSessionsError):
    """A failure that *is* an NTSTATUS plus a detail (an NTLM message refused, an SMB2
    signature that does not verify): ``ntstatus``, ``ntstatus_name``, ``detail``.

    The one constructor of such errors: ``NtlmError`` and ``Smb2CryptoError`` derive
    from it. The message reads ``STATUS_X (0x...): detail``.
    """

    ntstatus: int

    def __init__(self, ntstatus: int, detail: str) -> None:
        self.ntstatus = int(ntstatus)
        self.detail = detail
        super().__init__(f"{ntstatus_text(self.ntstatus)}: {detail}")

    @property
    def ntstatus_name(self) -> str:
        """``STATUS_INVALID_PARAMETER`` and so on."""
        return ntstatus_name(self.ntstatus)


class AuthenticationError(_CarriesNtStatus, SmbSessionsError):
    """The SMB session setup failed: bad credentials, account disabled, no Kerberos ticket..."""

    def __init__(self, message: str, ntstatus: int | None = None) -> None:
        self.ntstatus = ntstatus
        super().__init__(message)
