"""The pure session tracker: polls in, logon/logoff/host-status events out (watch/diffing.py)."""

from __future__ import annotations

import itertools
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from smbsessions.watch.diffing import (
    BASE_UNCERTAINTY,
    HostPoll,
    HostState,
    Observed,
    SessionTracker,
    TrackedSession,
    estimated_start,
)
from smbsessions.watch.events import HOST_STATUS, LOGOFF, LOGON, HostStatusEvent, SessionEvent

HOST = "fs01:445"
T0 = 1_800_000_000.0


def tracker(alert: tuple[str, ...] = ()) -> SessionTracker:
    counter = itertools.count(1)
    return SessionTracker(alert, make_id=lambda: f"s{next(counter)}")


def poll(t: float, *sessions: Observed, status: str = "ok", host: str = HOST, level: int = 10,
         elapsed: float = 0.1) -> HostPoll:
    return HostPoll(host, t, status, sessions, level=level, elapsed=elapsed)


def seen(client: str, user: str | None, age: int | None) -> Observed:
    return Observed(client, user, age)


def kinds(events: list) -> list[tuple[str, str | None]]:
    return [(e.kind, getattr(e, "user", None)) for e in events]


# --------------------------------------------------------------------------- basic life cycle


def test_first_poll_reports_status_and_initial_logons_with_estimated_start() -> None:
    t = tracker()
    events = t.apply(poll(T0, seen("\\\\10.0.0.5", "bob", 300), seen("\\\\10.0.0.6", "ann", 10)))
    assert isinstance(events[0], HostStatusEvent)
    assert (events[0].old, events[0].new) == (None, "ok")
    logons = [e for e in events if isinstance(e, SessionEvent)]
    assert [(e.kind, e.user, e.start, e.initial, e.start_exact) for e in logons] == [
        (LOGON, "bob", T0 - 300, True, True),
        (LOGON, "ann", T0 - 10, True, True),
    ]


def test_steady_sessions_cost_no_event() -> None:
    t = tracker()
    t.apply(poll(T0, seen("\\\\a", "bob", 300)))
    for k in range(1, 20):
        assert t.apply(poll(T0 + 60 * k, seen("\\\\a", "bob", 300 + 60 * k))) == []
    assert t.open_count == 1


def test_a_session_no_longer_listed_is_a_logoff_bracketed_by_the_polls() -> None:
    t = tracker()
    t.apply(poll(T0, seen("\\\\a", "bob", 300), seen("\\\\b", "ann", 20)))
    events = t.apply(poll(T0 + 60, seen("\\\\b", "ann", 80)))
    assert len(events) == 1
    logoff = events[0]
    assert isinstance(logoff, SessionEvent)
    assert (logoff.kind, logoff.user, logoff.time, logoff.last_seen, logoff.start) == (
        LOGOFF, "bob", T0 + 60, T0, T0 - 300)
    assert t.open_count == 1


def test_new_logon_after_the_first_poll_is_not_initial() -> None:
    t = tracker()
    t.apply(poll(T0))
    events = t.apply(poll(T0 + 60, seen("\\\\c", "carl", 25)))
    assert kinds(events) == [(LOGON, "carl")]
    assert events[0].initial is False and events[0].start == T0 + 35


def test_relogon_between_polls_is_logoff_then_logon() -> None:
    """Same (host, client, user), but the start moved forward and it is younger than the gap."""
    t = tracker()
    t.apply(poll(T0, seen("\\\\a", "bob", 300)))
    events = t.apply(poll(T0 + 60, seen("\\\\a", "bob", 12)))
    assert kinds(events) == [(LOGOFF, "bob"), (LOGON, "bob")]
    assert events[0].session_id != events[1].session_id
    assert events[1].start == T0 + 48


def test_start_jitter_within_the_uncertainty_is_the_same_session() -> None:
    t = tracker()
    t.apply(poll(T0, seen("\\\\a", "bob", 300), elapsed=0.5))
    # The server rounded differently and the poll took a while: start off by 2 s.
    assert t.apply(poll(T0 + 60, seen("\\\\a", "bob", 358), elapsed=0.5)) == []
    assert BASE_UNCERTAINTY + 1.0 >= 2


def test_failed_poll_ends_nothing_and_the_gap_is_an_event() -> None:
    t = tracker()
    t.apply(poll(T0, seen("\\\\a", "bob", 300)))
    events = t.apply(HostPoll(HOST, T0 + 60, "unreachable", detail="connection refused"))
    assert len(events) == 1 and isinstance(events[0], HostStatusEvent)
    assert (events[0].old, events[0].new, events[0].detail) == ("ok", "unreachable", "connection refused")
    assert t.apply(HostPoll(HOST, T0 + 120, "unreachable")) == []  # no repeat
    assert t.open_count == 1
    # Back, and bob is gone: the logoff is bracketed by the last poll that saw him.
    events = t.apply(poll(T0 + 180))
    assert [e.kind for e in events] == [HOST_STATUS, LOGOFF]
    assert events[1].last_seen == T0 and events[1].time == T0 + 180


def test_ok_and_ok_empty_are_one_host_status() -> None:
    t = tracker()
    t.apply(poll(T0, seen("\\\\a", "bob", 1)))
    events = t.apply(poll(T0 + 60, status="ok-empty"))
    assert kinds(events) == [(LOGOFF, "bob")]


def test_denied_halfway_keeps_sessions_open() -> None:
    t = tracker()
    t.apply(poll(T0, seen("\\\\a", "bob", 1)))
    events = t.apply(HostPoll(HOST, T0 + 60, "denied", detail="ERROR_ACCESS_DENIED"))
    assert [(e.kind, e.new) for e in events if isinstance(e, HostStatusEvent)] == [(HOST_STATUS, "denied")]
    assert t.open_count == 1


# --------------------------------------------------------------------------- several sessions per key


def test_two_sessions_with_one_key_are_told_apart_by_their_start() -> None:
    t = tracker()
    t.apply(poll(T0, seen("\\\\a", "bob", 1000), seen("\\\\a", "bob", 100)))
    assert t.open_count == 2
    events = t.apply(poll(T0 + 60, seen("\\\\a", "bob", 160)))
    assert kinds(events) == [(LOGOFF, "bob")]
    assert events[0].start == T0 - 1000  # the older one went
    events = t.apply(poll(T0 + 120, seen("\\\\a", "bob", 220), seen("\\\\a", "bob", 5)))
    assert kinds(events) == [(LOGON, "bob")] and events[0].start == T0 + 115


# --------------------------------------------------------------------------- awkward servers


def test_time_that_does_not_advance_is_the_same_session() -> None:
    """Static records (our server's decoys) keep one sesi_time: older than the gap, so not new."""
    t = tracker()
    t.apply(poll(T0, seen("\\\\10.9.0.1", "decoy1", 1000)))
    for k in range(1, 10):
        assert t.apply(poll(T0 + 60 * k, seen("\\\\10.9.0.1", "decoy1", 1000))) == []
    session = t.hosts[HOST].open_sessions()[0]
    assert session.start == T0 - 1000  # the first estimate is kept


def test_samba_u32_max_time_means_under_a_second() -> None:
    assert estimated_start(T0, 0xFFFFFFFF) == T0
    t = tracker()
    events = t.apply(poll(T0, seen("127.0.0.2", "alice", 0xFFFFFFFF)))
    assert events[-1].start == T0
    assert t.apply(poll(T0 + 5, seen("127.0.0.2", "alice", 5))) == []


def test_absurd_time_is_clamped_to_the_epoch() -> None:
    assert estimated_start(10.0, 0xFFFFFFFE) == 0.0


def test_level_0_has_no_user_and_no_time() -> None:
    t = tracker()
    events = t.apply(poll(T0, seen("\\\\a", None, None), seen("\\\\a", None, None), level=0))
    logons = [e for e in events if e.kind == LOGON]
    assert len(logons) == 2 and all(not e.start_exact and e.start == T0 and e.user is None for e in logons)
    assert t.apply(poll(T0 + 60, seen("\\\\a", None, None), seen("\\\\a", None, None), level=0)) == []
    events = t.apply(poll(T0 + 120, seen("\\\\a", None, None), level=0))
    assert kinds(events) == [(LOGOFF, None)]


def test_own_session_is_never_tracked() -> None:
    t = tracker()
    own = Observed("\\\\127.0.0.1", "alice", 0, own=True)
    events = t.apply(poll(T0, own, seen("\\\\b", "ann", 20)))
    assert [e.user for e in events if e.kind == LOGON] == ["ann"]
    assert t.apply(poll(T0 + 60, Observed("\\\\127.0.0.1", "alice", 0, own=True), seen("\\\\b", "ann", 80))) == []


def test_alert_users_are_flagged_case_insensitively() -> None:
    t = tracker(alert=("SVC_Backup",))
    events = t.apply(poll(T0, seen("\\\\a", "svc_backup", 5), seen("\\\\b", "ann", 5)))
    flags = {e.user: e.alert for e in events if e.kind == LOGON}
    assert flags == {"svc_backup": True, "ann": False}
    events = t.apply(poll(T0 + 60, seen("\\\\b", "ann", 65)))
    assert kinds(events) == [(LOGOFF, "svc_backup")] and events[0].alert


def test_hosts_are_independent() -> None:
    t = tracker()
    t.apply(poll(T0, seen("\\\\a", "bob", 5), host="h1:445"))
    events = t.apply(poll(T0, seen("\\\\a", "bob", 5), host="h2:445"))
    assert [e.kind for e in events] == [HOST_STATUS, LOGON]
    assert t.apply(poll(T0 + 60, host="h1:445"))[0].kind == LOGOFF
    assert t.open_count == 1


# --------------------------------------------------------------------------- restart


def test_restart_from_stored_state_reconciles_without_duplicates() -> None:
    first = tracker()
    first.apply(poll(T0, seen("\\\\a", "bob", 300), seen("\\\\b", "ann", 10), seen("\\\\c", "cy", 50)))
    stored_hosts = [HostState(HOST, status="ok", status_since=T0, last_poll=T0, last_ok=T0,
                              last_ok_elapsed=0.1, level=10)]
    stored_sessions = [
        TrackedSession(s.id, s.host, s.client, s.user, s.start, s.start_exact, s.first_seen, s.level, s.alert)
        for s in first.hosts[HOST].open_sessions()
    ]
    # The watcher was killed; an hour later a new one loads the store.
    second = tracker()
    second.load(stored_hosts, stored_sessions)
    later = T0 + 3600
    events = second.apply(poll(later, seen("\\\\a", "bob", 3900), seen("\\\\b", "ann", 30),
                               seen("\\\\d", "dee", 4000)))
    # bob continues (no event); ann re-logged on 30 s ago; cy is gone; dee was there all along
    # but unknown: a logon (not initial: the host was polled before).
    got = sorted((e.kind, e.user) for e in events)
    assert got == [(LOGOFF, "ann"), (LOGOFF, "cy"), (LOGON, "ann"), (LOGON, "dee")]
    logoffs = {e.user: e for e in events if e.kind == LOGOFF}
    assert logoffs["cy"].last_seen == T0 and logoffs["cy"].session_id in {s.id for s in stored_sessions}
    assert all(not e.initial for e in events if e.kind == LOGON)
    assert second.open_count == 3


# --------------------------------------------------------------------------- property


@st.composite
def timelines(draw: st.DrawFn) -> tuple[list[tuple[str, float, float]], list[float]]:
    """True sessions (key, start, end) and poll times, on integer seconds."""
    keys = ["bob", "ann", "cy"]
    sessions = []
    for _ in range(draw(st.integers(0, 12))):
        key = draw(st.sampled_from(keys))
        start = draw(st.integers(0, 2000))
        length = draw(st.integers(1, 1500))
        sessions.append((key, float(start), float(start + length)))
    intervals = draw(st.lists(st.integers(10, 120), min_size=2, max_size=30))
    polls = list(itertools.accumulate(intervals, initial=100))
    return sessions, [float(p) for p in polls]


@settings(max_examples=300, deadline=None)
@given(timelines())
def test_events_match_the_truth_whatever_the_timeline(
    case: tuple[list[tuple[str, float, float]], list[float]],
) -> None:
    sessions, polls = case
    # Same-key sessions starting within the uncertainty of each other cannot be told apart.
    by_key: dict[str, list[float]] = {}
    for key, start, _ in sessions:
        by_key.setdefault(key, []).append(start)
    for starts in by_key.values():
        starts.sort()
        if any(b - a <= 2 * BASE_UNCERTAINTY + 1 for a, b in itertools.pairwise(starts)):
            return
    t = tracker()
    logons: Counter[str] = Counter()
    logoffs: Counter[str] = Counter()
    for now in polls:
        listed = [Observed("\\\\c", key, int(now - start)) for key, start, end in sessions
                  if start <= now < end]
        for event in t.apply(HostPoll(HOST, now, "ok", listed, level=10)):
            if isinstance(event, SessionEvent):
                (logons if event.kind == LOGON else logoffs)[event.user or ""] += 1
    visible = [(k, s, e) for k, s, e in sessions if any(s <= p < e for p in polls)]
    ended = [(k, s, e) for k, s, e in visible if not s <= polls[-1] < e]
    assert logons == Counter(k for k, _, _ in visible)
    assert logoffs == Counter(k for k, _, _ in ended)
    assert t.open_count == len(visible) - len(ended)
