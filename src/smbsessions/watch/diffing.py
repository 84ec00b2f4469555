"""Follow sessions from poll to poll: the pure state machine behind ``watch``.

No I/O. ``SessionTracker.apply(poll)`` takes one host's poll (what the sweep
saw, at what time) and returns the events it implies; the tracker's state is
the set of open sessions and each host's status, which the store can reload
after a restart (``load``).

Identity and the rules
======================

A session is identified by ``(host, client, user)`` plus its **estimated
start** = poll time - ``sesi_time`` (the seconds it has been set up). Several
sessions may share ``(host, client, user)`` (two connections from one
machine); they are told apart by their starts.

* **Uncertainty.** ``sesi_time`` is whole seconds, and the poll time is taken
  when the host's answer arrived, somewhere after the server computed it. Two
  estimates of one session's start agree within
  ``BASE_UNCERTAINTY + elapsed(previous poll) + elapsed(this poll)``.
* **Same session**: a listed session whose estimate is within that
  uncertainty of an open session's start.
* **New logon**: a listed session whose start moved forward by more than the
  uncertainty, and that is younger than the time since the host's previous
  successful poll: it started after that poll. The old session is ended
  (``logoff``) and the new one begins (``logon``).
* **Older than the gap**: a listed session whose ``sesi_time`` is larger than
  the time since the previous successful poll (plus the uncertainty) already
  existed at that poll, where the open session of the same key was listed: it
  is that session, even if its estimated start moved (a server whose time
  does not advance, as static decoy records do). Its recorded start is kept.
* **Logoff** is concluded only from a successful poll that no longer lists a
  session. A failed poll (denied, unreachable, timeout, ...) ends nothing:
  open sessions stay open and the status change is an event (the gap).
* **Level 0** carries neither user nor time: the key is ``(host, client,
  None)``, the start is the first poll that listed the session
  (``start_exact=False``), and a re-logon between two polls cannot be seen.
  Any other level without a usable time is handled the same way.
* **Samba's 0xFFFFFFFF** ``time`` ("under a second", its clock subtraction
  going negative) counts as 0; values beyond the poll time are clamped.
* **The caller's own session** (the connection the poll itself made) is never
  tracked (``Observed.own``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ..levels import U32_MAX
from ..sweep.statuses import ANSWERED, SweepStatus
from .events import HOST_STATUS, LOGOFF, LOGON, Event, HostStatusEvent, SessionEvent

BASE_UNCERTAINTY = 2.0
"""Seconds: 1 for ``sesi_time`` truncated to whole seconds, 1 for clocks and scheduling."""

OK: str = SweepStatus.OK.value
"""The host status of an answered poll (the sweep's ``ok`` and ``ok-empty``)."""
ANSWERED_STATUSES = ANSWERED
"""The sweep statuses of an answered poll (declared in ``sweep.statuses``)."""

SessionKey = tuple[str, str | None]
"""``(client, user)`` within one host."""


@dataclass(frozen=True, slots=True)
class Observed:
    """One session as a poll listed it."""

    client: str
    user: str | None
    age: int | None
    """``sesi_time`` in seconds; None when the level carries no time."""
    own: bool = False
    """The poll's own connection (never tracked)."""


@dataclass(frozen=True, slots=True)
class HostPoll:
    """One host's answer (or failure) in one round."""

    host: str
    time: float
    status: str
    """A sweep status (``ok``, ``ok-empty``, ``denied``, ``unreachable``, ...)."""
    sessions: Sequence[Observed] = ()
    level: int | None = None
    elapsed: float = 0.0
    detail: str | None = None

    @property
    def answered(self) -> bool:
        return self.status in ANSWERED_STATUSES


@dataclass(slots=True)
class TrackedSession:
    """An open session, as the tracker and the store know it."""

    id: str
    host: str
    client: str
    user: str | None
    start: float
    start_exact: bool
    first_seen: float
    level: int | None = None
    alert: bool = False

    @property
    def key(self) -> SessionKey:
        return (self.client, self.user)


@dataclass(slots=True)
class HostState:
    """What the tracker remembers of one host between polls."""

    host: str
    status: str | None = None
    """``ok`` or a failure status; None before the first poll."""
    status_since: float | None = None
    last_poll: float | None = None
    last_ok: float | None = None
    """Time of the last successful poll: every open session was listed then."""
    last_ok_elapsed: float = 0.0
    level: int | None = None
    sessions: dict[SessionKey, list[TrackedSession]] = field(default_factory=dict)

    def open_sessions(self) -> list[TrackedSession]:
        return [s for group in self.sessions.values() for s in group]

    @property
    def session_count(self) -> int:
        return sum(len(group) for group in self.sessions.values())


def host_status(poll: HostPoll) -> str:
    """The status a host is known by: ``ok`` for an answered poll, else the sweep status."""
    return OK if poll.answered else poll.status


def estimated_start(poll_time: float, age: int | None) -> float | None:
    """``poll_time - age``; Samba's 0xFFFFFFFF ("under a second") counts as 0."""
    if age is None:
        return None
    if age >= U32_MAX or age < 0:
        age = 0
    return poll_time - min(age, poll_time)


def new_session_id() -> str:
    return uuid.uuid4().hex


class SessionTracker:
    """Open sessions per host; ``apply`` turns each poll into events.

    ``alert_users``: user names (case-insensitive) whose session events carry
    ``alert=True``. ``make_id`` gives new sessions their ids (tests pass a
    counter).
    """

    def __init__(
        self,
        alert_users: Iterable[str] = (),
        make_id: Callable[[], str] = new_session_id,
        uncertainty: float = BASE_UNCERTAINTY,
    ) -> None:
        self.alert_users = frozenset(name.casefold() for name in alert_users)
        self.hosts: dict[str, HostState] = {}
        self._make_id = make_id
        self.uncertainty = uncertainty

    # ------------------------------------------------------------------ state

    def load(self, hosts: Iterable[HostState], sessions: Iterable[TrackedSession]) -> None:
        """Take over what a store holds (after a restart): host states and open sessions."""
        for state in hosts:
            self.hosts[state.host] = state
        for session in sessions:
            state = self.hosts.setdefault(session.host, HostState(session.host))
            state.sessions.setdefault(session.key, []).append(session)
        for state in self.hosts.values():
            for group in state.sessions.values():
                group.sort(key=lambda s: s.start)

    def state(self, host: str) -> HostState:
        found = self.hosts.get(host)
        if found is None:
            found = self.hosts[host] = HostState(host)
        return found

    def is_alert(self, user: str | None) -> bool:
        return user is not None and user.casefold() in self.alert_users

    @property
    def open_count(self) -> int:
        return sum(state.session_count for state in self.hosts.values())

    # ------------------------------------------------------------------ polls

    def apply(self, poll: HostPoll) -> list[Event]:
        """Events implied by one poll of one host (status change first, then logoffs, then logons)."""
        state = self.state(poll.host)
        events: list[Event] = []
        status = host_status(poll)
        if status != state.status:
            events.append(HostStatusEvent(poll.time, poll.host, state.status, status, poll.detail))
            state.status = status
            state.status_since = poll.time
        state.last_poll = poll.time
        if not poll.answered:
            return events  # a failed poll ends nothing: open sessions stay open
        events.extend(self._diff(state, poll))
        state.last_ok = poll.time
        state.last_ok_elapsed = poll.elapsed
        state.level = poll.level
        return events

    def _diff(self, state: HostState, poll: HostPoll) -> list[Event]:
        listed: dict[SessionKey, list[Observed]] = {}
        for observed in poll.sessions:
            if not observed.own:
                listed.setdefault((observed.client, observed.user), []).append(observed)
        tolerance = self.uncertainty + poll.elapsed + state.last_ok_elapsed
        gap = None if state.last_ok is None else poll.time - state.last_ok
        first_poll = state.last_ok is None
        logoffs: list[Event] = []
        logons: list[Event] = []
        sessions = state.sessions
        # Listing order, then the keys no longer listed: deterministic, no sorting.
        keys = list(listed)
        keys += [key for key in sessions if key not in listed]
        for key in keys:
            tracked = sessions.get(key, [])
            found = listed.get(key, [])
            if len(tracked) == 1 and len(found) == 1 and _same(tracked[0], found[0], poll.time,
                                                                  tolerance, gap):
                continue  # the steady case: one session, still there
            kept, ended, started = _match(tracked, found, poll.time, tolerance, gap)
            for session in ended:
                logoffs.append(self._logoff(session, poll.time, state.last_ok))
            for observed in started:
                session = self._new_session(poll, observed)
                kept.append(session)
                logons.append(self._logon(session, first_poll))
            if kept:
                kept.sort(key=lambda s: s.start)
                sessions[key] = kept
            else:
                sessions.pop(key, None)
        return logoffs + logons

    def _new_session(self, poll: HostPoll, observed: Observed) -> TrackedSession:
        start = estimated_start(poll.time, observed.age)
        return TrackedSession(
            id=self._make_id(),
            host=poll.host,
            client=observed.client,
            user=observed.user,
            start=poll.time if start is None else start,
            start_exact=start is not None,
            first_seen=poll.time,
            level=poll.level,
            alert=self.is_alert(observed.user),
        )

    @staticmethod
    def _logon(session: TrackedSession, initial: bool) -> SessionEvent:
        return SessionEvent(LOGON, session.first_seen, session.host, session.id, session.client,
                            session.user, session.start, session.start_exact, session.alert, initial=initial,
                            level=session.level)

    @staticmethod
    def _logoff(session: TrackedSession, time: float, last_seen: float | None) -> SessionEvent:
        return SessionEvent(LOGOFF, time, session.host, session.id, session.client, session.user,
                            session.start, session.start_exact, session.alert, last_seen=last_seen,
                            level=session.level)


def _same(session: TrackedSession, observed: Observed, now: float, tolerance: float,
          gap: float | None) -> bool:
    """``_match``'s answer for one open and one listed session of a key: is it the same one?"""
    if observed.age is None:
        return True
    age = _age(observed.age)
    if session.start_exact and abs(now - min(age, now) - session.start) <= tolerance:
        return True
    return gap is not None and age > gap + tolerance


def _match(
    tracked: list[TrackedSession],
    listed: list[Observed],
    now: float,
    tolerance: float,
    gap: float | None,
) -> tuple[list[TrackedSession], list[TrackedSession], list[Observed]]:
    """Pair one key's open sessions with its listed ones: (kept, ended, started)."""
    if not listed:
        return [], list(tracked), []
    if not tracked:
        return [], [], list(listed)
    remaining_tracked = list(tracked)
    remaining_listed: list[tuple[Observed, float | None]] = [
        (observed, estimated_start(now, observed.age)) for observed in listed
    ]
    kept: list[TrackedSession] = []
    # 1. Same start within the uncertainty: the same session (closest pairs first).
    pairs = sorted(
        (abs(start - session.start), i, j)
        for i, session in enumerate(remaining_tracked)
        for j, (_, start) in enumerate(remaining_listed)
        if start is not None and session.start_exact and abs(start - session.start) <= tolerance
    )
    used_tracked: set[int] = set()
    used_listed: set[int] = set()
    for _, i, j in pairs:
        if i in used_tracked or j in used_listed:
            continue
        used_tracked.add(i)
        used_listed.add(j)
        kept.append(remaining_tracked[i])
    remaining_tracked = [s for i, s in enumerate(remaining_tracked) if i not in used_tracked]
    remaining_listed = [x for j, x in enumerate(remaining_listed) if j not in used_listed]
    # 2. No usable time, or older than the time since the last successful poll:
    #    it was listed at that poll, so it is one of the open sessions (oldest first).
    started: list[Observed] = []
    remaining_tracked.sort(key=lambda s: s.start)
    for observed, _start in sorted(remaining_listed, key=lambda x: -(x[0].age or 0)):
        existed_before = (
            observed.age is None
            or (gap is not None and _age(observed.age) > gap + tolerance)
        )
        if existed_before and remaining_tracked:
            kept.append(remaining_tracked.pop(0))
        else:
            started.append(observed)
    return kept, remaining_tracked, started


def _age(age: int) -> int:
    return 0 if age >= U32_MAX or age < 0 else age


__all__ = [
    "ANSWERED_STATUSES",
    "BASE_UNCERTAINTY",
    "HOST_STATUS",
    "LOGOFF",
    "LOGON",
    "OK",
    "HostPoll",
    "HostState",
    "Observed",
    "SessionTracker",
    "TrackedSession",
    "estimated_start",
    "host_status",
]
