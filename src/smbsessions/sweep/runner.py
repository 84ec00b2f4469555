"""Probe one host, and a pool of threads probing many with a watchdog.

``probe_host`` enumerates one host and returns its record, never raising for
the host's failures. ``HostRunner`` runs probes on a pool of threads; its
watchdog ends any host at ``timeout + margin`` whatever the peer does,
reporting ``timeout`` at once and closing the connection, while a replacement
thread keeps the concurrency up.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..auth import Credentials
from ..client import SessionClient
from ..levels import U32_MAX
from .logon_guard import DEFAULT_MAX_LOGON_FAILURES, LogonGuard
from .records import HostRecord, failure_record, host_record
from .statuses import SweepStatus
from .targets import Target

log = logging.getLogger("smbsessions.sweep")

DEFAULT_MAX_ENTRIES = 100_000
"""Default per-host session budget of a sweep (a real server has far fewer)."""
BYTES_PER_ENTRY = 400
"""Byte budget per budgeted entry: a level-502 entry with long names stays well under it."""



@dataclass(frozen=True)
class SweepConfig:
    """What every host is asked, and how long it may take."""

    credentials: Credentials
    level: int | None = None
    user: str | None = None
    client: str | None = None
    timeout: float = 10.0
    margin: float = 1.0
    """Grace after ``timeout`` before the watchdog ends a host regardless."""
    deadline: float | None = None
    """Absolute ``time.monotonic()`` at which the whole sweep ends (None: no limit)."""
    require_encryption: bool = False
    max_logon_failures: int = DEFAULT_MAX_LOGON_FAILURES
    """Stop logging on after this many refusals in a row (0: never stop; see ``logon_guard``)."""
    max_entries: int = DEFAULT_MAX_ENTRIES
    """Sessions one host may send (all pages together); more is an ``error`` for that host.
    With the byte budget derived from it (``max_bytes``), memory stays bounded by the
    concurrency times this, whatever the hosts send."""
    logon_guard: LogonGuard | None = field(default=None, compare=False)
    """Shared by the workers; ``run_sweep`` creates it from ``max_logon_failures``."""

    @property
    def max_bytes(self) -> int:
        """The byte budget of one host's answers (every page): ``max_entries`` large entries."""
        return max(1 << 20, self.max_entries * BYTES_PER_ENTRY)

    def __post_init__(self) -> None:
        if self.max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        if self.margin < 0:
            raise ValueError("margin must not be negative")


def probe_host(target: Target, config: SweepConfig, client: SessionClient | None = None) -> HostRecord:
    """Enumerate one host and return its record; never raises for the host's failures."""
    start = time.monotonic()
    if client is None:
        client = SessionClient(
            target.host,
            target.port,
            credentials=config.credentials,
            timeout=config.timeout,
            require_encryption=config.require_encryption,
            deadline=_host_deadline(config, start),
            logon_guard=config.logon_guard,
            max_entries=config.max_entries,
            max_bytes=config.max_bytes,
        )
    try:
        with client:
            result = client.enum(config.level, config.client, config.user)
            sessions = [_session_record(session.to_dict()) for session in result]
    except Exception as exc:
        record = failure_record(target, exc, time.monotonic() - start)
        log.debug("%s: %s in %.2f s (%s)", target.key, record.status, record.elapsed, record.detail)
        return record
    note = "the server ignored the qualifiers; they were applied locally" if result.filtered_locally else None
    record = host_record(
        target,
        SweepStatus.OK if any(not s.get("own_session") for s in sessions) else SweepStatus.OK_EMPTY,
        elapsed=time.monotonic() - start,
        level=result.level,
        sessions=sessions,
        note=note,
    )
    log.debug("%s: %s in %.2f s, level %s, %d session(s)", target.key, record.status, record.elapsed,
              record.level, len(sessions))
    return record


def _session_record(record: dict[str, Any]) -> dict[str, Any]:
    # Samba's 0xFFFFFFFF "under a second ago" is written as 0, as enum's JSON/CSV do.
    for key in ("active_time", "idle_time"):
        if record.get(key) == U32_MAX:
            record[key] = 0
    return record


def _host_deadline(config: SweepConfig, now: float) -> float:
    """When one host started at ``now`` must be done: its timeout, or the sweep's deadline."""
    deadline = now + config.timeout
    if config.deadline is not None:
        deadline = min(deadline, config.deadline)
    return max(deadline, now + 0.05)


Emit = Callable[[HostRecord], None]
Probe = Callable[[Target, SweepConfig, SessionClient | None], HostRecord]


_DEADLINE_DETAIL = "still running when the sweep deadline ran out"


@dataclass
class _Running:
    target: Target
    started: float
    limit: float
    by_deadline: bool
    client: SessionClient
    finished: bool = False


class HostRunner:
    """A pool of threads probing hosts, with a watchdog that bounds each host's time.

    ``submit`` queues a target (the caller bounds how many it submits);
    ``emit`` receives exactly one record per submitted target, from a worker
    thread or the watchdog. ``close`` stops the threads.
    """

    def __init__(
        self,
        config: SweepConfig,
        threads: int,
        emit: Emit,
        probe: Probe = probe_host,
        client_class: type[SessionClient] = SessionClient,
    ) -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self.config = config
        self._emit = emit
        self._probe = probe
        self._client_class = client_class
        self._jobs: queue.SimpleQueue[Target | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._running: dict[int, _Running] = {}
        self._retire: set[int] = set()  # threads whose job the watchdog took over
        self._closing = False
        self._threads: list[threading.Thread] = []
        for _ in range(threads):
            self._start_thread()
        self._watchdog = threading.Thread(target=self._watch, name="sweep-watchdog", daemon=True)
        self._watchdog.start()

    def submit(self, target: Target) -> None:
        self._jobs.put(target)

    def close(self) -> None:
        """Stop every thread once its current host is done (or abandoned); does not wait.

        Targets still queued are dropped unprobed (no record): after an
        interrupt nothing more may be contacted, and ``--resume`` finds them.
        """
        with self._lock:
            self._closing = True
            count = len(self._threads)
            self._wake.notify_all()
        with contextlib.suppress(queue.Empty):
            while True:
                self._jobs.get_nowait()
        for _ in range(count):
            self._jobs.put(None)

    # -- workers

    def _start_thread(self) -> None:
        thread = threading.Thread(target=self._work, name="sweep-host", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        ident = threading.get_ident()
        while True:
            target = self._jobs.get()
            if target is None:
                return
            self._run_one(target, ident)
            with self._lock:
                if ident in self._retire:
                    # The watchdog gave this thread's host up and started a replacement.
                    self._retire.discard(ident)
                    self._threads.remove(threading.current_thread())
                    return

    def _run_one(self, target: Target, ident: int) -> None:
        config = self.config
        now = time.monotonic()
        if config.deadline is not None and now >= config.deadline:
            note = "the sweep deadline ran out first"
            self._emit(host_record(target, SweepStatus.SKIPPED, elapsed=0.0, note=note))
            return
        limit = now + config.timeout + config.margin
        by_deadline = config.deadline is not None and config.deadline < limit
        if by_deadline and config.deadline is not None:
            limit = config.deadline
        extra: dict[str, Any] = {"deadline": _host_deadline(config, now), "max_entries": config.max_entries,
                                 "max_bytes": config.max_bytes}
        if config.logon_guard is not None:
            extra["logon_guard"] = config.logon_guard
        # The client is given the configured timeout (its messages name it) and the
        # host's deadline (the same timeout, or the sweep's --deadline if sooner).
        client = self._client_class(
            target.host,
            target.port,
            credentials=config.credentials,
            timeout=config.timeout,
            require_encryption=config.require_encryption,
            **extra,
        )
        running = _Running(target, now, limit, by_deadline, client)
        with self._lock:
            self._running[ident] = running
            self._wake.notify()
        try:
            record = self._probe(target, config, client)
        except BaseException as exc:  # a bug in probe must still yield a record
            record = failure_record(target, exc, time.monotonic() - now)
        if by_deadline and record.status == SweepStatus.TIMEOUT:
            # The call timeout was shortened to the sweep deadline: say which limit ended it.
            record.detail = f"{_DEADLINE_DETAIL} ({record.detail})"
        with self._lock:
            mine = not running.finished
            running.finished = True
            if self._running.get(ident) is running:
                del self._running[ident]
        if mine:
            self._emit(record)

    # -- watchdog

    def _watch(self) -> None:
        while True:
            overdue: list[_Running] = []
            with self._lock:
                if self._closing and not self._running:
                    return
                now = time.monotonic()
                next_limit = now + 0.5
                for ident, running in list(self._running.items()):
                    if running.limit <= now:
                        running.finished = True
                        del self._running[ident]
                        self._retire.add(ident)
                        overdue.append(running)
                    else:
                        next_limit = min(next_limit, running.limit)
                for _ in overdue:
                    if not self._closing:
                        self._start_thread()
                if not overdue:
                    self._wake.wait(max(next_limit - now, 0.005))
            for running in overdue:
                self._expire(running)

    def _expire(self, running: _Running) -> None:
        elapsed = time.monotonic() - running.started
        if running.by_deadline:
            detail = _DEADLINE_DETAIL
        else:
            detail = f"no complete answer within {self.config.timeout:g} s (ended by the watchdog)"
        self._emit(host_record(running.target, SweepStatus.TIMEOUT, elapsed=elapsed, detail=detail))
        # Closing joins the connection's receive thread: not on the watchdog's time.
        aborter = threading.Thread(target=_abort_quietly, args=(running.client,), name="sweep-abort")
        aborter.daemon = True
        aborter.start()


def _abort_quietly(client: SessionClient) -> None:
    with contextlib.suppress(Exception):
        client.abort()
