"""Sweep many hosts: worker processes, each running a ``HostRunner``, fed by the parent.

``run_sweep`` starts the workers (one per CPU by default; forkserver, so no
worker holds the parent's command line), hands out targets with a bounded
number outstanding per worker, receives records as hosts finish, forwards the
workers' log lines, and writes a record for every host a dead worker or the
deadline left without one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, cast

from .. import logsetup
from .logon_guard import LogonGuard
from .records import HostRecord, host_record
from .runner import Emit, HostRunner, Probe, SweepConfig, probe_host
from .statuses import ANSWERED, WORKER_DIED, SweepStatus
from .targets import Target


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

    def add(self, record: HostRecord) -> None:
        self.done += 1
        status = record.status
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

    def emit(record: HostRecord) -> None:
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
    key = record.key
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
                (SweepStatus.SKIPPED, "the sweep deadline ran out first") if past_deadline
                else (SweepStatus.NOT_ATTEMPTED,
                      "hosts in a row refused the logon; the sweep stopped logging on")
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
                target, SweepStatus.ERROR, elapsed=0.0, error=WORKER_DIED,
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
            record = host_record(target, SweepStatus.TIMEOUT, elapsed=0.0, detail=detail)
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
