"""NtStatus: the one home for NTSTATUS names (values checked against smbprotocol's table)."""

from __future__ import annotations

from smbprotocol.header import NtStatus as SmbprotocolNtStatus

from smbsessions.status import NtStatus, ntstatus_name


def test_values_agree_with_smbprotocol() -> None:
    compared = 0
    for member in NtStatus:
        theirs = getattr(SmbprotocolNtStatus, member.name, None)
        if theirs is not None:
            assert theirs == member.value, member.name
            compared += 1
    assert compared >= 30


def test_values_from_ms_erref() -> None:
    # MS-ERREF 2.3.1 values that smbprotocol's table lacks.
    expected = {
        "STATUS_ACCOUNT_DISABLED": 0xC0000072,
        "STATUS_ACCOUNT_RESTRICTION": 0xC000006E,
        "STATUS_NO_SUCH_USER": 0xC0000064,
        "STATUS_INVALID_SIGNATURE": 0xC000A000,
        "STATUS_NETWORK_SESSION_EXPIRED": 0xC000035C,
    }
    for name, value in expected.items():
        assert int(NtStatus[name]) == value


def test_names() -> None:
    assert ntstatus_name(0xC000006D) == "STATUS_LOGON_FAILURE"
    assert ntstatus_name(0) == "STATUS_SUCCESS"
    assert ntstatus_name(0xC0DEC0DE) == "NTSTATUS_0xC0DEC0DE"
