"""Worker processes and dispatch (``smbsessions.sweep.pool``), with module-level probes workers can run."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from smbsessions.auth import Credentials
from smbsessions.client import SessionClient
from smbsessions.status import (
    HostUnreachableError,
)
from smbsessions.sweep.pool import run_sweep, split_concurrency
from smbsessions.sweep.records import HostRecord, host_record
from smbsessions.sweep.resume import read_resume
from smbsessions.sweep.runner import SweepConfig
from smbsessions.sweep.statuses import WORKER_DIED
from smbsessions.sweep.targets import (
    Target,
    expand,
    parse_spec,
)

CREDS = Credentials(username="alice", password="pw")


# --------------------------------------------------------------------------- engine


def fake_probe(target: Target, config: SweepConfig, client: SessionClient | None) -> HostRecord:
    """Module level so worker processes can run it: the last octet picks the outcome."""
    last = int(target.host.rsplit(".", 1)[1])
    if last % 5 == 0:
        raise HostUnreachableError(f"{target.host}: refused")
    if last % 7 == 0:
        time.sleep(5)  # silent host: only the watchdog ends it
    status = "ok" if last % 2 else "ok-empty"
    sessions = [{"client_name": "\\\\c", "user_name": "u"}] if status == "ok" else []
    return host_record(target, status, elapsed=0.0, level=1, sessions=sessions)


@pytest.mark.parametrize("processes", [1, 2])
def test_run_sweep_one_record_per_target(processes: int) -> None:
    targets = list(expand([parse_spec("10.9.0.0/26")]))
    records: list[HostRecord] = []
    # The 5 s sleepers end by the watchdog; the rest must finish well inside the timeout
    # even on a loaded machine.
    config = SweepConfig(CREDS, timeout=1.5, margin=0.2)
    stats = run_sweep(targets, config, records.append, concurrency=16, processes=processes, probe=fake_probe)
    keys = [r.host for r in records]
    assert sorted(keys) == sorted(t.host for t in targets) and len(keys) == len(set(keys))
    by_host = {r.host: r.status for r in records}
    assert by_host["10.9.0.5"] == "unreachable"
    assert by_host["10.9.0.7"] == "timeout"
    assert by_host["10.9.0.3"] == "ok" and by_host["10.9.0.2"] == "ok-empty"
    assert stats.done == len(targets) == sum(stats.by_status.values())


def test_run_sweep_deadline_skips_the_rest() -> None:
    targets = [Target(f"10.9.1.{i}", 445) for i in (7, 14, 21, 28)] + [Target(f"10.9.2.{i}", 445) for i in range(1, 40)]
    records: list[HostRecord] = []
    # Long enough for the worker processes to start (forkserver), shorter than the 5 s sleepers.
    config = SweepConfig(CREDS, timeout=30, margin=0.5, deadline=time.monotonic() + 3)
    run_sweep(targets, config, records.append, concurrency=4, processes=2, probe=fake_probe)
    statuses = {r.host: r.status for r in records}
    assert len(records) == len(targets) == len(statuses)
    assert {statuses[f"10.9.1.{i}"] for i in (7, 14, 21, 28)} == {"timeout"}
    assert {statuses[t.host] for t in targets[4:]} == {"skipped"}


def test_split_concurrency() -> None:
    assert split_concurrency(64, 2) == [32, 32]
    assert split_concurrency(5, 2) == [3, 2]
    assert split_concurrency(1, 4) == [1]


def crashing_probe(target: Target, config: SweepConfig, client: SessionClient | None) -> HostRecord:
    if target.host == "10.9.3.13":
        time.sleep(0.2)  # let this worker take more targets first
        os._exit(3)
    time.sleep(0.01)
    return host_record(target, "ok-empty", elapsed=0.0)


def test_a_crashed_worker_loses_no_host_and_resume_retries_them(tmp_path: Path) -> None:
    targets = [Target(f"10.9.3.{i}", 445) for i in range(1, 41)]
    records: list[HostRecord] = []
    run_sweep(targets, SweepConfig(CREDS, timeout=5), records.append, concurrency=4, processes=2,
              probe=crashing_probe)
    statuses = {r.host: (r.status, r.error) for r in records}
    assert len(records) == len(statuses) == len(targets)
    assert statuses["10.9.3.13"] == ("error", WORKER_DIED)
    assert set(statuses.values()) <= {("error", WORKER_DIED), ("ok-empty", None)}
    path = tmp_path / "out.jsonl"
    path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in records))
    done = read_resume(path).done
    assert "10.9.3.13:445" not in done
    assert len(done) == sum(1 for status in statuses.values() if status[0] == "ok-empty")


def instant_probe(target: Target, config: SweepConfig, client: SessionClient | None) -> HostRecord:
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

    def on_record(record: HostRecord) -> None:
        nonlocal recorded
        recorded += 1

    run_sweep(generate(), SweepConfig(CREDS), on_record, concurrency=8, processes=processes,
              probe=instant_probe)
    assert produced == recorded == (1 << 14) - 2
    # Threads plus a small prefetch per worker: never the whole target list.
    assert most_in_flight <= 8 + 2 * max(2, 8 // processes // 2) + 1
