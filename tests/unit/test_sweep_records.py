"""One host's record (``smbsessions.sweep.records``): exception -> status, the record's shape."""

from __future__ import annotations

import json
import pickle

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
from smbsessions.sweep.records import CSV_COLUMNS, RECORD_COLUMNS, classify, csv_rows, host_record
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
    assert tuple(record.to_dict()) == RECORD_COLUMNS
    assert record.users == ["al", "bob"] and record.session_count == 3
    assert record.elapsed == 0.1235
    json.dumps(record.to_dict())


def test_a_record_is_the_same_json_object_it_always_was_and_crosses_processes() -> None:
    sessions = [{"client_name": "\\\\c", "user_name": "bob", "own_session": False},
                {"client_name": "\\\\d", "user_name": "me", "own_session": True}]
    record = host_record(Target("h", 445), "ok", elapsed=0.123456, level=1, sessions=sessions)
    assert json.dumps(record.to_dict()) == (
        '{"host": "h", "port": 445, "status": "ok", "level": 1, "session_count": 1, "users": ["bob"], '
        '"sessions": [{"client_name": "\\\\\\\\c", "user_name": "bob", "own_session": false}, '
        '{"client_name": "\\\\\\\\d", "user_name": "me", "own_session": true}], "elapsed": 0.1235, '
        '"error": null, "code": null, "detail": null, "note": null}'
    )
    assert record.key == "h:445" and host_record(Target("::1", 4455), "ok", elapsed=0).key == "[::1]:4455"
    assert pickle.loads(pickle.dumps(record)) == record  # the worker processes' queue pickles records
    rows = csv_rows(record)
    assert [sorted(row) for row in rows] == [sorted(CSV_COLUMNS)] * 2  # the writer orders them
    assert [row["user_name"] for row in rows] == ["bob", "me"] and rows[0]["session_count"] == 1
    assert csv_rows(host_record(Target("h", 445), "timeout", elapsed=1)) == [{
        "host": "h", "port": 445, "status": "timeout", "level": None, "session_count": 0, "elapsed": 1,
        "error": None, "code": None, "detail": None, "note": None}]
