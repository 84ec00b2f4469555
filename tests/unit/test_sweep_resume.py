"""Output files read back (``smbsessions.sweep.resume``): truncated lines, CSV, missing files."""

from __future__ import annotations

import json
from pathlib import Path

from smbsessions.auth import Credentials
from smbsessions.sweep.records import host_record
from smbsessions.sweep.resume import read_resume, trim_partial_line
from smbsessions.sweep.targets import (
    Target,
)

CREDS = Credentials(username="alice", password="pw")


# --------------------------------------------------------------------------- resume


def _line(host: str, port: int, status: str) -> str:
    return json.dumps(host_record(Target(host, port), status, elapsed=0.1).to_dict()) + "\n"


def test_read_resume_tolerates_a_truncated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    text = _line("10.0.0.1", 445, "ok") + _line("::1", 4455, "timeout") + _line("10.0.0.3", 445, "skipped")
    text += "not json\n" + _line("10.0.0.1", 445, "ok") + _line("10.0.0.4", 445, "denied")[:40]
    path.write_text(text)
    state = read_resume(path)
    assert state.done == {"10.0.0.1:445", "[::1]:4455"}
    assert state.counts == {"ok": 1, "timeout": 1}
    assert state.bad_lines == 2
    removed = trim_partial_line(path)
    assert removed == 40
    assert path.read_text().endswith("not json\n" + _line("10.0.0.1", 445, "ok"))
    assert trim_partial_line(path) == 0


def test_read_resume_csv_and_missing_file(tmp_path: Path) -> None:
    assert read_resume(tmp_path / "absent.jsonl").done == set()
    path = tmp_path / "out.csv"
    path.write_text("host,port,status,level\nh1,445,ok,1\nh2,445,error,\nh3,445,skipp")
    assert read_resume(path, "csv").done == {"h1:445", "h2:445"}


def test_trim_partial_line_without_any_newline(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text('{"host": "h1", "po')
    assert trim_partial_line(path) == 18
    assert path.read_bytes() == b""
