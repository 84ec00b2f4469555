"""The watch loop: rounds of polls -> tracker -> events -> store, metrics, output.

``Watcher.run_round`` polls every target once (one sweep), feeds each host's
poll to the tracker as it arrives (events go out at once), then writes the
round to the store in one transaction. When the store is unavailable the
writes wait in bounded memory (``PendingWrites``) and polling goes on; they
are written once it answers again. Only when that memory is full is loss
unavoidable: ``StoreLossError`` says what would be lost.

After a crash (``kill -9``) the store holds the state of the last round
written, and every open session in it was listed at its host's ``last_ok``;
a restart loads that and the next successful poll of each host reconciles
(``diffing``): nothing duplicated, nothing lost that the store had, nothing
wrongly closed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from ..sweep.pool import SweepStats
from ..sweep.runner import SweepConfig
from ..sweep.targets import Target
from .diffing import HostPoll, SessionTracker
from .events import Event
from .pending import DEFAULT_LIMIT, PendingWrites
from .poll import run_round
from .store import Store, StoreUnavailable

PRUNE_EVERY = 3600.0
"""Seconds between two ``--retain`` prunes."""


class StoreLossError(Exception):
    """The store stayed unavailable until the waiting writes filled their memory."""


@dataclass
class RoundResult:
    """What one round did."""

    number: int
    started: float
    """Wall clock at the start."""
    duration: float
    stats: SweepStats
    events: list[Event] = field(default_factory=list)
    rows_written: int = 0
    stored: bool = True
    """False when the store could not take this round (its writes wait)."""
    interrupted: bool = False


PollSource = Callable[[Sequence[Target], Callable[[HostPoll], None]], SweepStats]
"""Polls the targets once and calls back per host (``poll.run_round`` by default; tests may substitute)."""


class Watcher:
    """Watch ``targets`` into ``store``; ``on_event`` sees every event as it happens."""

    def __init__(
        self,
        store: Store,
        targets: Sequence[Target],
        config: SweepConfig,
        *,
        alert_users: Sequence[str] = (),
        concurrency: int = 64,
        processes: int | None = None,
        on_event: Callable[[Event], None] | None = None,
        messages: IO[str] | None = None,
        metrics: Any = None,
        retain: float | None = None,
        pending_limit: int = DEFAULT_LIMIT,
        clock: Callable[[], float] = time.time,
        poll_source: PollSource | None = None,
        lease: float = 300.0,
    ) -> None:
        self.store = store
        self.targets = list(targets)
        self.config = config
        self.tracker = SessionTracker(alert_users)
        self.pending = PendingWrites(limit=pending_limit)
        self.concurrency = concurrency
        self.processes = processes
        self.on_event = on_event
        self.messages = messages
        self.metrics = metrics
        self.retain = retain
        self.clock = clock
        self.rounds = 0
        self.store_down_since: float | None = None
        self._last_prune: float | None = None
        self._poll_source = poll_source
        self.lease = lease
        self.stop = threading.Event()

    def _say(self, text: str) -> None:
        if self.messages is not None:
            self.messages.write(f"smbsessions watch: {text}\n")
            self.messages.flush()

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        """Claim our targets (``LeaseError`` if another live watcher has some), then load their
        open sessions and host states (reconciled at the next poll)."""
        keys = {t.key for t in self.targets}
        self.store.claim(keys, lease=self.lease, now=self.clock())
        hosts, sessions = self.store.load(keys)
        self.tracker.load(hosts, sessions)
        if self.metrics is not None:
            self.metrics.loaded(self.tracker)

    # ------------------------------------------------------------------ rounds

    def _poll(self, targets: Sequence[Target], on_poll: Callable[[HostPoll], None]) -> SweepStats:
        if self._poll_source is not None:
            return self._poll_source(targets, on_poll)
        return run_round(targets, self.config, on_poll, concurrency=self.concurrency,
                         processes=self.processes, clock=self.clock)

    def apply(self, poll: HostPoll) -> list[Event]:
        """One host's poll: events out, writes queued."""
        events = self.tracker.apply(poll)
        state = self.tracker.state(poll.host)
        self.pending.add_host(state)
        for event in events:
            self.pending.add(event)
            if self.on_event is not None:
                self.on_event(event)
        if self.metrics is not None:
            self.metrics.polled(poll, state, events)
        return events

    def run_round(self) -> RoundResult:
        """Poll every target once, then write the round. Raises ``StoreLossError`` (see module doc)."""
        self.rounds += 1
        started = self.clock()
        begun = time.monotonic()
        result = RoundResult(self.rounds, started, 0.0, SweepStats(total=len(self.targets)))

        def on_poll(poll: HostPoll) -> None:
            result.events.extend(self.apply(poll))

        try:
            result.stats = self._poll(self.targets, on_poll)
        except KeyboardInterrupt:
            result.interrupted = True
        result.duration = time.monotonic() - begun
        self.flush(result)
        self._maybe_prune()
        if self.metrics is not None:
            self.metrics.round_done(result.duration, len(self.pending))
        if result.interrupted:
            raise KeyboardInterrupt
        return result

    def flush(self, result: RoundResult | None = None) -> bool:
        """Write what waits; True when the store has everything."""
        if self.pending.empty:
            return True
        waiting = len(self.pending)
        try:
            rows = self.store.write(self.pending)
        except StoreUnavailable as exc:
            if result is not None:
                result.stored = False
            if self.store_down_since is None:
                self.store_down_since = self.clock()
                self._say(f"{exc}; polling goes on, events are held in memory "
                          f"(up to {self.pending.limit:,}) until it answers")
            if self.pending.full:
                raise StoreLossError(
                    f"{exc}; the store has been unavailable since "
                    f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.store_down_since))} and "
                    f"the memory for waiting writes is full: {self.pending.describe()} cannot be stored"
                ) from None
            return False
        if result is not None:
            result.rows_written = rows
        if self.store_down_since is not None:
            self._say(f"the store answers again: wrote {waiting:,} waiting row(s) "
                      f"held since {time.strftime('%H:%M:%S', time.localtime(self.store_down_since))}")
            self.store_down_since = None
        return True

    def _maybe_prune(self) -> None:
        if self.retain is None or self.store_down_since is not None:
            return
        now = self.clock()
        if self._last_prune is not None and now - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = now
        try:
            sessions, changes = self.store.prune(now - self.retain)
        except StoreUnavailable as exc:
            self._say(f"prune skipped: {exc}")
            return
        if sessions or changes:
            self._say(f"--retain: removed {sessions} ended session(s) and {changes} host-status row(s)")

    def run(self, rounds: int | None, interval: float,
            on_round: Callable[[RoundResult], None] | None = None) -> int:
        """Rounds every ``interval`` s, never overlapping, until ``rounds`` or ``stop``; returns the count."""
        done = 0
        next_start = time.monotonic()
        while not self.stop.is_set() and (rounds is None or done < rounds):
            result = self.run_round()
            done += 1
            if on_round is not None:
                on_round(result)
            if rounds is not None and done >= rounds:
                break
            next_start += interval
            lag = time.monotonic() - next_start
            if lag > 0:
                self._say(f"round {result.number} took {result.duration:.1f} s, longer than --interval "
                          f"{interval:g} s: the next round starts {lag:.1f} s late")
                if self.metrics is not None:
                    self.metrics.lagged(lag)
                next_start = time.monotonic()
            else:
                if self.metrics is not None:
                    self.metrics.lagged(0.0)
                self.stop.wait(-lag)
        return done
