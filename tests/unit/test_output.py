"""Output formats (output.py): table, JSON, JSON Lines, CSV; the sessions-file round trip."""

from __future__ import annotations

import csv
import io
import json

import pytest

from smbsessions.levels import SessionInfo
from smbsessions.output import format_duration, format_flags, session_table, write_sessions
from smbsessions.server.decoys import SessionsFileError, parse_sessions

RECORDS = [
    {"client_name": "\\\\127.0.0.2", "user_name": "alice", "num_opens": 2, "active_time": 3725,
     "idle_time": 90061, "user_flags": 1, "client_type": "SMB 2.1", "transport": "TCP",
     "client_name_raw": "127.0.0.2", "level": 502},
    {"client_name": "\\\\[::1]", "user_name": "bob", "num_opens": 0, "active_time": 0xFFFFFFFF,
     "idle_time": 0, "user_flags": 0, "client_type": None, "transport": "TCP",
     "client_name_raw": "::1", "level": 502},
]


def test_durations_and_flags_read_at_a_glance() -> None:
    assert format_duration(3725) == "01:02:05"
    assert format_duration(90061) == "1d 01:01:01"
    assert format_duration(0xFFFFFFFF) == "<1s"
    assert format_flags(3) == "SESS_GUEST,SESS_NOENCRYPTION"
    assert format_flags(0) == "-"


def test_table_has_headers_durations_and_flag_names() -> None:
    table = session_table(RECORDS, 502)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["Client", "User", "Opens"]
    assert "01:02:05" in lines[2] and "SESS_GUEST" in lines[2]
    assert "<1s" in lines[3]


def test_json_is_an_array_that_feeds_the_sessions_file() -> None:
    out = io.StringIO()
    assert write_sessions(RECORDS, 502, "json", out) == 2
    data = json.loads(out.getvalue())
    assert data == RECORDS
    decoys = parse_sessions(out.getvalue())
    assert decoys[0] == SessionInfo("\\\\127.0.0.2", "alice", 2, 3725, 90061, 1, "SMB 2.1", "TCP")
    empty = io.StringIO()
    write_sessions([], 502, "json", empty)
    assert json.loads(empty.getvalue()) == []


def test_jsonl_and_csv() -> None:
    out = io.StringIO()
    write_sessions(RECORDS, 502, "jsonl", out)
    assert [json.loads(line) for line in out.getvalue().splitlines()] == RECORDS
    out = io.StringIO()
    write_sessions(RECORDS, 10, "csv", out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0]) == ["host", "port", "client_name", "user_name", "active_time", "idle_time",
                             "client_name_raw", "level", "own_session"]
    assert rows[1]["client_name_raw"] == "::1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"client_name": "x"}', ":1: expected a JSON array"),
        ('[\n{"client_name": "\\\\\\\\a"},\n{"user_name": 3}\n]', ":3: entry 2: 'user_name' must be a string"),
        ('[\n{"client_name": "\\\\\\\\a", "active_time": -5}]', ":2: entry 1: 'active_time' must be between"),
        ('[\n{"client_name": "a",\n', ":3: invalid JSON"),
    ],
)
def test_bad_sessions_file_names_line_and_reason(text: str, message: str) -> None:
    with pytest.raises(SessionsFileError, match=message):
        parse_sessions(text, "f.json")


def test_server_strings_cannot_drive_the_terminal() -> None:
    hostile = {"client_name": "\\\\x\x1b]0;owned\x07", "user_name": "bob\x1b[2J"}
    table = session_table([hostile], 10)
    assert "\x1b" not in table and "\x07" not in table
    assert "\\x1b]0;owned\\x07" in table
    # Machine formats keep the exact value.
    out = io.StringIO()
    write_sessions([hostile], 10, "jsonl", out)
    assert json.loads(out.getvalue())["user_name"] == "bob\x1b[2J"
