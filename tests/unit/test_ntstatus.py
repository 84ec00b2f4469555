"""NtStatus: the one home for NTSTATUS names (values checked against smbprotocol's table)."""

from __future__ import annotations

from smbprotocol.header import NtStatus as SmbprotocolNtStatus

from smbsessions.ntlm import NtlmError
from smbsessions.server.smb2_crypto import Smb2CryptoError
from smbsessions.status import (
    AuthenticationError,
    NtStatus,
    NtStatusError,
    SmbSessionsError,
    TransportError,
    UnsupportedDialectError,
    ntstatus_failure,
    ntstatus_name,
    ntstatus_text,
)


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


def test_ntstatus_text() -> None:
    assert ntstatus_text(0xC000006D) == "STATUS_LOGON_FAILURE (0xC000006D)"
    assert ntstatus_text(0xC0DEC0DE) == "NTSTATUS_0xC0DEC0DE (0xC0DEC0DE)"


def test_one_ntstatus_error_constructor() -> None:
    for kind in (NtStatusError, NtlmError, Smb2CryptoError):
        error = kind(NtStatus.STATUS_INVALID_PARAMETER, "bad token")
        assert isinstance(error, NtStatusError) and isinstance(error, SmbSessionsError)
        assert error.ntstatus == 0xC000000D
        assert error.ntstatus_name == "STATUS_INVALID_PARAMETER"
        assert error.detail == "bad token"
        assert str(error) == "STATUS_INVALID_PARAMETER (0xC000000D): bad token"


def test_no_ntstatus_literals_outside_status_py() -> None:
    """Every NTSTATUS value lives in status.NtStatus: no bare 0xC0000... elsewhere in src."""
    import re
    from pathlib import Path

    import smbsessions

    root = Path(smbsessions.__file__).parent
    literal = re.compile(r"\b0x[Cc]0[0-9A-Fa-f]{6}\b")
    offenders = [
        f"{path.relative_to(root)}:{number}"
        for path in sorted(root.rglob("*.py"))
        if path.name != "status.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert offenders == []


def test_one_smb_error_constructor_from_an_ntstatus() -> None:
    for kind in (TransportError, AuthenticationError, UnsupportedDialectError):
        error = ntstatus_failure(kind, "srv:445: session setup", NtStatus.STATUS_LOGON_FAILURE)
        assert type(error) is kind
        assert error.ntstatus == 0xC000006D
        assert error.ntstatus_name == "STATUS_LOGON_FAILURE"
        assert str(error) == "srv:445: session setup failed: STATUS_LOGON_FAILURE (0xC000006D)"
