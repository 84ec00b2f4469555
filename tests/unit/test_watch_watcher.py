"""The watch loop with scripted polls (no network): store outages, loss, restarts, leases,
schema upgrade, retention, lag, metrics, and memory over hundreds of rounds."""

from __future__ import annotations

import gc
import io
import sqlite3
import tracemalloc
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from smbsessions.auth import Credentials
from smbsessions.sweep.pool import SweepStats
from smbsessions.sweep.runner import SweepConfig
from smbsessions.sweep.targets import Target
from smbsessions.watch.diffing import HostPoll, Observed
from smbsessions.watch.events import LOGOFF, LOGON, Event
from smbsessions.watch.metrics import WatchMetrics, parse_listen
from smbsessions.watch.schema import SCHEMA_VERSION, hosts_table, metadata, watchers_table
from smbsessions.watch.store import LeaseError, Store
from smbsessions.watch.watcher import StoreLossError, Watcher

T0 = 1_800_000_000.0
CONFIG = SweepConfig(Credentials(username="alice", password="pw"))
TARGETS = [Target("h1", 445), Target("h2", 445)]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


Script = Callable[[str, float], HostPoll]


def scripted(clock: Clock, script: Script) -> Callable[[Sequence[Target], Callable[[HostPoll], None]], SweepStats]:
    def poll(targets: Sequence[Target], on_poll: Callable[[HostPoll], None]) -> SweepStats:
        stats = SweepStats(total=len(targets))
        for target in targets:
            on_poll(script(target.key, clock.now))
        clock.now += 60
        return stats

    return poll


def world(sessions: dict[str, list[tuple[str, str, float]]]) -> Script:
    """Each host lists (client, user, start) entries that exist at the poll time."""

    def script(host: str, now: float) -> HostPoll:
        listed = [Observed(c, u, int(now - start)) for c, u, start in sessions.get(host, []) if start <= now]
        return HostPoll(host, now, "ok", listed, level=10, elapsed=0.05)

    return script


def make(path: Path, clock: Clock, script: Script, *, events: list[Event] | None = None,
         busy: float = 0.2, **kw: Any) -> Watcher:
    store = Store.open(str(path), busy_timeout=busy)
    sink = events if events is not None else []
    watcher = Watcher(store, kw.pop("targets", TARGETS), CONFIG, clock=clock,
                      poll_source=scripted(clock, script), on_event=sink.append, **kw)
    watcher.start()
    return watcher


def count(path: Path, sql: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(sql).fetchone()[0])


# --------------------------------------------------------------------------- outages


def test_locked_store_holds_events_and_writes_them_once_back(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    clock = Clock()
    people: dict[str, list[tuple[str, str, float]]] = {"h1:445": [("\\\\a", "bob", T0 - 100)]}
    messages = io.StringIO()
    events: list[Event] = []
    watcher = make(db, clock, world(people), events=events, messages=messages)
    assert watcher.run_round().stored
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        people["h1:445"] = [("\\\\b", "ann", clock.now - 5)]  # bob leaves, ann arrives
        result = watcher.run_round()
        assert not result.stored and [e.kind for e in result.events] == [LOGOFF, LOGON]
        assert "database is locked" in messages.getvalue() and "held in memory" in messages.getvalue()
        people["h2:445"] = [("\\\\c", "cy", clock.now - 5)]
        assert not watcher.run_round().stored
        assert len(watcher.pending) == 3  # bob's end, ann, cy
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    result = watcher.run_round()
    assert result.stored and watcher.pending.empty
    assert "answers again" in messages.getvalue()
    assert count(db, "select count(*) from watch_sessions") == 3
    assert count(db, "select count(*) from watch_sessions where end_time is null") == 2
    watcher.store.close()


def test_loss_is_reported_only_when_memory_is_full(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    clock = Clock()
    people: dict[str, list[tuple[str, str, float]]] = {}
    watcher = make(db, clock, world(people), pending_limit=5)
    watcher.run_round()
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        people["h1:445"] = [("\\\\a", "bob", clock.now - 1), ("\\\\b", "ann", clock.now - 1)]
        watcher.run_round()  # 2 waiting: fine
        people["h2:445"] = [("\\\\c", f"u{i}", clock.now - 1) for i in range(3)]
        with pytest.raises(StoreLossError) as caught:
            watcher.run_round()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    text = str(caught.value)
    assert "5 logon event(s)" in text and "cannot be stored" in text and "database is locked" in text
    watcher.store.close()


# --------------------------------------------------------------------------- restarts and leases


def test_restart_after_a_crash_neither_duplicates_nor_loses(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    clock = Clock()
    people = {"h1:445": [("\\\\a", "bob", T0 - 100), ("\\\\b", "ann", T0 - 50)]}
    first = make(db, clock, world(people), lease=120)
    first.run_round()
    first.run_round()
    first.store.engine.dispose()  # "killed": no release, the lease stays
    clock.now += 600  # later than the lease
    people["h1:445"] = [("\\\\a", "bob", T0 - 100), ("\\\\d", "dee", clock.now - 10)]
    events: list[Event] = []
    second = make(db, clock, world(people), events=events, lease=120)
    assert second.tracker.open_count == 2
    second.run_round()
    assert sorted((e.kind, getattr(e, "user", None)) for e in events) == [(LOGOFF, "ann"), (LOGON, "dee")]
    assert count(db, "select count(*) from watch_sessions") == 3
    assert count(db, "select count(*) from watch_sessions where user_name='bob' and end_time is null") == 1
    assert count(db, "select count(*) from watch_watchers") == 1  # the dead one's row was taken over
    second.store.close()


def test_two_watchers_coordinate_by_host(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    clock = Clock()
    first = make(db, clock, world({}))
    with pytest.raises(LeaseError, match=r"1 target\(s\) are already watched by watcher .* h2:445"):
        make(db, clock, world({}), targets=[Target("h2", 445), Target("h3", 445)])
    # Nothing was claimed by the refused one; disjoint targets share the store.
    other = make(db, clock, world({"h3:445": [("\\\\x", "xi", T0 - 1)]}), targets=[Target("h3", 445)])
    first.run_round()
    other.run_round()
    with sqlite3.connect(db) as conn:
        owners = dict(conn.execute("select host, watcher from watch_hosts").fetchall())
    assert owners["h1:445"] == owners["h2:445"] == first.store.watcher_id
    assert owners["h3:445"] == other.store.watcher_id
    first.store.release()  # a clean stop frees its hosts at once
    third = make(db, clock, world({}), targets=[Target("h2", 445)])
    assert third.store.watcher_id not in (None, first.store.watcher_id)
    for w in (first, other, third):
        w.store.close()


def test_a_version_1_store_upgrades_itself(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    engine = sa.create_engine(f"sqlite:///{db}")
    old = [t for t in metadata.sorted_tables if t is not watchers_table]
    with engine.begin() as conn:
        for table in old:
            table.create(conn)
        conn.execute(sa.text("ALTER TABLE watch_hosts DROP COLUMN watcher"))
        conn.execute(sa.text("INSERT INTO watch_meta VALUES ('schema_version', '1')"))
        conn.execute(sa.text("INSERT INTO watch_hosts (host, status, last_ok, last_ok_elapsed, session_count)"
                             " VALUES ('h1:445', 'ok', 1.0, 0.0, 1)"))
        conn.execute(sa.text("INSERT INTO watch_sessions (id, host, client, user_name, start_time, start_exact,"
                             " first_seen, alert) VALUES ('s1', 'h1:445', '\\\\a', 'bob', 0.5, 1, 1.0, 0)"))
    engine.dispose()
    store = Store.open(str(db))
    try:
        assert store.schema_version() == SCHEMA_VERSION == 2
        hosts, sessions = store.load()
        assert [h.host for h in hosts] == ["h1:445"] and [s.id for s in sessions] == ["s1"]
        assert store.claim(["h1:445"], lease=60)
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(hosts_table.c.watcher)).scalar() == store.watcher_id
    finally:
        store.close()


# --------------------------------------------------------------------------- retention, lag, metrics


def test_retain_prunes_ended_sessions(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    clock = Clock()
    people = {"h1:445": [("\\\\a", "bob", T0 - 100), ("\\\\b", "ann", T0 - 50)]}
    messages = io.StringIO()
    watcher = make(db, clock, world(people), retain=3600.0, messages=messages)
    watcher.run_round()
    people["h1:445"] = people["h1:445"][1:]
    watcher.run_round()
    clock.now += 2 * 3600
    watcher.run_round()
    assert count(db, "select count(*) from watch_sessions") == 1
    assert "removed 1 ended session(s)" in messages.getvalue()
    watcher.store.close()


def test_a_long_round_delays_the_next_and_says_so(tmp_path: Path) -> None:
    import time

    clock = Clock()
    inner = scripted(clock, world({}))

    def slow(targets: Sequence[Target], on_poll: Callable[[HostPoll], None]) -> SweepStats:
        time.sleep(0.3)
        return inner(targets, on_poll)

    messages = io.StringIO()
    store = Store.open(str(tmp_path / "h.sqlite"))
    watcher = Watcher(store, TARGETS, CONFIG, clock=clock, poll_source=slow, messages=messages)
    watcher.start()
    assert watcher.run(rounds=2, interval=0.05) == 2
    assert "longer than --interval 0.05 s: the next round starts" in messages.getvalue()
    store.close()


def test_metrics_endpoint(tmp_path: Path) -> None:
    assert parse_listen("9464") == ("127.0.0.1", 9464)
    assert parse_listen("0.0.0.0:9464") == ("0.0.0.0", 9464)
    with pytest.raises(ValueError):
        parse_listen("http")
    metrics = WatchMetrics()
    clock = Clock()
    people = {"h1:445": [("\\\\a", "bob", T0 - 100), ("\\\\b", "eve", T0 - 50)]}
    watcher = make(tmp_path / "h.sqlite", clock, world(people), metrics=metrics, alert_users=["eve"])
    watcher.run_round()
    metrics.serve("127.0.0.1", 0)
    try:
        port = metrics._server[0].server_port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        metrics.close()
        watcher.store.close()
    assert 'smbsessions_watch_sessions{host="h1:445"} 2.0' in text
    assert 'smbsessions_watch_host_up{host="h1:445"} 1.0' in text
    assert 'smbsessions_watch_host_status{host="h1:445",status="ok"} 1.0' in text
    assert 'smbsessions_watch_events_total{event="logon"} 2.0' in text
    assert 'smbsessions_watch_alerts_total{user="eve"} 1.0' in text
    assert "smbsessions_watch_rounds_total 1.0" in text
    assert "smbsessions_watch_round_duration_seconds" in text


# --------------------------------------------------------------------------- memory


def test_memory_stays_flat_over_300_rounds(tmp_path: Path) -> None:
    """50 hosts x 20 sessions, a tenth of the hosts replacing two sessions every round; traced
    allocations after the first rounds must not keep growing (no per-round accumulation)."""
    clock = Clock()
    hosts = [Target(f"h{i}", 445) for i in range(50)]
    counter = {"round": 0}

    def script(host: str, now: float) -> HostPoll:
        index = int(host[1:].split(":")[0])
        r = counter["round"]
        churned = r - (r - index) % 10  # the last round in which this host churned
        listed = [Observed(f"\\\\10.0.{index}.{k}", f"u{k}r{churned}", int(now - (T0 + 60 * (churned - 1) - 5)))
                  for k in range(2)]
        listed += [Observed(f"\\\\10.0.{index}.{k}", f"u{k}", int(now - T0 + 1000)) for k in range(2, 20)]
        return HostPoll(host, now, "ok", listed, level=10, elapsed=0.01)

    poll = scripted(clock, script)

    def counting(targets: Sequence[Target], on_poll: Callable[[HostPoll], None]) -> SweepStats:
        counter["round"] += 1
        return poll(targets, on_poll)

    events: list[Event] = []
    store = Store.open(str(tmp_path / "h.sqlite"))
    watcher = Watcher(store, hosts, CONFIG, clock=clock, poll_source=counting,
                      on_event=lambda e: events.append(e) if len(events) < 1 else None)
    watcher.start()
    for _ in range(20):
        watcher.run_round()
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        samples = []
        for _block in range(3):
            for _ in range(100):
                watcher.run_round()
            gc.collect()
            samples.append(tracemalloc.get_traced_memory()[0] - base)
    finally:
        tracemalloc.stop()
        store.close()
    assert watcher.tracker.open_count == 50 * 20
    rows = count(tmp_path / "h.sqlite", "select count(*) from watch_sessions")
    assert rows == 50 * 20 + 319 * 5 * 2  # every churn after round 1: 5 hosts x 2 sessions a round
    # Flat: the last 200 rounds add less than 1 MiB in all (SQLAlchemy's caches settle early).
    assert samples[-1] - samples[0] < 1 << 20, samples


# --------------------------------------------------------------------------- the command line


def test_watch_refuses_to_start_without_its_store(tmp_path: Path) -> None:
    from smbsessions.cli import main

    db = tmp_path / "h.sqlite"
    Store.open(str(db)).close()
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another writer holds it
    try:
        err = io.StringIO()
        code = main(["watch", "127.0.0.1:9", "-U", "alice%pw", "--db", str(db), "--rounds", "1"],
                    io.StringIO(), err)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert code == 11
    assert "the store is not available" in err.getvalue() and "database is locked" in err.getvalue()
    err = io.StringIO()
    code = main(["watch", "127.0.0.1:9", "-U", "alice%pw", "--db", "mysql://x@y/z"], io.StringIO(), err)
    assert code == 11 and "unsupported database" in err.getvalue()


def test_plot_draws_lanes_gaps_and_alerts(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from smbsessions.watch import history
    from smbsessions.watch.plot import plot_sessions

    clock = Clock()
    people = {"h1:445": [("\\\\a", "bob", T0 - 100), ("\\\\b", "eve", T0 - 50)],
              "h2:445": [("\\\\c", "cy", T0 - 10)]}
    watcher = make(tmp_path / "h.sqlite", clock, world(people), alert_users=["eve"])
    watcher.run_round()
    people["h1:445"] = people["h1:445"][1:]
    watcher.run_round()
    watcher.run_round()
    records = list(history.sessions(watcher.store, history.Query(), now=clock.now))
    changes = history.host_changes(watcher.store)
    watcher.store.close()
    changes.append({"host": "h2:445", "_time": T0 + 30, "new": "unreachable", "old": "ok"})
    for suffix, by in ((".png", "host"), (".svg", "user")):
        path = tmp_path / f"t{suffix}"
        lanes = plot_sessions(records, str(path), by=by, now=clock.now, changes=changes)
        assert lanes == (2 if by == "host" else 3)
        assert path.stat().st_size > 2000
    assert b"<svg" in (tmp_path / "t.svg").read_bytes()[:400]
