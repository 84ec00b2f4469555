"""Sweep many hosts: per-host outcomes, the concurrent engine, records.

Targets (parsing, lazy expansion, de-duplication) live in ``targets.py``.

* **Outcomes** (``classify``, ``host_record``, ``read_resume``): one record per
  host, a plain dict (``RECORD_COLUMNS``). Statuses:

  ==============  ==========================================================
  ok              enumeration succeeded and returned sessions
  ok-empty        enumeration succeeded with no session; also when the
                  ``--user``/``--client`` qualifier matched nothing
                  (NERR_UserNotFound / NERR_ClientNameNotFound): in a hunt the
                  wanted user being absent is the normal case, not a failure;
                  ``note`` says so
  denied          ERROR_ACCESS_DENIED at every level tried (hardened host)
  invalid-level   ERROR_INVALID_LEVEL (the level asked for is not served)
  auth-failed     the SMB logon was refused
  unreachable     no TCP connection (refused, no route, name not resolved)
  timeout         no complete answer within ``--timeout`` (per host), or the
                  host was still running when ``--deadline`` ran out
  error           anything else: protocol errors, DCE/RPC faults, SMB1-only
                  servers, SMB errors, other NET_API_STATUS values
  skipped         never attempted because ``--deadline`` ran out first; a
                  ``--resume`` run tries these hosts again
  not-attempted   never logged on to: ``max_logon_failures`` hosts in a row
                  refused the logon, so the sweep stopped trying the password
                  (``logon_guard.py``); ``--resume`` tries these again
  ==============  ==========================================================

  ``SweepStatus`` declares them once, with the descriptions the CLI shows.

* **Engine** (``HostRunner``, ``run_sweep``): worker processes (one per CPU by
  default), each running a pool of threads; the parent hands out targets with
  a bounded number outstanding per worker and receives records as hosts
  finish. A watchdog in each worker ends any host at ``timeout + margin``
  whatever the peer does, reporting ``timeout`` at once and closing its
  connection; a replacement thread keeps the concurrency up meanwhile.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import math
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import IO, Any, NamedTuple, cast

from . import logsetup
from .auth import Credentials
from .client import SessionClient
from .levels import U32_MAX
from .logon_guard import DEFAULT_MAX_LOGON_FAILURES, LogonGuard, LogonNotAttempted
from .status import (
    AuthenticationError,
    HostTimeoutError,
    HostUnreachableError,
    NetApiError,
    NetApiStatus,
    ProtocolError,
    RpcFaultError,
    TransportError,
    UnsupportedDialectError,
    ntstatus_name,
)
from .targets import Target, record_key

log = logging.getLogger("smbsessions.sweep")


class SweepStatus(StrEnum):
    """The status of one host's record, with what it means (declared once: help and docs use it)."""

    OK = "ok"
    OK_EMPTY = "ok-empty"
    DENIED = "denied"
    INVALID_LEVEL = "invalid-level"
    AUTH_FAILED = "auth-failed"
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    ERROR = "error"
    SKIPPED = "skipped"
    NOT_ATTEMPTED = "not-attempted"

    @property
    def description(self) -> str:
        return STATUS_DESCRIPTIONS[self]


STATUS_DESCRIPTIONS: dict[SweepStatus, str] = {
    SweepStatus.OK: "enumeration succeeded, sessions listed",
    SweepStatus.OK_EMPTY: "enumeration succeeded, no session; also when --user/--client matched "
    "nothing (NERR_UserNotFound: the normal case of a hunt; see \"note\")",
    SweepStatus.DENIED: "ERROR_ACCESS_DENIED at every level (hardened host)",
    SweepStatus.INVALID_LEVEL: "the requested --level is not served",
    SweepStatus.AUTH_FAILED: "the logon was refused",
    SweepStatus.UNREACHABLE: "no TCP connection, or the host closed it before answering",
    SweepStatus.TIMEOUT: "no complete answer within --timeout (per host), or cut by --deadline",
    SweepStatus.ERROR: "protocol error (not an SMB server), DCE/RPC fault, SMB1-only server, other status",
    SweepStatus.SKIPPED: "not attempted: --deadline ran out first (--resume retries these)",
    SweepStatus.NOT_ATTEMPTED: "not attempted: hosts in a row refused the logon, the sweep stopped "
    "to spare the account a lockout (--resume retries these)",
}

STATUSES: tuple[str, ...] = tuple(status.value for status in SweepStatus)
ANSWERED = frozenset({"ok", "ok-empty"})
"""Statuses of hosts whose enumeration succeeded (they expose sessions to the account)."""
RETRIED_ON_RESUME = frozenset({"skipped", "not-attempted"})
DEFAULT_MAX_ENTRIES = 100_000
"""Default per-host session budget of a sweep (a real server has far fewer)."""
BYTES_PER_ENTRY = 400
"""Byte budget per budgeted entry: a level-502 entry with long names stays well under it."""
UNREACHABLE_STATUSES = frozenset({"unreachable", "timeout", "skipped", "not-attempted"})
"""Hosts that gave no answer at all: normal in a range, apart from real failures."""
WORKER_DIED = "WorkerDied"
"""``error`` of hosts lost with a worker process that crashed; ``--resume`` retries them too."""

RECORD_COLUMNS: tuple[str, ...] = (
    "host",
    "port",
    "status",
    "level",
    "session_count",
    "users",
    "sessions",
    "elapsed",
    "error",
    "code",
    "detail",
    "note",
)


# =========================================================================== outcomes


class Classified(NamedTuple):
    """What an exception means for a host's record."""

    status: str
    error: str | None
    code: int | None
    detail: str
    note: str | None = None


_NOT_FOUND = (NetApiStatus.NERR_UserNotFound, NetApiStatus.NERR_ClientNameNotFound)
_NET_API_STATUSES: dict[int, str] = {
    NetApiStatus.ERROR_ACCESS_DENIED: "denied",
    NetApiStatus.ERROR_INVALID_LEVEL: "invalid-level",
}


def classify(exc: BaseException) -> Classified:
    """Map an exception raised while enumerating one host to its sweep status."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, NetApiError):
        if exc.status in _NOT_FOUND:
            return Classified("ok-empty", None, None, "", f"{exc.name}: no session matched the qualifier")
        status = _NET_API_STATUSES.get(exc.status, "error")
        return Classified(status, exc.name, exc.status, detail)
    if isinstance(exc, LogonNotAttempted):
        return Classified("not-attempted", None, None, detail)
    if isinstance(exc, AuthenticationError):
        return Classified("auth-failed", _nt_name(exc.ntstatus), exc.ntstatus, detail)
    if isinstance(exc, HostUnreachableError):
        return Classified("unreachable", None, None, detail)
    if isinstance(exc, HostTimeoutError):
        return Classified("timeout", None, None, detail)
    if isinstance(exc, UnsupportedDialectError):
        return Classified("error", "UnsupportedDialect", exc.ntstatus, detail)
    if isinstance(exc, RpcFaultError):
        return Classified("error", exc.name, exc.code, detail)
    if isinstance(exc, ProtocolError):
        return Classified("error", type(exc).__name__, None, detail)
    if isinstance(exc, TransportError):
        return Classified("error", _nt_name(exc.ntstatus) or "TransportError", exc.ntstatus, detail)
    if isinstance(exc, TimeoutError):
        return Classified("timeout", None, None, detail)
    if isinstance(exc, ConnectionRefusedError):
        return Classified("unreachable", None, None, detail)
    return Classified("error", type(exc).__name__, None, detail)


def _nt_name(ntstatus: int | None) -> str | None:
    return None if ntstatus is None else ntstatus_name(ntstatus)


def host_record(
    target: Target,
    status: str,
    *,
    elapsed: float,
    level: int | None = None,
    sessions: list[dict[str, Any]] | None = None,
    error: str | None = None,
    code: int | None = None,
    detail: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """The record of one host (keys: ``RECORD_COLUMNS``)."""
    listed = sessions or []
    # Our own enumerating session is listed (marked) but neither counted nor a user found.
    others = [s for s in listed if not s.get("own_session")]
    users = sorted({s["user_name"] for s in others if s.get("user_name")})
    return {
        "host": target.host,
        "port": target.port,
        "status": status,
        "level": level,
        "session_count": len(others),
        "users": users,
        "sessions": listed,
        "elapsed": round(elapsed, 4),
        "error": error,
        "code": code,
        "detail": detail or None,
        "note": note,
    }


def failure_record(target: Target, exc: BaseException, elapsed: float) -> dict[str, Any]:
    found = classify(exc)
    # A refusal after a level answered (the hunted user not found) still says which level.
    attempts = exc.attempts if isinstance(exc, NetApiError) else []
    return host_record(
        target,
        found.status,
        elapsed=elapsed,
        level=attempts[-1][0] if attempts and found.status in ANSWERED else None,
        error=found.error,
        code=found.code,
        detail=found.detail,
        note=found.note,
    )


SESSION_FIELDS: tuple[str, ...] = (
    "client_name",
    "client_name_raw",
    "user_name",
    "num_opens",
    "active_time",
    "idle_time",
    "user_flags",
    "client_type",
    "transport",
    "own_session",
)
"""Per-session columns of the sweep's CSV (pywin32 keys, as ``Session.to_dict``)."""

CSV_COLUMNS: tuple[str, ...] = (
    "host", "port", "status", "level", "session_count", *SESSION_FIELDS,
    "elapsed", "error", "code", "detail", "note",
)
"""The sweep's CSV: one row per session, or one row (session columns empty) for a host
without sessions; the host's columns repeat on each of its rows."""


def csv_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A host record as its CSV rows (see ``CSV_COLUMNS``)."""
    base = {k: v for k, v in record.items() if k not in ("users", "sessions")}
    sessions = record.get("sessions") or []
    if not sessions:
        return [base]
    return [{**base, **{k: session.get(k) for k in SESSION_FIELDS}} for session in sessions]


class ResumeState(NamedTuple):
    """What an earlier run's output says: hosts done, and how many records of each status."""

    done: set[str]
    counts: dict[str, int]
    bad_lines: int


@dataclass
class ResultsFile:
    """Every host of an output file, as its last record says (the last one counts)."""

    statuses: dict[str, str] = field(default_factory=dict)
    users: dict[str, set[str]] = field(default_factory=dict)
    """Users with sessions per host (our own session left out)."""
    retried: set[str] = field(default_factory=set)
    """Hosts a resumed run tries again (last record skipped, not-attempted, worker lost)."""
    bad_lines: int = 0

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for status in self.statuses.values():
            counts[status] = counts.get(status, 0) + 1
        return counts

    def hosts_with_user(self, user: str) -> list[str]:
        """Hosts whose last record found ``user`` (case-insensitive), in file order."""
        wanted = user.casefold()
        return [key for key, names in self.users.items()
                if self.statuses.get(key) == "ok" and any(n.casefold() == wanted for n in names)]


def read_results(path: str | os.PathLike[str], fmt: str = "jsonl") -> ResultsFile:
    """Read a sweep output file (``jsonl`` or ``csv``; the CSV as ``CSV_COLUMNS`` or the
    older one-row-per-host form with a JSON ``users`` cell). Unreadable lines and records
    with an unknown status are counted in ``bad_lines``. A missing file is empty."""
    results = ResultsFile()
    if not os.path.exists(path):
        return results
    retried = results.retried
    last_key: str | None = None
    # CSV: a record is several rows; one cut short by a failed write (disk full) has
    # fewer session rows than its session_count and is tried again.
    rows_seen: dict[str, int] = {}
    rows_expected: dict[str, int] = {}
    with open(path, encoding="utf-8", errors="replace", newline="") as stream:
        rows: Iterable[Any] = csv.DictReader(stream) if fmt == "csv" else _json_lines(stream)
        for row in rows:
            try:
                host, port, status = str(row["host"]), int(row["port"]), str(row["status"])
            except (KeyError, TypeError, ValueError):
                results.bad_lines += 1
                continue
            if status not in STATUSES or not host:
                results.bad_lines += 1
                continue
            key = record_key(host, port)
            names = _row_users(row, fmt)
            continued = fmt == "csv" and key == last_key and results.statuses.get(key) == status
            if continued:
                results.users[key].update(names)  # another session row of the same record
            else:
                results.statuses.pop(key, None)  # re-insert: file order of the last record
                results.users.pop(key, None)
                results.statuses[key] = status
                results.users[key] = set(names)
            if fmt == "csv":
                counted = bool(row.get("client_name") or row.get("user_name")) and not _is_own(row)
                rows_seen[key] = (rows_seen.get(key, 0) if continued else 0) + counted
                rows_expected[key] = _int_or_zero(row.get("session_count"))
            if status in RETRIED_ON_RESUME or row.get("error") == WORKER_DIED:
                retried.add(key)
            else:
                retried.discard(key)
            last_key = key
    for key, expected in rows_expected.items():
        if rows_seen.get(key, 0) < expected:
            retried.add(key)
    return results


def _is_own(row: dict[str, Any]) -> bool:
    return str(row.get("own_session", "")).lower() in ("true", "1")


def _int_or_zero(text: Any) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return 0


def _json_lines(stream: IO[str]) -> Iterator[Any]:
    for line in stream:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            yield None
            continue
        yield record if isinstance(record, dict) else None


def _row_users(row: dict[str, Any], fmt: str) -> list[str]:
    if fmt != "csv":
        users = row.get("users")
        return [u for u in users if isinstance(u, str)] if isinstance(users, list) else []
    if row.get("user_name"):
        return [] if _is_own(row) else [str(row["user_name"])]
    cell = row.get("users")
    if cell:
        try:
            users = json.loads(cell)
        except ValueError:
            return []
        return [u for u in users if isinstance(u, str)] if isinstance(users, list) else []
    return []


def read_resume(path: str | os.PathLike[str], fmt: str = "jsonl") -> ResumeState:
    """Hosts already finished in an earlier run's output (``jsonl`` or ``csv``).

    A truncated or unreadable line is ignored (trim the file first: see
    ``trim_partial_line``), as are records with an unknown status; hosts whose last
    record is ``skipped``/``not-attempted`` (or lost with a crashed worker) are not
    done (the resumed run tries them). A missing file means nothing is done.
    """
    results = read_results(path, fmt)
    done = {key for key in results.statuses if key not in results.retried}
    counts: dict[str, int] = {}
    for key in done:
        status = results.statuses[key]
        counts[status] = counts.get(status, 0) + 1
    return ResumeState(done, counts, results.bad_lines)


def trim_partial_line(path: str | os.PathLike[str]) -> int:
    """Cut a last line that has no newline (an interrupted write) so appends start clean.

    Returns the number of bytes removed.
    """
    try:
        with open(path, "rb+") as stream:
            size = stream.seek(0, os.SEEK_END)
            if size == 0:
                return 0
            stream.seek(size - 1)
            if stream.read(1) == b"\n":
                return 0
            keep = 0
            block = 65536
            position = size
            while position > 0:
                start = max(0, position - block)
                stream.seek(start)
                chunk = stream.read(position - start)
                index = chunk.rfind(b"\n")
                if index >= 0:
                    keep = start + index + 1
                    break
                position = start
            stream.truncate(keep)
            return size - keep
    except FileNotFoundError:
        return 0


# =========================================================================== one host


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


def probe_host(target: Target, config: SweepConfig, client: SessionClient | None = None) -> dict[str, Any]:
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
        log.debug("%s: %s in %.2f s (%s)", target.key, record["status"], record["elapsed"], record["detail"])
        return record
    note = "the server ignored the qualifiers; they were applied locally" if result.filtered_locally else None
    record = host_record(
        target,
        "ok" if any(not s.get("own_session") for s in sessions) else "ok-empty",
        elapsed=time.monotonic() - start,
        level=result.level,
        sessions=sessions,
        note=note,
    )
    log.debug("%s: %s in %.2f s, level %s, %d session(s)", target.key, record["status"], record["elapsed"],
              record["level"], len(sessions))
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


# =========================================================================== engine: threads


Emit = Callable[[dict[str, Any]], None]
Probe = Callable[[Target, SweepConfig, SessionClient | None], dict[str, Any]]


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
            self._emit(host_record(target, "skipped", elapsed=0.0, note="the sweep deadline ran out first"))
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
        if by_deadline and record["status"] == "timeout":
            # The call timeout was shortened to the sweep deadline: say which limit ended it.
            record["detail"] = f"{_DEADLINE_DETAIL} ({record['detail']})"
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
        self._emit(host_record(running.target, "timeout", elapsed=elapsed, detail=detail))
        # Closing joins the connection's receive thread: not on the watchdog's time.
        aborter = threading.Thread(target=_abort_quietly, args=(running.client,), name="sweep-abort")
        aborter.daemon = True
        aborter.start()


def _abort_quietly(client: SessionClient) -> None:
    with contextlib.suppress(Exception):
        client.abort()


# =========================================================================== engine: processes


@dataclass
class SweepStats:
    """Counts of one run."""

    total: int | None = None
    done: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    interrupted: bool = False
    in_flight: int = 0
    """Hosts handed to the workers and not finished yet."""
    logon_guard: LogonGuard | None = None
    """The run's lockout protection (``stopped`` says whether it ended the sweep)."""

    @property
    def logon_stopped(self) -> bool:
        return self.logon_guard is not None and self.logon_guard.stopped

    def add(self, record: dict[str, Any]) -> None:
        self.done += 1
        status = record["status"]
        self.by_status[status] = self.by_status.get(status, 0) + 1

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def answered(self) -> int:
        return sum(self.by_status.get(s, 0) for s in ANSWERED)


class _Worker:
    """One worker: a process with a HostRunner, or the HostRunner in this process."""

    def __init__(self, index: int, threads: int) -> None:
        self.index = index
        self.threads = threads
        self.capacity = threads + max(2, threads // 2)
        self.outstanding: dict[str, Target] = {}
        self.process: Any = None
        self.tasks: Any = None
        self.runner: HostRunner | None = None
        self.dead = False


def _worker_main(
    index: int,
    config: SweepConfig,
    threads: int,
    tasks: Any,
    results: Any,
    stop: Any,
    probe: Probe,
    parent: int,
    verbosity: int | None = None,
) -> None:
    """Body of a worker process: take targets, probe them, send records back."""
    # The parent decides what an interrupt means, and stops the workers itself:
    # a worker killed by a signal sent to the whole process group would lose
    # records it had finished and make its hosts look failed.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if verbosity is not None:
        # Started from a fork server, a worker has none of the parent's logging set-up;
        # its log lines go to the parent, which writes them (clearing its progress line).
        logsetup.configure_logging(verbosity, cast(IO[str], _LogLines(results)))

    def emit(record: dict[str, Any]) -> None:
        # After an interrupt the queue may already be closed: nothing is waiting then.
        with contextlib.suppress(ValueError):
            results.put((index, record))

    runner = HostRunner(config, threads, emit, probe)
    while not stop.is_set():
        try:
            item = tasks.get(timeout=0.2)
        except queue.Empty:
            if _orphaned(parent):
                break  # the parent is gone, nobody reads our records
            continue
        if item is None:
            break
        runner.submit(Target(item[0], item[1]))
    runner.close()
    # Every target sent here has been answered before the parent sends None;
    # flush the records still in the queue's buffer, then leave.
    results.close()
    results.join_thread()


def _orphaned(parent: int) -> bool:
    # Under forkserver our OS parent is the fork server; multiprocessing knows the real one.
    creator = multiprocessing.parent_process()
    if creator is not None:
        return not creator.is_alive()
    return os.getppid() != parent


def split_concurrency(concurrency: int, processes: int) -> list[int]:
    """Threads per worker: ``concurrency`` spread over at most ``processes`` workers."""
    processes = max(1, min(processes, concurrency))
    base, extra = divmod(concurrency, processes)
    return [base + (1 if i < extra else 0) for i in range(processes)]


def default_processes() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


_BACKSTOP_GRACE = 5.0
_INTERRUPT_DRAIN = 1.0


def run_sweep(
    targets: Iterable[Target],
    config: SweepConfig,
    on_record: Emit,
    *,
    concurrency: int = 64,
    processes: int | None = None,
    on_tick: Callable[[], None] | None = None,
    stats: SweepStats | None = None,
    probe: Probe = probe_host,
) -> SweepStats:
    """Sweep ``targets``: ``on_record`` gets one record per target as each finishes.

    ``processes`` worker processes (default: one per usable CPU; 1 runs the
    threads in this process) share ``concurrency`` threads. ``on_tick`` is
    called at least every 0.1 s from this thread (progress display). On
    ``KeyboardInterrupt`` the records already finished are still delivered,
    the workers are stopped and the interrupt propagates (``stats.interrupted``).
    ``probe`` enumerates one host (tests substitute their own; with worker
    processes it must be a module-level function).
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    stats = stats or SweepStats()
    split = split_concurrency(concurrency, processes or default_processes())
    workers = [_Worker(i, n) for i, n in enumerate(split)]
    in_process = len(workers) == 1 and (processes or default_processes()) <= 1
    context: Any = None if in_process else _mp_context()
    if config.logon_guard is None and config.max_logon_failures > 0 and not config.credentials.anonymous:
        guard = LogonGuard(config.max_logon_failures, context)
        config = dataclasses.replace(config, logon_guard=guard)
    stats.logon_guard = config.logon_guard
    results: Any
    stop: Any
    if in_process:
        results = queue.SimpleQueue()
        stop = threading.Event()
        worker = workers[0]
        worker.runner = HostRunner(config, worker.threads, lambda record: results.put((0, record)), probe)
    else:
        results = context.Queue()
        stop = context.Event()
        previous = signal.getsignal(signal.SIGINT)
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            # Children start with SIGINT ignored, so a Ctrl-C between fork and
            # their own signal setup cannot kill them mid-record.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        parent = os.getpid()
        try:
            for worker in workers:
                worker.tasks = context.Queue()
                worker.process = context.Process(
                    target=_worker_main,
                    args=(worker.index, config, worker.threads, worker.tasks, results, stop, probe, parent,
                          logsetup.configured_verbosity()),
                    name=f"smbsessions-sweep-{worker.index}",
                    daemon=True,
                )
                worker.process.start()
        finally:
            if in_main:
                signal.signal(signal.SIGINT, previous)
    try:
        _dispatch(iter(targets), config, workers, results, on_record, on_tick, stats)
    except KeyboardInterrupt:
        stats.interrupted = True
        stop.set()
        _drain(workers, results, on_record, stats, _INTERRUPT_DRAIN)
        raise
    finally:
        graceful = not stop.is_set()
        stop.set()
        _shutdown(workers, graceful)
    return stats


def _mp_context() -> Any:
    # Not fork: a forked worker keeps the parent's command line, which may hold the
    # password (-U user%password); /proc/PID/cmdline shows it to every local user.
    # forkserver starts one clean process (no user arguments), imports the sweep
    # there once, and forks the workers from it; spawn where it is missing.
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


_LOG_LINE = -1
"""Worker index of a message carrying a log line instead of a record."""


class _LogLines:
    """A text stream for a worker's log handler: each write goes to the parent as a message."""

    def __init__(self, results: Any) -> None:
        self._results = results

    def write(self, text: str) -> int:
        with contextlib.suppress(ValueError, OSError):  # the parent stopped listening
            self._results.put((_LOG_LINE, text))
        return len(text)

    def flush(self) -> None:
        pass


def _deliver(
    workers: list[_Worker], message: tuple[int, Any], on_record: Emit, stats: SweepStats
) -> None:
    index, record = message
    if index == _LOG_LINE:
        logsetup.write_line(str(record))
        return
    key = record_key(record["host"], record["port"])
    if workers[index].outstanding.pop(key, None) is None:
        return  # already written (e.g. by the backstop): never two records for one host
    stats.add(record)
    on_record(record)


def _dispatch(
    targets: Iterator[Target],
    config: SweepConfig,
    workers: list[_Worker],
    results: Any,
    on_record: Emit,
    on_tick: Callable[[], None] | None,
    stats: SweepStats,
) -> None:
    pending = next(targets, None)
    while True:
        now = time.monotonic()
        past_deadline = config.deadline is not None and now >= config.deadline
        logon_stopped = config.logon_guard is not None and config.logon_guard.stopped
        if past_deadline or logon_stopped:
            # Not handed out in time, or the logon was refused too often: a bounded batch per turn.
            status, note = (
                ("skipped", "the sweep deadline ran out first") if past_deadline
                else ("not-attempted", "hosts in a row refused the logon; the sweep stopped logging on")
            )
            for _ in range(1000):
                if pending is None:
                    break
                record = host_record(pending, status, elapsed=0.0, note=note)
                stats.add(record)
                on_record(record)
                pending = next(targets, None)
        else:
            while pending is not None:
                worker = _least_loaded(workers)
                if worker is None:
                    break
                worker.outstanding[pending.key] = pending
                if worker.runner is not None:
                    worker.runner.submit(pending)
                else:
                    worker.tasks.put((pending.host, pending.port))
                pending = next(targets, None)
        outstanding = sum(len(w.outstanding) for w in workers)
        stats.in_flight = outstanding
        if pending is None and outstanding == 0:
            return
        if (
            config.deadline is not None
            and now >= config.deadline + config.margin + _BACKSTOP_GRACE
            and outstanding
        ):
            _give_up(workers, on_record, stats, "the worker did not report before the sweep deadline")
            continue
        idle = pending is None or past_deadline or logon_stopped or _least_loaded(workers) is None
        wait = 0.1 if idle else 0.0
        _collect(workers, results, on_record, stats, wait)
        _check_workers(workers, on_record, stats)
        if on_tick is not None:
            on_tick()


def _least_loaded(workers: list[_Worker]) -> _Worker | None:
    best: _Worker | None = None
    for worker in workers:
        if worker.dead or len(worker.outstanding) >= worker.capacity:
            continue
        if best is None or len(worker.outstanding) * best.capacity < len(best.outstanding) * worker.capacity:
            best = worker
    return best


def _collect(workers: list[_Worker], results: Any, on_record: Emit, stats: SweepStats, wait: float) -> None:
    try:
        message = results.get(timeout=wait) if wait > 0 else results.get_nowait()
    except queue.Empty:
        return
    _deliver(workers, message, on_record, stats)
    for _ in range(10_000):
        try:
            message = results.get_nowait()
        except queue.Empty:
            return
        _deliver(workers, message, on_record, stats)


def _check_workers(workers: list[_Worker], on_record: Emit, stats: SweepStats) -> None:
    for worker in workers:
        if worker.process is None or worker.dead or worker.process.is_alive():
            continue
        worker.dead = True
        code = worker.process.exitcode
        for target in list(worker.outstanding.values()):
            record = host_record(
                target, "error", elapsed=0.0, error=WORKER_DIED,
                detail=f"the sweep worker process ended unexpectedly (exit code {code})",
            )
            stats.add(record)
            on_record(record)
        worker.outstanding.clear()
    if all(w.dead for w in workers) and any(w.process is not None for w in workers):
        raise RuntimeError("every sweep worker process ended unexpectedly")


def _give_up(workers: list[_Worker], on_record: Emit, stats: SweepStats, detail: str) -> None:
    for worker in workers:
        for target in list(worker.outstanding.values()):
            record = host_record(target, "timeout", elapsed=0.0, detail=detail)
            stats.add(record)
            on_record(record)
        worker.outstanding.clear()


def _drain(workers: list[_Worker], results: Any, on_record: Emit, stats: SweepStats, seconds: float) -> None:
    """After an interrupt: deliver what the workers already finished, for at most ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        before = stats.done
        _collect(workers, results, on_record, stats, 0.05)
        alive = any(w.process is not None and w.process.is_alive() for w in workers)
        if stats.done == before and not alive:
            return


def _shutdown(workers: list[_Worker], graceful: bool) -> None:
    """End the workers: let them finish when ``graceful``, else (interrupt) kill them at once.

    After an interrupt their finished records have been drained already; what
    they still run is abandoned (those hosts have no record, so --resume retries them).
    """
    for worker in workers:
        if worker.runner is not None:
            worker.runner.close()
        if graceful and worker.tasks is not None and worker.process is not None and worker.process.is_alive():
            with contextlib.suppress(Exception):
                worker.tasks.put(None)
    end = time.monotonic() + (2.0 if graceful else 0.0)
    for worker in workers:
        process = worker.process
        if process is None:
            continue
        process.join(max(0.0, end - time.monotonic()))
        if process.is_alive():
            process.kill()  # it ignores SIGTERM (see _worker_main)
            process.join(2.0)
    for worker in workers:
        if worker.tasks is not None:
            worker.tasks.close()
            worker.tasks.cancel_join_thread()


def hosts_per_second(stats: SweepStats) -> float:
    elapsed = stats.elapsed
    return stats.done / elapsed if elapsed > 0 else math.inf
