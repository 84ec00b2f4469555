"""Unit tests of the sweep: targets, classification, resume files, the engine with fake probes."""

from __future__ import annotations

import io
import ipaddress
import itertools
import json
import os
import socket
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smbsessions.auth import Credentials
from smbsessions.cli import main
from smbsessions.client import SessionClient
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
from smbsessions.sweep import (
    RECORD_COLUMNS,
    STATUSES,
    WORKER_DIED,
    HostRunner,
    SweepConfig,
    classify,
    host_record,
    read_resume,
    run_sweep,
    split_concurrency,
    trim_partial_line,
)
from smbsessions.targets import (
    DEFAULT_PORT,
    NameSpec,
    RangeSpec,
    Target,
    TargetSource,
    count_targets,
    expand,
    parse_spec,
)

CREDS = Credentials(username="alice", password="pw")


def targets_of(*entries: str, max_range: int = 65536) -> list[str]:
    return [t.key for t in expand(parse_spec(e, max_range=max_range) for e in entries)]


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("fileserver", NameSpec("fileserver", DEFAULT_PORT)),
        ("FileServer.Corp.Example:4455", NameSpec("fileserver.corp.example", 4455)),
        ("10.1.2.3", RangeSpec(4, int(ipaddress.ip_address("10.1.2.3")), int(ipaddress.ip_address("10.1.2.3")), 445)),
        ("10.1.2.3:139", RangeSpec(4, 0x0A010203, 0x0A010203, 139)),
        ("::1", RangeSpec(6, 1, 1, 445)),
        ("[::1]:4455", RangeSpec(6, 1, 1, 4455)),
        ("[fe80::1]", RangeSpec(6, int(ipaddress.ip_address("fe80::1")), int(ipaddress.ip_address("fe80::1")), 445)),
        ("10.0.0.0/30", RangeSpec(4, 0x0A000001, 0x0A000002, 445)),
        ("10.0.0.0/30:4455", RangeSpec(4, 0x0A000001, 0x0A000002, 4455)),
        ("10.0.0.7/31", RangeSpec(4, 0x0A000006, 0x0A000007, 445)),
        ("10.0.0.7/32", RangeSpec(4, 0x0A000007, 0x0A000007, 445)),
        ("fd00::/126", RangeSpec(6, int(ipaddress.ip_address("fd00::1")), int(ipaddress.ip_address("fd00::3")), 445)),
        ("[fd00::/127]:8445", RangeSpec(6, int(ipaddress.ip_address("fd00::")), int(ipaddress.ip_address("fd00::1")), 8445)),
        ("  host-1  ", NameSpec("host-1", 445)),
    ],
)
def test_parse_spec_forms(text: str, spec: Any) -> None:
    assert parse_spec(text) == spec


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("bad..host", "not a host name"),
        ("-host", "not a host name"),
        ("host_with space", "not a host name"),
        ("10.0.0.0/33", "CIDR"),
        ("10.0.0.0/24:", "port"),
        ("10.0.0.0/24:0", "port"),
        ("1.2.3.4:99999", "port"),
        ("[::1", "unclosed"),
        ("[::1]x", "unexpected"),
        ("alice@host", "credentials"),
        ("[nothex::zz]", "IPv6"),
    ],
)
def test_parse_spec_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_spec(text)


def test_large_range_refused_with_clear_message_unless_allowed() -> None:
    with pytest.raises(ValueError, match=r"10\.0\.0\.0/15 has 131,070 addresses.*--max-range"):
        parse_spec("10.0.0.0/15")
    assert parse_spec("10.0.0.0/16").size == 65534
    assert parse_spec("10.0.0.0/15", max_range=1 << 17).size == 131070
    with pytest.raises(ValueError, match="--max-range"):
        parse_spec("fd00::/64")


# --------------------------------------------------------------------------- expansion


def test_expand_keeps_order_and_removes_duplicates() -> None:
    keys = targets_of(
        "10.0.0.2", "10.0.0.0/29", "10.0.0.5", "host", "HOST", "host:446", "10.0.0.4/30", "10.0.0.9", "::1",
        "[::1]:445", "[::1]:4455",
    )
    assert keys == [
        "10.0.0.2:445", "10.0.0.1:445", "10.0.0.3:445", "10.0.0.4:445", "10.0.0.5:445", "10.0.0.6:445",
        "host:445", "host:446", "10.0.0.9:445", "[::1]:445", "[::1]:4455",
    ]
    assert len(keys) == len(set(keys))


def test_same_address_on_another_port_is_another_target() -> None:
    assert targets_of("127.0.0.1:4455", "127.0.0.1:4456", "127.0.0.1:4455") == [
        "127.0.0.1:4455", "127.0.0.1:4456"
    ]


_ranges = st.lists(
    st.tuples(st.integers(0, 255), st.integers(24, 32), st.sampled_from([445, 4455])), min_size=1, max_size=12
)


@settings(max_examples=60, deadline=None)
@given(_ranges)
def test_count_matches_expansion_and_union(ranges: list[tuple[int, int, int]]) -> None:
    entries = [f"10.0.{third}.0/{prefix}:{port}" for third, prefix, port in ranges]
    entries += [f"10.0.{third}.{third}:{port}" for third, _, port in ranges]
    specs = [parse_spec(e) for e in entries]
    keys = [t.key for t in expand(specs)]
    assert len(keys) == len(set(keys)) == count_targets(specs)
    expected = set()
    for spec in specs:
        assert isinstance(spec, RangeSpec)
        for value in range(spec.first, spec.last + 1):
            expected.add(f"{ipaddress.IPv4Address(value)}:{spec.port}")
    assert set(keys) == expected


def test_expansion_is_lazy_and_bounded_in_memory() -> None:
    specs = [parse_spec("10.0.0.0/8", max_range=1 << 24), parse_spec("10.3.0.0/16")]
    tracemalloc.start()
    try:
        generator = expand(specs)
        first = [t.key for t in itertools.islice(generator, 2000)]
        assert count_targets(specs) == (1 << 24) - 2  # the /16 lies inside the /8
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert first[0] == "10.0.0.1:445" and first[-1] == "10.0.7.208:445"
    # 16 million targets named, 2000 generated: nothing per host was kept.
    assert peak < 2_000_000


def test_a_slash_16_streams_without_materialising(tmp_path: Path) -> None:
    tracemalloc.start()
    try:
        count = 0
        for _ in expand([parse_spec("172.16.0.0/16"), parse_spec("172.16.5.0/24")]):
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 65534
    assert peak < 1_000_000


def test_targets_file_comments_blanks_duplicates_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "targets.txt"
    path.write_text(
        "# servers\n"
        "\n"
        "fs1\n"
        "fs1   # again\n"
        "10.0.0.0/30\n"
        "not a host\n"
        "10.0.0.1\n"
        "  [::1]:4455  \n"
        "10.0.0.0/8\n"
    )
    source = TargetSource(["fs2", "FS1"], [path])
    bad: list[str] = []
    total = count_targets(source.specs(lambda entry: bad.append(str(entry))))
    keys = [t.key for t in expand(source.specs())]
    assert keys == ["fs2:445", "fs1:445", "10.0.0.1:445", "10.0.0.2:445", "[::1]:4455"]
    assert total == len(keys)
    assert bad == [
        f"{path}:6: 'not a host': not a host name, IP address or CIDR range",
        f"{path}:9: '10.0.0.0/8': range 10.0.0.0/8 has 16,777,214 addresses, more than the limit of 65,536; "
        "raise --max-range to sweep it",
    ]


def test_command_line_entries_checked_up_front() -> None:
    source = TargetSource(["ok-host", "bad..host"])
    assert [b.text for b in source.check_entries()] == ["bad..host"]


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


# --------------------------------------------------------------------------- resume


def _line(host: str, port: int, status: str) -> str:
    return json.dumps(host_record(Target(host, port), status, elapsed=0.1)) + "\n"


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


# --------------------------------------------------------------------------- engine


def fake_probe(target: Target, config: SweepConfig, client: SessionClient | None) -> dict[str, Any]:
    """Module level so worker processes can run it: the last octet picks the outcome."""
    last = int(target.host.rsplit(".", 1)[1])
    if last % 5 == 0:
        raise HostUnreachableError(f"{target.host}: refused")
    if last % 7 == 0:
        time.sleep(5)  # silent host: only the watchdog ends it
    status = "ok" if last % 2 else "ok-empty"
    sessions = [{"client_name": "\\\\c", "user_name": "u"}] if status == "ok" else []
    return host_record(target, status, elapsed=0.0, level=1, sessions=sessions)


def test_runner_watchdog_ends_a_stuck_host_and_keeps_going() -> None:
    records: list[dict[str, Any]] = []
    release = threading.Event()
    done = threading.Event()

    def probe(target: Target, config: SweepConfig, client: SessionClient | None) -> dict[str, Any]:
        if target.host == "stuck":
            release.wait(30)
            return host_record(target, "ok", elapsed=0.0)
        return host_record(target, "ok-empty", elapsed=0.0)

    def emit(record: dict[str, Any]) -> None:
        records.append(record)
        if len(records) == 3:
            done.set()

    runner = HostRunner(SweepConfig(CREDS, timeout=0.2, margin=0.05), 1, emit, probe)
    try:
        for host in ("stuck", "a", "b"):
            runner.submit(Target(host, 445))
        assert done.wait(10)
    finally:
        release.set()
        runner.close()
    by_host = {r["host"]: r for r in records}
    assert by_host["stuck"]["status"] == "timeout"
    assert "watchdog" in by_host["stuck"]["detail"]
    assert by_host["a"]["status"] == by_host["b"]["status"] == "ok-empty"
    time.sleep(0.1)  # the stuck probe's late answer must be dropped
    assert len(records) == 3


def test_runner_turns_a_probe_crash_into_an_error_record() -> None:
    got: list[dict[str, Any]] = []
    ready = threading.Event()

    def probe(target: Target, config: SweepConfig, client: SessionClient | None) -> dict[str, Any]:
        raise ValueError("bug")

    def emit(record: dict[str, Any]) -> None:
        got.append(record)
        ready.set()

    runner = HostRunner(SweepConfig(CREDS, timeout=5), 2, emit, probe)
    runner.submit(Target("h", 1))
    assert ready.wait(5)
    runner.close()
    assert got[0]["status"] == "error" and got[0]["error"] == "ValueError"


@pytest.mark.parametrize("processes", [1, 2])
def test_run_sweep_one_record_per_target(processes: int) -> None:
    targets = list(expand([parse_spec("10.9.0.0/26")]))
    records: list[dict[str, Any]] = []
    # The 5 s sleepers end by the watchdog; the rest must finish well inside the timeout
    # even on a loaded machine.
    config = SweepConfig(CREDS, timeout=1.5, margin=0.2)
    stats = run_sweep(targets, config, records.append, concurrency=16, processes=processes, probe=fake_probe)
    keys = [r["host"] for r in records]
    assert sorted(keys) == sorted(t.host for t in targets) and len(keys) == len(set(keys))
    by_host = {r["host"]: r["status"] for r in records}
    assert by_host["10.9.0.5"] == "unreachable"
    assert by_host["10.9.0.7"] == "timeout"
    assert by_host["10.9.0.3"] == "ok" and by_host["10.9.0.2"] == "ok-empty"
    assert stats.done == len(targets) == sum(stats.by_status.values())


def test_run_sweep_deadline_skips_the_rest() -> None:
    targets = [Target(f"10.9.1.{i}", 445) for i in (7, 14, 21, 28)] + [Target(f"10.9.2.{i}", 445) for i in range(1, 40)]
    records: list[dict[str, Any]] = []
    # Long enough for the worker processes to start (forkserver), shorter than the 5 s sleepers.
    config = SweepConfig(CREDS, timeout=30, margin=0.5, deadline=time.monotonic() + 3)
    run_sweep(targets, config, records.append, concurrency=4, processes=2, probe=fake_probe)
    statuses = {r["host"]: r["status"] for r in records}
    assert len(records) == len(targets) == len(statuses)
    assert {statuses[f"10.9.1.{i}"] for i in (7, 14, 21, 28)} == {"timeout"}
    assert {statuses[t.host] for t in targets[4:]} == {"skipped"}


def test_split_concurrency() -> None:
    assert split_concurrency(64, 2) == [32, 32]
    assert split_concurrency(5, 2) == [3, 2]
    assert split_concurrency(1, 4) == [1]


# --------------------------------------------------------------------------- command line


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["sweep", *argv], out, err)
    return code, out.getvalue(), err.getvalue()


def test_cli_usage_errors() -> None:
    assert run_cli("-U", "a%b")[0] == 2
    code, _, err = run_cli("h1", "--resume", "-U", "a%b")
    assert code == 2 and "--output" in err
    code, _, err = run_cli("bad..host", "-U", "a%b")
    assert code == 2 and "bad..host" in err
    code, _, err = run_cli("10.0.0.0/8", "-U", "a%b")
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
    code, _out, err = run_cli(f"127.0.0.1:{port}", "--timeout", "2", "-U", "a%b", "-o", str(output),
                              "--processes", "1")
    assert code == 9
    record = json.loads(output.read_text())
    assert record["status"] == "unreachable" and record["port"] == port
    assert "0 of 1 hosts expose sessions" in err and "unreachable 1" in err


def crashing_probe(target: Target, config: SweepConfig, client: SessionClient | None) -> dict[str, Any]:
    if target.host == "10.9.3.13":
        time.sleep(0.2)  # let this worker take more targets first
        os._exit(3)
    time.sleep(0.01)
    return host_record(target, "ok-empty", elapsed=0.0)


def test_a_crashed_worker_loses_no_host_and_resume_retries_them(tmp_path: Path) -> None:
    targets = [Target(f"10.9.3.{i}", 445) for i in range(1, 41)]
    records: list[dict[str, Any]] = []
    run_sweep(targets, SweepConfig(CREDS, timeout=5), records.append, concurrency=4, processes=2,
              probe=crashing_probe)
    statuses = {r["host"]: (r["status"], r["error"]) for r in records}
    assert len(records) == len(statuses) == len(targets)
    assert statuses["10.9.3.13"] == ("error", WORKER_DIED)
    assert set(statuses.values()) <= {("error", WORKER_DIED), ("ok-empty", None)}
    path = tmp_path / "out.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    done = read_resume(path).done
    assert "10.9.3.13:445" not in done
    assert len(done) == sum(1 for status in statuses.values() if status[0] == "ok-empty")


def test_an_aborted_client_never_connects() -> None:
    client = SessionClient("127.0.0.1", 9, credentials=CREDS, timeout=1)
    client.abort()
    with pytest.raises(HostTimeoutError, match="aborted"):
        client.open()


def instant_probe(target: Target, config: SweepConfig, client: SessionClient | None) -> dict[str, Any]:
    return host_record(target, "ok-empty", elapsed=0.0)


@pytest.mark.parametrize("processes", [1, 2])
def test_targets_are_pulled_only_as_workers_free_up(processes: int) -> None:
    produced = 0
    recorded = 0
    most_in_flight = 0

    def generate() -> Any:
        nonlocal produced, most_in_flight
        for target in expand([parse_spec("10.20.0.0/18")]):
            produced += 1
            most_in_flight = max(most_in_flight, produced - recorded)
            yield target

    def on_record(record: dict[str, Any]) -> None:
        nonlocal recorded
        recorded += 1

    run_sweep(generate(), SweepConfig(CREDS), on_record, concurrency=8, processes=processes,
              probe=instant_probe)
    assert produced == recorded == (1 << 14) - 2
    # Threads plus a small prefetch per worker: never the whole target list.
    assert most_in_flight <= 8 + 2 * max(2, 8 // processes // 2) + 1


def test_a_host_sending_more_than_the_entry_budget_is_an_error_not_a_memory_hog() -> None:
    from .test_client_logic import EndpointPipe, endless_pages

    class EndlessClient(SessionClient):
        def open(self) -> SessionClient:
            if self._pipe is None:
                pipe = EndpointPipe(endless_pages(500))
                self._pipe = pipe  # type: ignore[assignment]
                self._rpc.receive_bind_ack(pipe.transceive(self._rpc.bind()))
            return self

    records: list[dict[str, Any]] = []
    done = threading.Event()

    def emit(record: dict[str, Any]) -> None:
        records.append(record)
        done.set()

    config = SweepConfig(CREDS, timeout=20, max_entries=2000)
    assert config.max_bytes == 1 << 20  # never below 1 MiB
    runner = HostRunner(config, 1, emit, client_class=EndlessClient)
    runner.submit(Target("10.0.0.1", 445))
    assert done.wait(20)
    runner.close()
    (record,) = records
    assert record["status"] == "error" and "more than 2,000 sessions" in record["detail"]
