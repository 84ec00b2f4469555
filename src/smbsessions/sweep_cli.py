"""``smbsessions sweep``: enumerate sessions on many hosts, one record per host.

The command-line shell around ``smbsessions.sweep``: argument wiring, the
output file (streamed, flushed per host, appended to by ``--resume``), the
progress line on a terminal and the closing summary.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import IO, Any

from .cli import (
    UsageError,
    add_auth_arguments,
    credentials_from_args,
    level_number,
    port_number,
    positive_seconds,
)
from .logon_guard import DEFAULT_MAX_LOGON_FAILURES
from .output import RecordWriter, printable
from .sweep import (
    ANSWERED,
    RECORD_COLUMNS,
    STATUSES,
    SweepConfig,
    SweepStats,
    SweepStatus,
    read_resume,
    run_sweep,
    trim_partial_line,
)
from .targets import (
    DEFAULT_MAX_RANGE,
    DEFAULT_PORT,
    BadEntry,
    Target,
    TargetSource,
    count_targets,
    expand,
    record_key,
)

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_AUTH = 6
EXIT_SOME_FAILED = 9
EXIT_INTERRUPTED = 130

SWEEP_FORMATS = ("jsonl", "csv", "table")
MAX_LISTED_HOSTS = 20

EPILOG = (
    "statuses (one record per host, field \"status\"):\n"
    + "".join(f"  {status.value:<14} {status.description}\n" for status in SweepStatus)
    + """
exit codes:
  0    the sweep ran and every host answered (ok / ok-empty)
  9    the sweep ran; some hosts did not answer (any other status)
  6    the sweep stopped logging on: every host tried refused the logon (check the password)
  2    usage error (bad option or command-line target, --resume without --output)
  130  interrupted (Ctrl-C / SIGTERM); every finished host is in the output: use --resume
  1    unexpected error

bad entries in --targets-file are reported on stderr (file:line) and skipped.
--resume appends: a host recorded as skipped earlier gets a second record; the last one counts.
lockout protection: until one host accepts the logon, hosts log on one at a time; after
--max-logon-failures (default 3) refusals in a row (wrong password, locked out, disabled,
expired...) the sweep stops logging on and records the rest as not-attempted (exit 6).
With local accounts that differ per host, use --continue-on-auth-failure.
"""
)


def add_parser(commands: Any) -> None:
    """Register ``sweep`` on the ``smbsessions`` subcommands."""
    parser = commands.add_parser(
        "sweep",
        help="enumerate sessions on many hosts (ranges, files), one record per host",
        description="Enumerate sessions on many hosts concurrently. Records stream out as hosts "
        "finish (JSON Lines by default), then a summary goes to stderr.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("targets", nargs="*", metavar="TARGET",
                        help="HOST, HOST:PORT, IPv4, IPv6, [IPv6]:PORT, CIDR (10.0.0.0/24[:PORT])")
    parser.add_argument("-f", "--targets-file", action="append", default=[], metavar="FILE",
                        help="file of targets, one per line (# comments); may be repeated")
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT,
                        help=f"port for targets that name none (default {DEFAULT_PORT})")
    parser.add_argument("--max-range", type=int, default=DEFAULT_MAX_RANGE, metavar="N",
                        help="refuse CIDR ranges of more than N addresses "
                             f"(default {DEFAULT_MAX_RANGE}, a /16)")
    add_auth_arguments(
        parser, timeout_help="seconds one host may take in all (connect, logon, every call; default 10)"
    )
    parser.add_argument("--level", type=level_number,
                        help="0, 1, 2, 10 or 502 (default: the richest allowed)")
    parser.add_argument("--user", metavar="NAME", help="hunt: only sessions of this user")
    parser.add_argument("--client", metavar="NAME", help="only sessions from this client")
    parser.add_argument("--concurrency", type=int, default=64, metavar="N",
                        help="hosts in flight at once (default 64)")
    parser.add_argument("--processes", type=int, default=None, metavar="N",
                        help="worker processes sharing the concurrency (default: one per CPU; "
                             "1 = threads in this process)")
    parser.add_argument("--deadline", type=positive_seconds, metavar="S",
                        help="end the whole sweep after S seconds (running hosts: timeout, "
                             "the rest: skipped)")
    parser.add_argument("--format", choices=SWEEP_FORMATS, default="jsonl")
    parser.add_argument("-o", "--output", metavar="FILE", help="write records here instead of stdout")
    parser.add_argument("--resume", action="store_true",
                        help="skip hosts already recorded in --output and append to it")
    guard = parser.add_mutually_exclusive_group()
    guard.add_argument("--max-logon-failures", type=int, default=DEFAULT_MAX_LOGON_FAILURES, metavar="N",
                       help="stop logging on after N hosts in a row refused the logon, so a wrong "
                            f"password cannot lock the account out (default {DEFAULT_MAX_LOGON_FAILURES})")
    guard.add_argument("--continue-on-auth-failure", action="store_true",
                       help="log on to every host whatever earlier hosts answered (local accounts "
                            "that differ per host); risks locking a domain account out")
    parser.set_defaults(handler=cmd_sweep)


# --------------------------------------------------------------------------- output


class _TableWriter:
    """One fixed-width line per host, as it finishes."""

    HEADER = ("HOST", "STATUS", "LEVEL", "SESSIONS", "USERS / DETAIL")

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.stream.write(self._line(*self.HEADER) + "\n")
        self.stream.flush()

    @staticmethod
    def _line(host: str, status: str, level: str, count: str, rest: str) -> str:
        return f"{host:<28} {status:<13} {level:<5} {count:<8} {rest}".rstrip()

    def write(self, record: dict[str, Any]) -> None:
        users = ",".join(record["users"])
        rest = printable(users if record["status"] == "ok" else (record["note"] or record["detail"] or ""))
        level = "-" if record["level"] is None else str(record["level"])
        self.stream.write(
            self._line(record_key(record["host"], record["port"]), record["status"], level,
                       str(record["session_count"]), rest) + "\n"
        )
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


# --------------------------------------------------------------------------- progress


class Progress:
    """A progress line on stderr, redrawn in place at most every 0.1 s; silent when not a TTY."""

    def __init__(self, err: IO[str], total: int | None, stats: SweepStats, enabled: bool) -> None:
        self.err = err
        self.total = total
        self.stats = stats
        self.enabled = enabled
        self._last = 0.0
        self._shown = False

    def tick(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        by = self.stats.by_status
        answered = sum(by.get(s, 0) for s in ANSWERED)
        denied = by.get("denied", 0)
        failed = self.stats.done - answered - denied
        rate = self.stats.done / self.stats.elapsed if self.stats.elapsed > 0 else 0.0
        total = "?" if self.total is None else str(self.total)
        self.err.write(
            f"\r\x1b[K{self.stats.done}/{total} hosts  ok {answered}  denied {denied}  "
            f"failed {failed}  {rate:.1f} hosts/s"
        )
        self.err.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self.err.write("\r\x1b[K")
            self.err.flush()
            self._shown = False


# --------------------------------------------------------------------------- command


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the sweep like Ctrl-C: finished records kept, summary printed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_args(args: argparse.Namespace) -> None:
    if not args.targets and not args.targets_file:
        raise UsageError("no targets: give TARGET arguments or --targets-file")
    if args.resume and not args.output:
        raise UsageError("--resume needs --output (the file whose hosts are skipped and appended to)")
    if args.resume and args.format == "table":
        raise UsageError("--resume needs --format jsonl or csv")
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if args.processes is not None and args.processes < 1:
        raise UsageError("--processes must be at least 1")
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if args.deadline is not None and args.deadline <= 0:
        raise UsageError("--deadline must be positive")
    if not 0 < args.port < 65536:
        raise UsageError("--port must be from 1 to 65535")
    if args.max_range < 1:
        raise UsageError("--max-range must be at least 1")
    if args.max_logon_failures < 1:
        raise UsageError("--max-logon-failures must be at least 1 (or use --continue-on-auth-failure)")


def cmd_sweep(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    _check_args(args)
    source = TargetSource(args.targets, args.targets_file, default_port=args.port, max_range=args.max_range)
    bad_args = source.check_entries()
    if bad_args:
        raise UsageError("bad target: " + "; ".join(f"{b.text!r}: {b.reason}" for b in bad_args))
    for path in source.files:
        if not path.is_file():
            raise UsageError(f"cannot read targets file {path}")
    credentials = credentials_from_args(args, None)

    def report_bad(entry: BadEntry) -> None:
        err.write(f"smbsessions sweep: skipping bad target {entry}\n")

    done: set[str] = set()
    if args.resume:
        state = read_resume(args.output, args.format)
        done = state.done
        if done:
            err.write(f"resuming: {len(done)} host(s) already in {args.output} are skipped\n")
    if done:
        total = sum(1 for t in expand(source.specs(report_bad)) if t.key not in done)
    else:
        total = count_targets(source.specs(report_bad))
    targets: Iterator[Target] = (t for t in expand(source.specs()) if t.key not in done)

    margin = min(1.0, 0.25 + 0.1 * args.timeout)
    deadline = None if args.deadline is None else time.monotonic() + args.deadline
    config = SweepConfig(credentials, level=args.level, user=args.user, client=args.client,
                         timeout=args.timeout, margin=margin, deadline=deadline,
                         require_encryption=args.encrypt,
                         max_logon_failures=0 if args.continue_on_auth_failure else args.max_logon_failures)

    stream, close_stream = _open_output(args, out)
    writer: Any
    if args.format == "jsonl":
        writer = RecordWriter(stream, "jsonl")
    elif args.format == "csv":
        writer = RecordWriter(stream, "csv", RECORD_COLUMNS,
                              header=stream.tell() == 0 if args.output else True)
    else:
        writer = _TableWriter(stream)

    stats = SweepStats(total=total)
    progress = Progress(err, total, stats, enabled=_isatty(err))
    shared_terminal = progress.enabled and not args.output and _isatty(out)
    found: list[str] = []
    found_count = 0

    def on_record(record: dict[str, Any]) -> None:
        nonlocal found_count
        if shared_terminal:
            progress.clear()
        writer.write(record)
        if args.user and record["status"] == "ok":
            found_count += 1
            if len(found) < MAX_LISTED_HOSTS:
                found.append(record_key(record["host"], record["port"]))
        progress.tick()

    try:
        with _sigterm_as_interrupt():
            run_sweep(targets, config, on_record, concurrency=args.concurrency,
                      processes=args.processes, on_tick=progress.tick, stats=stats)
    except KeyboardInterrupt:
        stats.interrupted = True
    finally:
        progress.clear()
        writer.close()
        if close_stream:
            stream.close()
    _summary(err, stats, total, args, credentials_label=str(credentials), found=found,
             found_count=found_count)
    if stats.interrupted:
        return EXIT_INTERRUPTED
    if stats.logon_stopped:
        return EXIT_AUTH
    failed = stats.done - stats.answered
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _open_output(args: argparse.Namespace, out: IO[str]) -> tuple[IO[str], bool]:
    if not args.output:
        return out, False
    if args.resume:
        trim_partial_line(args.output)
        mode = "a"
    else:
        mode = "w"
    try:
        return open(args.output, mode, encoding="utf-8", newline="" if args.format == "csv" else None), True
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc.strerror}") from None


def _summary(err: IO[str], stats: SweepStats, total: int, args: argparse.Namespace, *,
             credentials_label: str, found: list[str], found_count: int) -> None:
    rate = stats.done / stats.elapsed if stats.elapsed > 0 else 0.0
    head = "interrupted after" if stats.interrupted else "swept"
    err.write(f"{head} {stats.done} of {total} host(s) in {stats.elapsed:.1f} s ({rate:.1f} hosts/s)\n")
    counts = ", ".join(f"{s} {stats.by_status[s]}" for s in STATUSES if stats.by_status.get(s))
    if counts:
        err.write(f"  {counts}\n")
    err.write(f"{stats.answered} of {stats.done} hosts expose sessions to this account "
              f"({credentials_label})\n")
    if args.user:
        if found_count:
            more = f" and {found_count - len(found)} more" if found_count > len(found) else ""
            err.write(f"user {args.user!r} found on {found_count} host(s): {', '.join(found)}{more}\n")
        else:
            err.write(f"user {args.user!r} found on no host\n")
    guard = stats.logon_guard
    if guard is not None and guard.stopped:
        err.write(
            f"every host refused the logon: check the password ({guard.refusals} in a row, "
            f"last {guard.last_refusal}); the sweep stopped logging on to spare the account a lockout, "
            f"{stats.by_status.get('not-attempted', 0)} host(s) not attempted "
            "(rerun with --resume once fixed; --continue-on-auth-failure if accounts differ per host)\n"
        )
    if stats.interrupted and args.output:
        err.write(f"finished hosts are in {args.output}; continue with the same command and --resume\n")


if __name__ == "__main__":  # pragma: no cover
    from .cli import main

    sys.exit(main(["sweep", *sys.argv[1:]]))
