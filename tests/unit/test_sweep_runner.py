"""Probe one host and the thread pool with its watchdog (``smbsessions.sweep.runner``)."""

from __future__ import annotations

import threading
import time

import pytest

from smbsessions.auth import Credentials
from smbsessions.client import SessionClient
from smbsessions.status import (
    HostTimeoutError,
)
from smbsessions.sweep.records import HostRecord, host_record
from smbsessions.sweep.runner import HostRunner, SweepConfig
from smbsessions.sweep.targets import (
    Target,
)

CREDS = Credentials(username="alice", password="pw")


def test_runner_watchdog_ends_a_stuck_host_and_keeps_going() -> None:
    records: list[HostRecord] = []
    release = threading.Event()
    done = threading.Event()

    def probe(target: Target, config: SweepConfig, client: SessionClient | None) -> HostRecord:
        if target.host == "stuck":
            release.wait(30)
            return host_record(target, "ok", elapsed=0.0)
        return host_record(target, "ok-empty", elapsed=0.0)

    def emit(record: HostRecord) -> None:
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
    by_host = {r.host: r for r in records}
    assert by_host["stuck"].status == "timeout"
    assert "watchdog" in (by_host["stuck"].detail or "")
    assert by_host["a"].status == by_host["b"].status == "ok-empty"
    time.sleep(0.1)  # the stuck probe's late answer must be dropped
    assert len(records) == 3


def test_runner_turns_a_probe_crash_into_an_error_record() -> None:
    got: list[HostRecord] = []
    ready = threading.Event()

    def probe(target: Target, config: SweepConfig, client: SessionClient | None) -> HostRecord:
        raise ValueError("bug")

    def emit(record: HostRecord) -> None:
        got.append(record)
        ready.set()

    runner = HostRunner(SweepConfig(CREDS, timeout=5), 2, emit, probe)
    runner.submit(Target("h", 1))
    assert ready.wait(5)
    runner.close()
    assert got[0].status == "error" and got[0].error == "ValueError"


def test_an_aborted_client_never_connects() -> None:
    client = SessionClient("127.0.0.1", 9, credentials=CREDS, timeout=1)
    client.abort()
    with pytest.raises(HostTimeoutError, match="aborted"):
        client.open()


def test_a_host_sending_more_than_the_entry_budget_is_an_error_not_a_memory_hog() -> None:
    from .test_client_logic import EndpointPipe, endless_pages

    class EndlessClient(SessionClient):
        def open(self) -> SessionClient:
            if self._pipe is None:
                pipe = EndpointPipe(endless_pages(500))
                self._pipe = pipe  # type: ignore[assignment]
                self._rpc.receive_bind_ack(pipe.transceive(self._rpc.bind()))
            return self

    records: list[HostRecord] = []
    done = threading.Event()

    def emit(record: HostRecord) -> None:
        records.append(record)
        done.set()

    config = SweepConfig(CREDS, timeout=20, max_entries=2000)
    assert config.max_bytes == 1 << 20  # never below 1 MiB
    runner = HostRunner(config, 1, emit, client_class=EndlessClient)
    runner.submit(Target("10.0.0.1", 445))
    assert done.wait(20)
    runner.close()
    (record,) = records
    assert record.status == "error" and "more than 2,000 sessions" in (record.detail or "")
