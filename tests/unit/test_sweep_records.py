"""One host's record (``smbsessions.sweep.records``): exception -> status, the record's shape."""

from __future__ import annotations

import json

import pytest

from smbsessions.auth import Credentials
from smbsessions.status import (
    AuthenticationError,
    DecodeError,
    HostTimeoutError,
    HostUnreachableError,
    NetApiError,
    NetApiStatus,
    ProtocolError,
    RpcFaultError,
    TransportError,
    UnsupportedDialectError,
)
from smbsessions.sweep.records import RECORD_COLUMNS, classify, host_record
from smbsessions.sweep.statuses import STATUSES
from smbsessions.sweep.targets import (
    Target,
)

CREDS = Credentials(username="alice", password="pw")


# --------------------------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("exc", "status", "error", "code"),
    [
        (NetApiError(NetApiStatus.ERROR_ACCESS_DENIED), "denied", "ERROR_ACCESS_DENIED", 5),
        (NetApiError(NetApiStatus.ERROR_INVALID_LEVEL), "invalid-level", "ERROR_INVALID_LEVEL", 124),
        (NetApiError(NetApiStatus.NERR_UserNotFound), "ok-empty", None, None),
        (NetApiError(NetApiStatus.NERR_ClientNameNotFound), "ok-empty", None, None),
        (NetApiError(NetApiStatus.ERROR_INVALID_PARAMETER), "error", "ERROR_INVALID_PARAMETER", 87),
        (NetApiError(0x1234), "error", "NET_API_STATUS_0x00001234", 0x1234),
        (AuthenticationError("logon failed", ntstatus=0xC000006D), "auth-failed", "STATUS_LOGON_FAILURE",
         0xC000006D),
        (AuthenticationError("no password"), "auth-failed", None, None),
        (HostUnreachableError("refused"), "unreachable", None, None),
        (HostTimeoutError("silent"), "timeout", None, None),
        (UnsupportedDialectError("SMB1 only"), "error", "UnsupportedDialect", None),
        (RpcFaultError(0x1C010002), "error", "nca_s_op_rng_error", 0x1C010002),
        (DecodeError("truncated"), "error", "DecodeError", None),
        (ProtocolError("bad pdu"), "error", "ProtocolError", None),
        (TransportError("pipe", ntstatus=0xC0000034), "error", "STATUS_OBJECT_NAME_NOT_FOUND", 0xC0000034),
        (TransportError("reset"), "error", "TransportError", None),
        (TimeoutError(), "timeout", None, None),
        (RuntimeError("bug"), "error", "RuntimeError", None),
    ],
)
def test_classify(exc: BaseException, status: str, error: str | None, code: int | None) -> None:
    found = classify(exc)
    assert (found.status, found.error, found.code) == (status, error, code)
    assert found.status in STATUSES


def test_not_found_is_ok_empty_with_a_note() -> None:
    found = classify(NetApiError(NetApiStatus.NERR_UserNotFound))
    assert found.note is not None and "NERR_UserNotFound" in found.note


def test_record_shape() -> None:
    sessions = [{"client_name": "\\\\10.0.0.5", "user_name": "bob"}, {"client_name": "x", "user_name": "al"},
                {"client_name": "y", "user_name": "bob"}]
    record = host_record(Target("h", 445), "ok", elapsed=0.123456, level=1, sessions=sessions)
    assert tuple(record) == RECORD_COLUMNS
    assert record["users"] == ["al", "bob"] and record["session_count"] == 3
    assert record["elapsed"] == 0.1235
    json.dumps(record)
