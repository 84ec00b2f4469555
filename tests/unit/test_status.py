"""Status codes and the exception hierarchy."""

from __future__ import annotations

import pytest

from smbsessions import status
from smbsessions.status import (
    NET_API_MESSAGES,
    DecodeError,
    NetApiError,
    NetApiStatus,
    ProtocolError,
    RpcFaultError,
    RpcFaultStatus,
    SmbSessionsError,
)

SPEC_CODES = {
    "NERR_Success": 0,
    "ERROR_ACCESS_DENIED": 5,
    "ERROR_NOT_ENOUGH_MEMORY": 8,
    "ERROR_BAD_NETPATH": 53,
    "ERROR_INVALID_PARAMETER": 87,
    "ERROR_INVALID_LEVEL": 124,
    "ERROR_MORE_DATA": 234,
    "ERROR_NO_NETWORK": 1222,
    "NERR_BufTooSmall": 2123,
    "NERR_UserNotFound": 2221,
    "NERR_NetNameNotFound": 2310,  # MS-SRVS NetrShareGetInfo
    "NERR_DeviceNotShared": 2311,  # MS-SRVS NetrShareCheck
    "NERR_ClientNameNotFound": 2312,
    "NERR_InvalidComputer": 2351,
}


def test_net_api_status_numbers() -> None:
    assert {s.name: int(s) for s in NetApiStatus} == SPEC_CODES


@pytest.mark.parametrize("code", list(NetApiStatus))
def test_every_status_has_name_number_and_message(code: NetApiStatus) -> None:
    error = NetApiError(code)
    assert error.status == int(code)
    assert error.name == code.name
    assert error.message == NET_API_MESSAGES[code]
    assert error.message.endswith(".")
    assert str(error) == f"{code.name} ({int(code)}): {NET_API_MESSAGES[code]}"


def test_net_api_error_detail() -> None:
    error = NetApiError(2312, "while deleting \\\\10.0.0.9")
    assert str(error) == (
        "NERR_ClientNameNotFound (2312): A session does not exist with that computer name."
        " while deleting \\\\10.0.0.9"
    )
    assert error.detail == "while deleting \\\\10.0.0.9"


def test_unknown_net_api_status() -> None:
    assert status.net_api_status_name(0x1234) == "NET_API_STATUS_0x00001234"
    error = NetApiError(0xC0000022)
    assert error.name == "NET_API_STATUS_0xC0000022"
    assert error.message == "Unknown NET_API_STATUS."


def test_rpc_fault_names() -> None:
    assert status.rpc_fault_name(0x1C010002) == "nca_s_op_rng_error"
    assert status.rpc_fault_name(0x6E4) == "RPC_S_CANNOT_SUPPORT"
    assert status.rpc_fault_name(0x6F7) == "RPC_X_BAD_STUB_DATA"
    assert status.rpc_fault_name(0xDEAD) == "RPC_FAULT_0x0000DEAD"
    for code in RpcFaultStatus:
        assert status.rpc_fault_name(code) == code.name


def test_rpc_fault_error_text() -> None:
    error = RpcFaultError(0x1C010003, "opnum 12")
    assert (error.code, error.name) == (0x1C010003, "nca_s_unk_if")
    assert str(error) == "DCE/RPC fault nca_s_unk_if (0x1C010003): opnum 12"
    assert str(RpcFaultError(0x6E4)) == "DCE/RPC fault RPC_S_CANNOT_SUPPORT (0x000006E4)"


def test_access_denied_is_distinguishable_in_both_spaces() -> None:
    # 5 is both NET_API_STATUS ERROR_ACCESS_DENIED and rpc_s_access_denied: the
    # exception type, not the number, says which layer refused.
    net, fault = NetApiError(5), RpcFaultError(5)
    assert net.status == fault.code == 5
    assert not isinstance(net, RpcFaultError) and not isinstance(fault, NetApiError)
    assert net.name == "ERROR_ACCESS_DENIED" and fault.name == "rpc_s_access_denied"
    with pytest.raises(NetApiError):
        raise net
    with pytest.raises(RpcFaultError):
        raise fault


def test_hierarchy() -> None:
    for cls in (NetApiError, RpcFaultError, ProtocolError, status.TransportError,
                status.AuthenticationError):
        assert issubclass(cls, SmbSessionsError)
    assert issubclass(DecodeError, ProtocolError)
    for cls in (status.HostUnreachableError, status.HostTimeoutError, status.UnsupportedDialectError):
        assert issubclass(cls, status.TransportError)
    assert not issubclass(NetApiError, ProtocolError)
    assert not issubclass(RpcFaultError, ProtocolError)


def test_transport_and_auth_errors_carry_ntstatus() -> None:
    assert status.TransportError("reset", 0xC000020D).ntstatus == 0xC000020D
    assert status.AuthenticationError("logon failure", 0xC000006D).ntstatus == 0xC000006D
    assert status.HostTimeoutError("slow").ntstatus is None
