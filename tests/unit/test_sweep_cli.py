"""``smbsessions sweep`` as a command: output files, resume, summaries, formats (fake probes)."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from smbsessions import logsetup
from smbsessions.cli import main
from smbsessions.client import SessionClient
from smbsessions.output import RecordWriter
from smbsessions.sweep import cli as sweep_cli
from smbsessions.sweep import pool
from smbsessions.sweep.display import Progress
from smbsessions.sweep.pool import SweepStats
from smbsessions.sweep.records import CSV_COLUMNS, HostRecord, host_record
from smbsessions.sweep.resume import read_results, trim_partial_line
from smbsessions.sweep.runner import SweepConfig
from smbsessions.sweep.targets import Exclusions, Target, TargetSource, expand

CREDS = ("-U", "alice%pw")


def session(client: str, user: str, own: bool = False) -> dict[str, Any]:
    return {"client_name": f"\\\\{client}", "client_name_raw": client, "user_name": user, "num_opens": 1,
            "active_time": 5, "idle_time": 0, "user_flags": 0, "level": 1, "own_session": own}


def fake_probe(target: Target, config: SweepConfig, client: SessionClient | None) -> HostRecord:
    """``sN`` hosts answer with sessions (bob's on s1, s2), ``eN`` with none, ``dN`` are unreachable."""
    kind = target.host[0]
    if kind == "s":
        sessions = [session("10.0.0.9", "alice", own=True), session("10.0.0.7", "bob"),
                    session("10.0.0.8", f"user{target.host}")]
        return host_record(target, "ok", elapsed=0.01, level=1, sessions=sessions)
    if kind == "e":
        return host_record(target, "ok-empty", elapsed=0.01, level=1)
    return host_record(target, "unreachable", elapsed=0.01, detail="refused")


@pytest.fixture
def fake_sweep(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every sweep of the command line uses ``fake_probe`` in-process; returns the hosts probed."""
    probed: list[str] = []

    def probe(target: Target, config: SweepConfig, client: SessionClient | None) -> HostRecord:
        probed.append(target.host)
        return fake_probe(target, config, client)

    def run(*args: Any, **kwargs: Any) -> SweepStats:
        kwargs["probe"] = probe
        kwargs["processes"] = 1
        return pool.run_sweep(*args, **kwargs)

    monkeypatch.setattr(sweep_cli, "run_sweep", run)
    return probed


def run_cli(*argv: str, stdin: str | None = None, monkeypatch: pytest.MonkeyPatch | None = None
            ) -> tuple[int, str, str]:
    if stdin is not None:
        assert monkeypatch is not None
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    out, err = io.StringIO(), io.StringIO()
    code = main(["sweep", *argv, *CREDS], out, err)
    return code, out.getvalue(), err.getvalue()


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --------------------------------------------------------------------------- item 3: no silent overwrite


def test_a_non_empty_output_is_refused_without_resume_or_overwrite(fake_sweep: list[str], tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    output.write_text('{"host": "s1", "port": 445, "status": "ok"}\n')
    code, _, err = run_cli("s1", "-o", str(output))
    assert code == 2 and "not empty" in err and "--resume" in err and "--overwrite" in err
    assert fake_sweep == [] and output.read_text().startswith('{"host": "s1"')
    code, _, err = run_cli("s1", "e1", "-o", str(output), "--overwrite")
    assert code == 0 and [r["host"] for r in lines(output)] == ["s1", "e1"]
    (tmp_path / "empty.jsonl").write_text("")
    assert run_cli("e1", "-o", str(tmp_path / "empty.jsonl"))[0] == 0


# --------------------------------------------------------------------------- item 4: whole-file summary


def test_resume_summary_covers_the_whole_file(fake_sweep: list[str], tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    code, _, err = run_cli("s1", "s2", "e1", "--user", "bob", "-o", str(output))
    assert code == 0 and "user 'bob' found on 2 host(s): s1:445, s2:445" in err
    fake_sweep.clear()
    code, _, err = run_cli("s1", "s2", "e1", "d1", "e2", "--user", "bob", "-o", str(output), "--resume")
    assert fake_sweep == ["d1", "e2"]
    assert "this run: swept 2 of 2 host(s)" in err
    assert f"in total ({output}): 5 host(s)" in err
    assert "ok 2, ok-empty 2, unreachable 1" in err
    assert "4 of 5 hosts expose sessions" in err
    assert "user 'bob' found on 2 host(s): s1:445, s2:445" in err
    assert code == 9  # the verdict of the whole file: d1 did not answer


def test_own_session_is_neither_counted_nor_a_user(fake_sweep: list[str], tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    assert run_cli("s1", "--user", "alice", "-o", str(output))[0] == 0
    record = lines(output)[0]
    assert record["session_count"] == 2 and record["users"] == ["bob", "users1"]
    assert [s["own_session"] for s in record["sessions"]] == [True, False, False]


# --------------------------------------------------------------------------- item 7: cut lines, disk full


def test_resume_retries_a_host_whose_jsonl_line_was_cut(fake_sweep: list[str], tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    run_cli("s1", "s2", "-o", str(output))
    text = output.read_text()
    output.write_text(text[:-1])  # the last record lost its newline (disk full, kill -9)
    fake_sweep.clear()
    code, _, err = run_cli("s1", "s2", "-o", str(output), "--resume")
    assert "resuming: 1 host(s)" in err
    assert fake_sweep == ["s2"]
    assert [r["host"] for r in lines(output)] == ["s1", "s2"]
    assert code == 0


def test_resume_retries_a_host_whose_csv_row_was_cut(fake_sweep: list[str], tmp_path: Path) -> None:
    output = tmp_path / "out.csv"
    run_cli("e1", "e2", "-o", str(output), "--format", "csv")
    text = output.read_text()
    output.write_text(text[: text.rindex("e2") + 8])  # cut mid-row
    fake_sweep.clear()
    run_cli("e1", "e2", "-o", str(output), "--format", "csv", "--resume")
    assert fake_sweep == ["e2"]
    rows = list(csv.DictReader(output.open(newline="")))
    assert [row["host"] for row in rows] == ["e1", "e2"]


def test_disk_full_stops_cleanly_with_a_resume_hint(fake_sweep: list[str]) -> None:
    code, _, err = run_cli("s1", "e1", "-o", "/dev/full")
    assert code == 1
    assert ("cannot write /dev/full: No space left on device; 0 finished host(s) are in /dev/full; "
            "free space and rerun with --resume") in err
    assert "Traceback" not in err


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/bin/mount").exists(), reason="needs root to mount a tmpfs")
def test_disk_full_on_a_small_tmpfs(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(mount)],
                      capture_output=True, timeout=30).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        output = mount / "out.jsonl"
        targets = [f"s{i}" for i in range(200)]
        probe_code = (
            "import sys; "
            "from tests.unit import test_sweep_cli as t; from smbsessions.sweep import pool, cli as sweep_cli; "
            "sweep_cli.run_sweep = lambda *a, **k: pool.run_sweep(*a, **{**k, 'probe': t.fake_probe, "
            "'processes': 1}); "
            "from smbsessions.cli import main; sys.exit(main(sys.argv[1:]))"
        )
        root = str(Path(__file__).resolve().parents[2])
        result = subprocess.run(
            [sys.executable, "-c", probe_code, "sweep", *targets, *CREDS, "-o", str(output)],
            capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": root + "/src"}, cwd=root,
        )
        assert result.returncode == 1, result.stderr
        assert "No space left on device" in result.stderr and "Traceback" not in result.stderr
        finished = int(result.stderr.split("; ")[1].split(" finished")[0])
        assert 0 < finished < len(targets)
        trim_partial_line(output)
        assert len(output.read_text().splitlines()) >= finished
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True, timeout=30)


# --------------------------------------------------------------------------- item 6: one bad record


def test_a_record_that_cannot_be_written_does_not_stop_the_sweep(
    fake_sweep: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = RecordWriter.write

    def write(self: Any, record: dict[str, Any]) -> None:
        if record["host"] == "s2" and record["sessions"]:
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
        real_write(self, record)

    monkeypatch.setattr(RecordWriter, "write", write)
    output = tmp_path / "out.jsonl"
    code, _, err = run_cli("s1", "s2", "s3", "-o", str(output))
    records = {r["host"]: r for r in lines(output)}
    assert set(records) == {"s1", "s2", "s3"}
    assert records["s2"]["status"] == "error" and records["s2"]["error"] == "RecordNotWritable"
    assert "cannot write the record of s2:445 (UnicodeEncodeError)" in err
    assert "1 record(s) could not be written" in err
    assert code == 9


# --------------------------------------------------------------------------- item 21: formats, targets


def test_csv_has_one_row_per_session_and_no_json_in_cells(fake_sweep: list[str]) -> None:
    code, out, _ = run_cli("s1", "e1", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["host"], r["user_name"], r["own_session"]) for r in rows] == [
        ("s1", "alice", "True"), ("s1", "bob", "False"), ("s1", "users1", "False"), ("e1", "", "")]
    assert all(r["session_count"] == "2" for r in rows[:3])
    assert not any(cell.startswith(("[", "{")) for r in rows for cell in r.values())


def test_csv_results_read_back_per_host(fake_sweep: list[str], tmp_path: Path) -> None:
    output = tmp_path / "out.csv"
    run_cli("s1", "e1", "d1", "--format", "csv", "-o", str(output))
    results = read_results(output, "csv")
    assert results.statuses == {"s1:445": "ok", "e1:445": "ok-empty", "d1:445": "unreachable"}
    assert results.users["s1:445"] == {"bob", "users1"}
    assert results.hosts_with_user("BOB") == ["s1:445"]


def test_json_format_is_one_array(fake_sweep: list[str]) -> None:
    code, out, _ = run_cli("s1", "d1", "--format", "json")
    assert code == 9 and [r["host"] for r in json.loads(out)] == ["s1", "d1"]


def test_targets_from_stdin_and_exclusions(fake_sweep: list[str], monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    excluded = tmp_path / "never.txt"
    excluded.write_text("# do not touch\ne3\n10.1.0.0/30\n")
    code, _, _ = run_cli("-f", "-", "--exclude", "e2,10.1.0.9", "--exclude", f"@{excluded}",
                           stdin="e1\ne2\ne3\n10.1.0.1\n10.1.0.9\n10.1.0.10\n", monkeypatch=monkeypatch)
    assert code == 9  # the 10.x hosts are unreachable fakes ("1" is not "s"/"e")
    assert fake_sweep == ["e1", "10.1.0.10"]


def test_exclusions_match_names_addresses_and_ranges() -> None:
    excluded = Exclusions(["Host1,10.0.0.0/24", "fd00::/64"])
    assert Target("host1", 4455) in excluded
    assert Target("10.0.0.200", 445) in excluded and Target("10.0.1.1", 445) not in excluded
    assert Target("fd00::5", 445) in excluded and Target("fd01::5", 445) not in excluded
    assert Target("host2", 445) not in excluded


def test_stdin_targets_are_read_once_for_both_passes() -> None:
    source = TargetSource([], ["-"], stdin=io.StringIO("a\nb # comment\n\nc\n"))
    assert [t.host for t in expand(source.specs())] == ["a", "b", "c"]
    assert [t.host for t in expand(source.specs())] == ["a", "b", "c"]


def test_table_can_show_only_hosts_with_sessions(fake_sweep: list[str]) -> None:
    code, out, err = run_cli("s1", "e1", "d1", "--format", "table", "--only-sessions")
    assert code == 9
    rows = out.splitlines()
    assert rows[0].startswith("HOST") and len(rows) == 2 and rows[1].startswith("s1:445")
    assert "ok 1, ok-empty 1, unreachable 1" in err
    assert run_cli("s1", "--only-sessions")[0] == 2


# --------------------------------------------------------------------------- item 20: progress


def test_progress_line_fits_and_tells_unreachable_from_failed() -> None:
    stats = SweepStats(total=1000)
    for status in ["ok"] * 5 + ["unreachable"] * 7 + ["timeout"] * 2 + ["error"] * 3 + ["denied"]:
        stats.add(host_record(Target("h", 445), status, elapsed=0.0))
    stats.started -= 30
    progress = Progress(io.StringIO(), 1000, stats, enabled=True, width=lambda: 200)
    progress.in_flight = lambda: 12
    line = progress.line()
    assert "18/1000 hosts" in line and "0:30" in line and "ETA " in line and "in flight 12" in line
    assert "unreachable 9" in line and "failed 3" in line and "denied 1" in line
    for width in (20, 40, 60, 80):
        narrow = Progress(io.StringIO(), 1000, stats, enabled=True, width=lambda w=width: w)
        assert len(narrow.line()) < width


# --------------------------------------------------------------------------- item 9: logging


def test_third_party_records_only_from_vv_and_progress_cleared_first() -> None:
    stream = io.StringIO()
    third_party = logging.getLogger("smbprotocol.transport")
    ours = logging.getLogger("smbsessions.test")
    try:
        for verbosity, shown in ((0, False), (1, False), (2, True)):
            logsetup.configure_logging(verbosity, stream)
            third_party.warning("socket aborted by peer (ECONNRESET), treating as EOF")
            assert ("socket aborted by peer" in stream.getvalue()) is shown
            stream.truncate(0)
            stream.seek(0)
        logsetup.configure_logging(0, stream)
        cleared: list[int] = []
        with logsetup.before_emit(lambda: cleared.append(len(stream.getvalue()))):
            ours.warning("a warning of ours")
        assert cleared == [0] and "a warning of ours" in stream.getvalue()
    finally:
        logsetup.configure_logging(0, sys.stderr)


def test_vv_lines_from_worker_processes_name_their_host() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # released at once, never listened on: refused
    root = str(Path(__file__).resolve().parents[2])
    code = "import sys; from smbsessions.cli import main; sys.exit(main(sys.argv[1:]))"
    for verbosity, shown in (("-v", False), ("-vv", True)):
        result = subprocess.run(
            [sys.executable, "-c", code, verbosity, "sweep", f"127.0.0.1:{port}", *CREDS, "--processes", "2",
             "--concurrency", "2", "--timeout", "5"],
            capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": root + "/src"},
        )
        assert result.returncode == 9, result.stderr
        assert (f"smbsessions.sweep DEBUG 127.0.0.1:{port}: unreachable" in result.stderr) is shown, result.stderr


def test_a_password_in_the_user_filter_is_refused_before_anything_is_sent(fake_sweep: list[str]) -> None:
    code, _, err = run_cli("s1", "--user", "bob%Secr3t")
    assert code == 2 and "-U" in err and "Secr3t" not in err
    assert fake_sweep == []


def test_help_has_examples_statuses_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    text = capsys.readouterr().out
    assert text.count("smbsessions sweep ") >= 3 and "examples:" in text
    assert "not-attempted" in text and "--continue-on-auth-failure" in text
    for code in ("0", "1", "2", "6", "9", "130"):
        assert f"\n  {code} " in text


def test_resume_retries_a_host_whose_csv_record_lost_session_rows(fake_sweep: list[str], tmp_path: Path) -> None:
    output = tmp_path / "out.csv"
    run_cli("e1", "s1", "-o", str(output), "--format", "csv")
    lines_ = output.read_text().splitlines(keepends=True)
    assert len(lines_) == 1 + 1 + 3  # header, e1, s1's three sessions
    output.write_text("".join(lines_[:-1]))  # the disk filled up after s1's second session row
    fake_sweep.clear()
    run_cli("e1", "s1", "-o", str(output), "--format", "csv", "--resume")
    assert fake_sweep == ["s1"]
    assert read_results(output, "csv").users["s1:445"] == {"bob", "users1"}


def surrogate_probe(target: Target, config: SweepConfig, client: SessionClient | None) -> HostRecord:
    if target.host == "s2":  # a lone UTF-16 surrogate and terminal escapes, as a hostile server may send
        sessions = [session("10.0.0.7", "bad\ud800name\x1b[31m\u202e")]
        return host_record(target, "ok", elapsed=0.01, level=1, sessions=sessions)
    return fake_probe(target, config, client)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_lone_surrogate_never_stops_the_sweep_or_its_resume(
    fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def run(*args: Any, **kwargs: Any) -> SweepStats:
        return pool.run_sweep(*args, **{**kwargs, "probe": surrogate_probe, "processes": 1})

    monkeypatch.setattr(sweep_cli, "run_sweep", run)
    output = tmp_path / f"out.{fmt}"
    code, _, err = run_cli("s1", "s2", "s3", "-o", str(output), "--format", fmt)
    assert "Traceback" not in err and code in (0, 9)
    raw = output.read_bytes()
    assert b"\x1b" not in raw and "\u202e".encode() not in raw
    results = read_results(output, fmt)
    assert set(results.statuses) == {"s1:445", "s2:445", "s3:445"}
    code, _, err = run_cli("s1", "s2", "s3", "s4", "-o", str(output), "--format", fmt, "--resume")
    assert "Traceback" not in err and "resuming: 3 host(s)" in err
    assert set(read_results(output, fmt).statuses) == {"s1:445", "s2:445", "s3:445", "s4:445"}


def test_a_worker_log_line_is_written_by_the_parent_after_clearing_the_progress_line() -> None:
    stream = io.StringIO()
    try:
        logsetup.configure_logging(2, stream)
        events: list[Any] = []
        with logsetup.before_emit(lambda: events.append("cleared")):
            pool._LogLines(_ListQueue(events)).write("from a worker\n")
            index, text = pool._LOG_LINE, "2026 smbsessions.sweep DEBUG h:445: unreachable\n"
            pool._deliver([], (index, text), lambda record: None, SweepStats())
        assert events == [(pool._LOG_LINE, "from a worker\n"), "cleared"]
        assert stream.getvalue() == "2026 smbsessions.sweep DEBUG h:445: unreachable\n"
    finally:
        logsetup.configure_logging(0, sys.stderr)


class _ListQueue:
    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def put(self, item: Any) -> None:
        self.items.append(item)


def test_output_piped_into_head_ends_quietly() -> None:
    root = str(Path(__file__).resolve().parents[2])
    code = ("import sys; from tests.unit import test_sweep_cli as t; "
            "from smbsessions.sweep import pool, cli as sweep_cli; "
            "sweep_cli.run_sweep = lambda *a, **k: pool.run_sweep(*a, **{**k, 'probe': t.fake_probe, "
            "'processes': 1}); from smbsessions.cli import main; sys.exit(main(sys.argv[1:]))")
    result = subprocess.run(
        f"{sys.executable} -c \"{code}\" sweep " + " ".join(f"s{i}" for i in range(300))
        + " -U alice%pw | head -1",
        shell=True, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": root + "/src"},
        cwd=root,
    )
    assert result.stdout.count("\n") == 1
    assert "free space" not in result.stderr and "Traceback" not in result.stderr


# --------------------------------------------------------------------------- command line (from test_sweep.py)


def run_sweep_command(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["sweep", *argv], out, err)
    return code, out.getvalue(), err.getvalue()


def test_cli_usage_errors() -> None:
    assert run_sweep_command("-U", "a%b")[0] == 2
    code, _, err = run_sweep_command("h1", "--resume", "-U", "a%b")
    assert code == 2 and "--output" in err
    code, _, err = run_sweep_command("bad..host", "-U", "a%b")
    assert code == 2 and "bad..host" in err
    code, _, err = run_sweep_command("10.0.0.0/8", "-U", "a%b")
    assert code == 2 and "--max-range" in err


def test_cli_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    text = capsys.readouterr().out
    assert "exit codes:" in text and "9    the sweep ran; some hosts did not answer" in text
    assert "skipped" in text and "ok-empty" in text


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # released at once and never listened on: refused


def test_cli_sweeps_a_closed_port_and_reports(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    port = closed_port()
    code, _out, err = run_sweep_command(f"127.0.0.1:{port}", "--timeout", "2", "-U", "a%b", "-o", str(output),
                              "--processes", "1")
    assert code == 9
    record = json.loads(output.read_text())
    assert record["status"] == "unreachable" and record["port"] == port
    assert "0 of 1 hosts expose sessions" in err and "unreachable 1" in err


def test_the_sweep_command_does_not_import_the_root_cli() -> None:
    # The root CLI imports the sweep's parser; importing it back would be a cycle.
    code = "import sys, smbsessions.sweep.cli; print('smbsessions.cli' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert run.stdout.strip() == "False"
