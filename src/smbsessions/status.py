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


class NetApiStatus(IntEnum):
    """NET_API_STATUS values this library produces or meets (SPEC.md section 1)."""

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
    rpc_s_access_denied = 0x00000005
    RPC_S_INVALID_TAG = 0x000006A6
    RPC_S_UNKNOWN_IF = 0x000006B5
    RPC_S_CALL_FAILED = 0x000006BE
    RPC_S_PROTOCOL_ERROR = 0x000006C0
    RPC_S_PROCNUM_OUT_OF_RANGE = 0x000006D1
    RPC_S_CANNOT_SUPPORT = 0x000006E4


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


class TransportError(SmbSessionsError):
    """The SMB transport failed: connection refused, reset, or an SMB error."""

    def __init__(self, message: str, ntstatus: int | None = None) -> None:
        self.ntstatus = ntstatus
        super().__init__(message)


class HostUnreachableError(TransportError):
    """No TCP connection could be made (refused, no route, name not resolved)."""


class HostTimeoutError(TransportError):
    """The host did not complete the exchange within the allowed time."""


class UnsupportedDialectError(TransportError):
    """The server offers no SMB 2/3 dialect (SMB1-only servers are not supported)."""


class AuthenticationError(SmbSessionsError):
    """The SMB session setup failed: bad credentials, account disabled, no Kerberos ticket..."""

    def __init__(self, message: str, ntstatus: int | None = None) -> None:
        self.ntstatus = ntstatus
        super().__init__(message)
