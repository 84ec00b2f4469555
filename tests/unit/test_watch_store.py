"""The history store (SQLite), pending writes, history queries, WHEN parsing, events, poll records."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from smbsessions.cli import main
from smbsessions.watch import history
from smbsessions.watch.diffing import HostPoll, Observed, SessionTracker
from smbsessions.watch.events import HostStatusEvent, SessionEvent, event_dict, event_line
from smbsessions.watch.pending import PendingWrites
from smbsessions.watch.poll import own_session_indexes, record_to_poll, storable
from smbsessions.watch.schema import SCHEMA_VERSION, meta_table
from smbsessions.watch.store import Store, StoreError, StoreUnavailable, display_url, store_url

T0 = 1_800_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> Any:
    opened = Store.open(str(tmp_path / "h.sqlite"), busy_timeout=0.2)
    yield opened
    opened.close()


def feed(store: Store, tracker: SessionTracker, *polls: HostPoll) -> list[Any]:
    pending = PendingWrites()
    events = []
    for p in polls:
        for event in tracker.apply(p):
            pending.add(event)
            events.append(event)
        pending.add_host(tracker.state(p.host))
    store.write(pending)
    assert pending.empty
    return events


def obs(client: str, user: str | None, age: int | None) -> Observed:
    return Observed(client, user, age)


# --------------------------------------------------------------------------- URLs and files


def test_store_urls() -> None:
    assert store_url("/tmp/x.sqlite").render_as_string() == "sqlite:////tmp/x.sqlite"
    assert store_url("sqlite:////var/h.db").database == "/var/h.db"
    pg = store_url("postgresql://watch:secret@db.example:5433/sessions")
    assert pg.drivername == "postgresql+psycopg" and pg.port == 5433
    assert "secret" not in display_url(pg)
    assert store_url("postgres://u@h/d").drivername == "postgresql+psycopg"
    with pytest.raises(StoreError, match="in-memory"):
        store_url("sqlite://")
    with pytest.raises(StoreError, match="unsupported"):
        store_url("mysql://u@h/d")


def test_default_location_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert store_url(None).database == str(tmp_path / "smbsessions" / "history.sqlite")


def test_new_sqlite_store_is_private_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "h.sqlite"
    opened = Store.open(str(path))
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert opened.schema_version() == SCHEMA_VERSION
        assert opened.upgrade() == SCHEMA_VERSION  # idempotent
    finally:
        opened.close()


def test_newer_schema_is_refused(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.update(meta_table).values(value=str(SCHEMA_VERSION + 1)))
    with pytest.raises(StoreError, match="newer than this smbsessions"):
        store.upgrade()


def test_history_does_not_create_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no store at"):
        Store.open(str(tmp_path / "missing.sqlite"), create=False)
    assert not (tmp_path / "missing.sqlite").exists()


# --------------------------------------------------------------------------- writing and loading


def test_rows_grow_with_changes_not_with_polls(store: Store) -> None:
    tracker = SessionTracker()
    steady = [obs(f"\\\\10.0.0.{i}", f"user{i}", 1000) for i in range(100)]
    feed(store, tracker, HostPoll("h:445", T0, "ok", steady, level=10))
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from watch_sessions")).scalar() == 100
    for k in range(1, 6):
        moved = [obs(o.client, o.user, 1000 + 60 * k) for o in steady]
        pending = PendingWrites()
        for event in tracker.apply(HostPoll("h:445", T0 + 60 * k, "ok", moved, level=10)):
            pending.add(event)
        pending.add_host(tracker.state("h:445"))
        assert store.write(pending) == 1  # the host row, nothing else
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from watch_sessions")).scalar() == 100
        assert conn.execute(sa.text("select count(*) from watch_hosts")).scalar() == 1
        assert conn.execute(sa.text("select last_ok from watch_hosts")).scalar() == T0 + 300


def test_load_restores_open_sessions_and_hosts(store: Store) -> None:
    tracker = SessionTracker(alert_users=["bob"])
    feed(store, tracker,
         HostPoll("h1:445", T0, "ok", [obs("\\\\a", "bob", 10), obs("\\\\b", "ann", 20)], level=10),
         HostPoll("h2:445", T0, "denied"))
    feed(store, tracker, HostPoll("h1:445", T0 + 60, "ok", [obs("\\\\a", "bob", 70)], level=10))
    hosts, sessions = store.load()
    assert {h.host: (h.status, h.last_ok) for h in hosts} == {"h1:445": ("ok", T0 + 60),
                                                              "h2:445": ("denied", None)}
    assert [(s.user, s.start, s.alert) for s in sessions] == [("bob", T0 - 10, True)]
    only = store.load(["h2:445"])
    assert len(only[0]) == 1 and only[1] == []


def test_logon_and_logoff_waiting_together_are_one_row(store: Store) -> None:
    tracker = SessionTracker()
    pending = PendingWrites()
    for p in (HostPoll("h:445", T0, "ok", [obs("\\\\a", "bob", 5)], level=10),
              HostPoll("h:445", T0 + 60, "ok", [], level=10)):
        for event in tracker.apply(p):
            pending.add(event)
        pending.add_host(tracker.state(p.host))
    assert len(pending) == 2  # one session row (with its end) + one host-status row
    store.write(pending)
    with store.engine.connect() as conn:
        row = conn.execute(sa.text("select start_time, last_seen, end_time from watch_sessions")).one()
    assert tuple(row) == (T0 - 5, T0, T0 + 60)


def test_writing_twice_never_duplicates(store: Store) -> None:
    event = SessionEvent("logon", T0, "h:445", "abc", "\\\\a", "bob", T0 - 5, True)
    for _ in range(2):
        pending = PendingWrites()
        pending.add(event)
        store.write(pending)
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from watch_sessions")).scalar() == 1


def test_locked_sqlite_is_unavailable_and_keeps_the_writes(store: Store, tmp_path: Path) -> None:
    blocker = sqlite3.connect(tmp_path / "h.sqlite", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        pending = PendingWrites()
        pending.add(SessionEvent("logon", T0, "h:445", "abc", "\\\\a", "bob", T0 - 5, True))
        with pytest.raises(StoreUnavailable, match="database is locked"):
            store.write(pending)
        assert len(pending) == 1
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    store.write(pending)
    assert pending.empty


def test_prune_keeps_open_sessions(store: Store) -> None:
    tracker = SessionTracker()
    feed(store, tracker, HostPoll("h:445", T0, "ok", [obs("\\\\a", "old", 5), obs("\\\\b", "open", 5)]))
    feed(store, tracker, HostPoll("h:445", T0 + 60, "ok", [obs("\\\\b", "open", 65)]))
    assert store.prune(T0 + 61) == (1, 1)
    _, sessions = store.load()
    assert [s.user for s in sessions] == ["open"]


# --------------------------------------------------------------------------- pending


def test_pending_is_bounded_and_says_what_waits() -> None:
    pending = PendingWrites(limit=3)
    for i in range(3):
        pending.add(SessionEvent("logon", T0 + i, "h:445", f"id{i}", "\\\\a", "bob", T0, True))
    assert pending.full
    pending.add(HostStatusEvent(T0 + 9, "h:445", "ok", "unreachable"))
    text = pending.describe()
    assert "1 host-status, 3 logon event(s)" in text and "2027-01-15T08:00:00.000Z" in text


# --------------------------------------------------------------------------- history queries


@pytest.fixture
def filled(store: Store) -> Store:
    t = SessionTracker(alert_users=["eve"])
    feed(store, t,
         HostPoll("fs01:445", T0, "ok", [obs("\\\\10.0.0.5", "Bob", 600), obs("\\\\10.0.0.6", "ann", 60)]),
         HostPoll("fs02:4455", T0, "ok", [obs("\\\\10.0.0.5", "bob", 30)]))
    feed(store, t,
         HostPoll("fs01:445", T0 + 600, "ok", [obs("\\\\10.0.0.6", "ann", 660), obs("\\\\ws9", "eve", 100)]),
         HostPoll("fs02:4455", T0 + 600, "unreachable"))
    return store


def users(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["host"], r["user"]) for r in rows]


def test_history_by_user_client_host(filled: Store) -> None:
    q = history.Query
    assert users(list(history.sessions(filled, q(user="BOB")))) == [("fs01:445", "Bob"), ("fs02:4455", "bob")]
    assert users(list(history.sessions(filled, q(client="10.0.0.6")))) == [("fs01:445", "ann")]
    assert users(list(history.sessions(filled, q(host="FS02")))) == [("fs02:4455", "bob")]
    assert users(list(history.sessions(filled, q(host="fs01:4455")))) == []
    assert users(list(history.sessions(filled, q(user="bob", host="fs01")))) == [("fs01:445", "Bob")]


def test_history_at_since_until_current(filled: Store) -> None:
    q = history.Query
    # At T0 - 100: Bob on fs01 (started T0-600) only.
    assert users(list(history.sessions(filled, q(at=T0 - 100)))) == [("fs01:445", "Bob")]
    # Bob on fs01 ended at the T0+600 poll (last seen at T0): at T0+300 he may still be there.
    assert ("fs01:445", "Bob") in users(list(history.sessions(filled, q(at=T0 + 300))))
    assert ("fs01:445", "Bob") not in users(list(history.sessions(filled, q(at=T0 + 601))))
    assert users(list(history.sessions(filled, q(since=T0 + 601)))) == [
        ("fs01:445", "ann"), ("fs02:4455", "bob"), ("fs01:445", "eve")]
    assert users(list(history.sessions(filled, q(until=T0 - 100)))) == [("fs01:445", "Bob")]
    current = list(history.sessions(filled, q(current=True), now=T0 + 700))
    assert users(current) == [("fs01:445", "ann"), ("fs02:4455", "bob"), ("fs01:445", "eve")]
    as_of = {r["host"]: r["as_of"] for r in current}
    # fs02 failed its last poll: bob is open as of the last successful one.
    assert as_of["fs02:4455"] == "2027-01-15T08:00:00.000Z"
    eve = current[-1]
    assert eve["alert"] is True and eve["state"] == "open"


def test_history_cli_formats(filled: Store, tmp_path: Path) -> None:
    db = str(tmp_path / "h.sqlite")
    out, err = io.StringIO(), io.StringIO()
    assert main(["history", "--db", db, "--user", "bob", "--format", "jsonl"], out, err) == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["host"], r["state"]) for r in rows] == [("fs01:445", "ended"), ("fs02:4455", "open")]
    assert not any(k.startswith("_") for k in rows[0])
    out = io.StringIO()
    assert main(["history", "--db", db, "--current", "--format", "csv"], out, io.StringIO()) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("host,client,user,start") and len(lines) == 4
    out = io.StringIO()
    assert main(["history", "--db", db, "--host", "fs01"], out, io.StringIO()) == 0
    table = out.getvalue()
    assert "START" in table and "ALERT" in table and "(open)" in table
    out = io.StringIO()
    assert main(["history", "--db", db, "--host-status", "--format", "json"], out, io.StringIO()) == 0
    changes = json.loads(out.getvalue())
    assert [(c["host"], c["old"], c["new"]) for c in changes] == [
        ("fs01:445", None, "ok"), ("fs02:4455", None, "ok"), ("fs02:4455", "ok", "unreachable")]


def test_history_cli_errors(tmp_path: Path) -> None:
    err = io.StringIO()
    assert main(["history", "--db", str(tmp_path / "none.sqlite")], io.StringIO(), err) == 11
    assert "no store at" in err.getvalue()
    err = io.StringIO()
    assert main(["history", "--db", str(tmp_path / "x.sqlite"), "--since", "yesterday"],
                io.StringIO(), err) == 2
    assert "ISO 8601" in err.getvalue()


def test_when_and_age_parsing() -> None:
    now = T0
    assert history.parse_when("2h", now) == now - 7200
    assert history.parse_when("7d", now) == now - 7 * 86400
    assert history.parse_when("now", now) == now
    assert history.parse_when("2027-01-15T08:00:00Z", now) == T0
    assert history.parse_when("2027-01-15T09:00:00+01:00", now) == T0
    with pytest.raises(ValueError, match="ISO 8601"):
        history.parse_when("last tuesday", now)
    assert history.parse_age("90d") == 90 * 86400
    with pytest.raises(ValueError):
        history.parse_age("-5d")


# --------------------------------------------------------------------------- events and records


def test_event_forms_escape_hostile_names_and_mark_alerts() -> None:
    event = SessionEvent("logon", T0, "h:445", "id1", "\\\\a\x1b[31m", "eve\u202e", T0 - 5, True, alert=True)
    record = event_dict(event)
    assert record["alert"] is True and record["event"] == "logon" and record["initial"] is False
    assert record["start"] == "2027-01-15T07:59:55.000Z"
    line = event_line(event, color=True)
    assert "\x1b[31m" not in line.replace("\x1b[1;31m", "") and "ALERT" in line
    assert "\\x1b" in line and "\u202e" not in line
    status = event_dict(HostStatusEvent(T0, "h:445", "ok", "denied", "ERROR_ACCESS_DENIED"))
    assert (status["event"], status["old"], status["new"]) == ("host-status", "ok", "denied")


def test_own_session_recognised() -> None:
    listed = [
        {"client_name": "\\\\127.0.0.9", "user_name": "alice", "active_time": 3000},
        {"client_name": "\\\\127.0.0.1", "user_name": "ALICE", "active_time": 0},
        {"client_name": "\\\\10.0.0.1", "user_name": "bob", "active_time": 0},
    ]
    assert own_session_indexes(listed, "alice", 0.3) == {1}
    assert own_session_indexes(listed[:1], "alice", 0.3) == set()
    # Concurrent polls of one server under several names: all young sessions of ours.
    assert own_session_indexes([*listed, dict(listed[1], client_name="\\\\127.0.0.1")], "alice", 0.3) == {1, 3}
    flagged = [dict(s, own_session=i == 0) for i, s in enumerate(listed)]
    assert own_session_indexes(flagged, "alice", 0.3) == {0}  # the client's mark wins


def test_record_to_poll() -> None:
    record = {
        "host": "fs01", "port": 445, "status": "ok", "level": 10, "elapsed": 0.25, "error": None,
        "detail": None, "sessions": [
            {"client_name": "\\\\127.0.0.1", "user_name": "alice", "active_time": 0xFFFFFFFF},
            {"client_name": "\\\\10.0.0.1", "user_name": "b\udc80b\x00", "active_time": 42},
        ],
    }
    p = record_to_poll(record, T0, "alice")
    assert p.host == "fs01:445" and p.level == 10 and p.answered
    assert [(o.user, o.age, o.own) for o in p.sessions] == [("alice", 0, True), ("b\\udc80b\\x00", 42, False)]
    assert storable("plain") == "plain"
