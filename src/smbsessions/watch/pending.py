"""Writes waiting for the store: bounded, coalesced, described when they cannot be kept.

The watcher adds every event and every polled host here and asks the store to
write it all at the end of each round (one transaction). While the store is
unavailable the writes stay here and polling goes on; they are written when
it comes back. Pure: no I/O.

Memory is bounded: a host is held once (its latest state), a logoff of a
session whose logon is still waiting is folded into that logon, and the
number of waiting session and status rows is capped (``limit``). When the cap
is reached the loss can no longer be avoided: ``full`` says so and
``describe`` names what would be lost.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .diffing import HostState
from .events import LOGON, Event, HostStatusEvent, SessionEvent, iso_time

DEFAULT_LIMIT = 200_000
"""Waiting session and status rows (about 300 bytes each: some 60 MB at the cap)."""


@dataclass
class PendingWrites:
    """Everything not yet in the store."""

    limit: int = DEFAULT_LIMIT
    logons: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Session rows to insert, by session id (``end_time`` set when the logoff came too)."""
    logoffs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """End of sessions already in the store, by session id."""
    status_changes: list[dict[str, Any]] = field(default_factory=list)
    hosts: dict[str, HostState] = field(default_factory=dict)
    """Hosts polled since the last write (their state at write time is written)."""
    counts: Counter[str] = field(default_factory=Counter)
    first_time: float | None = None
    last_time: float | None = None

    def __len__(self) -> int:
        return len(self.logons) + len(self.logoffs) + len(self.status_changes)

    @property
    def empty(self) -> bool:
        return not len(self) and not self.hosts

    @property
    def full(self) -> bool:
        return len(self) >= self.limit

    def add_host(self, state: HostState) -> None:
        self.hosts[state.host] = state

    def add(self, event: Event) -> None:
        self._seen(event.time)
        self.counts[event.kind] += 1
        if isinstance(event, HostStatusEvent):
            self.status_changes.append({
                "host": event.host, "time": event.time, "old_status": event.old,
                "new_status": event.new, "detail": event.detail,
            })
            return
        if event.kind == LOGON:
            self.logons[event.session_id] = session_row(event)
            return
        waiting = self.logons.get(event.session_id)
        if waiting is not None:
            waiting["end_time"] = event.time
            waiting["last_seen"] = event.last_seen
        else:
            self.logoffs[event.session_id] = {
                "id": event.session_id, "end_time": event.time, "last_seen": event.last_seen,
            }

    def _seen(self, time: float) -> None:
        if self.first_time is None or time < self.first_time:
            self.first_time = time
        if self.last_time is None or time > self.last_time:
            self.last_time = time

    def clear(self) -> None:
        self.logons.clear()
        self.logoffs.clear()
        self.status_changes.clear()
        self.hosts.clear()
        self.counts.clear()
        self.first_time = self.last_time = None

    def describe(self) -> str:
        """``12 logon, 3 logoff, 2 host-status events from ... to ...`` (what is waiting)."""
        parts = [f"{count} {kind}" for kind, count in sorted(self.counts.items()) if count]
        what = ", ".join(parts) + " event(s)" if parts else "no events"
        if self.first_time is not None:
            what += f" from {iso_time(self.first_time)} to {iso_time(self.last_time)}"
        if self.hosts:
            what += f", and the last poll time of {len(self.hosts)} host(s)"
        return what


def session_row(event: SessionEvent) -> dict[str, Any]:
    """The ``watch_sessions`` row of a logon."""
    return {
        "id": event.session_id,
        "host": event.host,
        "client": event.client,
        "user_name": event.user,
        "start_time": event.start,
        "start_exact": event.start_exact,
        "first_seen": event.time,
        "last_seen": None,
        "end_time": None,
        "level": event.level,
        "alert": event.alert,
    }
