"""``watch`` when things go wrong: kill -9 and restart, a second watcher on the same store, the
database going away mid-watch (PostgreSQL stopped; SQLite locked by another writer).

Same hosts as test_watch.py: our server with decoys and held sessions on loopback. Each test
runs on SQLite and on PostgreSQL (the outage test on a private cluster it can stop).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from smbsessions.watch import history
from smbsessions.watch.events import LOGOFF, LOGON, Event
from smbsessions.watch.store import Store

from ..peers.ourserver import ADMIN, USER, decoy_sessions, running_server
from ..peers.postgres import PostgresServer, postgres_cluster, postgres_server  # noqa: F401 - fixtures
from .conftest import interop_ports
from .test_watch import OURS_ADDR, hold, store_db, summary, wait_for, watcher_for  # noqa: F401

BOB = (USER[0], USER[1])
RUN_TIMEOUT = 120


def _watch_argv(key: str, db: str, *extra: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from smbsessions.cli import main; sys.exit(main())",
            "watch", key, "-U", ADMIN[0], "--db", db, "--interval", "0.5", "--timeout", "5",
            "--processes", "1", *extra]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env["SMBSESSIONS_PASSWORD"] = ADMIN[1]
    return env


def _rows(db: str) -> list[dict[str, object]]:
    store = Store.open(db, create=False, upgrade=False)  # a reader: never races the watcher's set-up
    try:
        return list(history.sessions(store, history.Query()))
    finally:
        store.close()


def _stored_rows(db: str) -> list[dict[str, object]]:
    try:
        return _rows(db)
    except Exception:
        return []


@contextlib.contextmanager
def _process(argv: list[str]) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(argv, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def test_kill_9_then_restart_reconciles(store_db: str, tmp_path: Path) -> None:  # noqa: F811
    with running_server(tmp_path / "ours", bind=OURS_ADDR, decoys=decoy_sessions(2),
                        ports=interop_ports()) as ours:
        key = f"{OURS_ADDR}:{ours.port}"
        stays = hold(OURS_ADDR, ours.port, BOB, "127.0.42.3")
        leaves = hold(OURS_ADDR, ours.port, BOB, "127.0.42.2")
        arrives = None
        try:
            with _process(_watch_argv(key, store_db)) as first:
                wait_for(lambda: len(_stored_rows(store_db)) >= 4 or first.poll() is not None,
                         timeout=RUN_TIMEOUT, what="the first watcher to store a round")
                assert first.poll() is None, first.communicate()[1]
                # A second watcher on the same host is refused while the first lives.
                second = subprocess.run(_watch_argv(key, store_db, "--rounds", "1"), env=_env(),
                                        capture_output=True, text=True, timeout=RUN_TIMEOUT)
                assert second.returncode == 11, second.stderr
                assert "already watched by watcher" in second.stderr and key in second.stderr
                time.sleep(0.7)  # somewhere inside a later round
                first.send_signal(signal.SIGKILL)
                first.wait(30)
            leaves.close()
            arrives = hold(OURS_ADDR, ours.port, BOB, "127.0.42.5")
            ours.wait_live(2)
            # Restarted at once on the same machine: the dead watcher's lease is free.
            third = subprocess.run(_watch_argv(key, store_db, "--rounds", "2", "--events", "-"), env=_env(),
                                   capture_output=True, text=True, timeout=RUN_TIMEOUT)
            assert third.returncode == 0, third.stderr
            assert "carried over" in third.stderr
        finally:
            for holder in (stays, leaves, arrives):
                if holder is not None:
                    holder.close()
    rows = _rows(store_db)
    per_session = Counter((r["client"], r["user"]) for r in rows)
    assert all(n == 1 for n in per_session.values()), per_session  # nothing duplicated
    state = {(r["client"], r["user"]): r["state"] for r in rows}
    assert state == {
        ("\\\\10.0.0.0", "decoy00000"): "open",   # none wrongly closed
        ("\\\\10.0.0.1", "decoy00001"): "open",
        ("\\\\127.0.42.3", "bob"): "open",
        ("\\\\127.0.42.2", "bob"): "ended",       # the logoff during the outage of the watcher
        ("\\\\127.0.42.5", "bob"): "open",        # none lost
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def outage_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, object]]:
    """(url, backend handle) of a store whose database the test can take away."""
    if request.param == "sqlite":
        yield str(tmp_path / "history.sqlite"), None
        return
    cluster: PostgresServer = request.getfixturevalue("postgres_cluster")
    yield cluster.url(cluster.create_database()), cluster


@contextlib.contextmanager
def _outage(url: str, cluster: object) -> Iterator[None]:
    if isinstance(cluster, PostgresServer):
        cluster.stop("fast")
        try:
            yield
        finally:
            cluster.start()
        return
    blocker = sqlite3.connect(url, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the database
    try:
        yield
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def test_database_outage_mid_watch_holds_events_until_it_returns(
    outage_db: tuple[str, object], tmp_path: Path,
) -> None:
    url, cluster = outage_db
    messages = io.StringIO()
    with running_server(tmp_path / "ours", bind=OURS_ADDR, decoys=decoy_sessions(1),
                        ports=interop_ports()) as ours:
        key = f"{OURS_ADDR}:{ours.port}"
        a = hold(OURS_ADDR, ours.port, BOB, "127.0.42.2")
        b = None
        events: list[Event] = []
        watcher = watcher_for(url, [key], events, messages=messages, timeout=5)
        try:
            assert watcher.run_round().stored
            events.clear()
            with _outage(url, cluster):
                a.close()
                b = hold(OURS_ADDR, ours.port, BOB, "127.0.42.6")
                ours.wait_live(1)
                result = watcher.run_round()
                # Polling went on: the events came out at once, the writes wait.
                assert not result.stored
                assert summary(events) == sorted([(LOGOFF, key, "bob@\\\\127.0.42.2"),
                                                  (LOGON, key, "bob@\\\\127.0.42.6")])
                assert not watcher.run_round().stored
                assert len(watcher.pending) == 2
            said = messages.getvalue()
            assert "cannot write to" in said and "held in memory" in said
            result = watcher.run_round()
            assert result.stored and watcher.pending.empty
            assert "answers again" in messages.getvalue()
        finally:
            watcher.store.close()
            a.close()
            if b is not None:
                b.close()
    state = {(r["client"], r["user"]): r["state"] for r in _rows(url)}
    assert state == {("\\\\10.0.0.0", "decoy00000"): "open", ("\\\\127.0.42.2", "bob"): "ended",
                     ("\\\\127.0.42.6", "bob"): "open"}
