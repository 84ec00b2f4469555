"""``smbsessions sweep``: enumerate sessions on many hosts, one record per host.

The command-line shell around the sweep engine (``pool.run_sweep``): argument
wiring, the output file (streamed, flushed per host, appended to by ``--resume``;
the writers and the progress line live in ``display``) and the closing summary.
It imports the shared options from ``cli_args``, never the root ``cli``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import textwrap
import time
from collections.abc import Iterator
from typing import IO, Any

from .. import logsetup
from ..cli_args import (
    UsageError,
    add_auth_arguments,
    check_user_filter,
    credentials_from_args,
    level_number,
    port_number,
    positive_seconds,
    sigterm_as_interrupt,
)
from ..exitcodes import ExitCode, exit_codes_text
from ..output import printable
from .display import CsvWriter, JsonWriter, OutputWriteError, Progress, TableWriter
from .logon_guard import DEFAULT_MAX_LOGON_FAILURES
from .pool import SweepStats, run_sweep
from .records import HostRecord
from .resume import ResultsFile, read_results, read_resume, trim_partial_line
from .runner import BYTES_PER_ENTRY, DEFAULT_MAX_ENTRIES, SweepConfig
from .statuses import ANSWERED, STATUSES, SweepStatus
from .targets import (
    DEFAULT_MAX_RANGE,
    DEFAULT_PORT,
    BadEntry,
    Exclusions,
    Target,
    TargetSource,
    count_targets,
    expand,
)

SWEEP_FORMATS = ("jsonl", "json", "csv", "table")
MAX_LISTED_HOSTS = 20

EXIT_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "the sweep ran and every host answered (ok / ok-empty); after --resume: every host "
                 "of the file",
    ExitCode.ERROR: "the output could not be written (disk full: finished hosts kept, rerun with "
                    "--resume), or an unexpected error",
    ExitCode.USAGE: "usage error (bad option or command-line target, --resume without --output, "
                    "a non-empty --output without --resume/--overwrite)",
    ExitCode.AUTH: "the sweep stopped logging on: every host tried refused the logon (check the password)",
    ExitCode.SOME_FAILED: "the sweep ran; some hosts did not answer (any other status)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C / SIGTERM); every finished host is in the output: "
                          "use --resume",
}


def _wrap(status: SweepStatus) -> str:
    return textwrap.fill(status.description, width=90, initial_indent=f"  {status.value:<14} ",
                         subsequent_indent=" " * 17)


EPILOG = "\n\n".join([
    "examples:\n"
    "  smbsessions sweep 10.0.0.0/24 -U 'CORP/alice' --user bob -o hunt.jsonl\n"
    "  cat servers.txt | smbsessions sweep -f - -A creds.txt --exclude @never.txt --format csv "
    "-o sessions.csv\n"
    "  smbsessions sweep -f hosts.txt -U alice -o hunt.jsonl --resume   # after Ctrl-C or a full disk",
    "statuses (one record per host, field \"status\"):\n" + "\n".join(_wrap(s) for s in SweepStatus),
    """bad entries in --targets-file are reported on stderr (file:line) and skipped.
--resume appends: a host recorded as skipped or not-attempted earlier gets a second record;
the last one counts. A last line cut by an interrupted write is removed first (that host is retried).
lockout protection: until one host accepts the logon, hosts log on one at a time; after
--max-logon-failures (default 3) refusals in a row (wrong password, locked out, disabled,
expired...) the sweep stops logging on and records the rest as not-attempted (exit 6).
With local accounts that differ per host, use --continue-on-auth-failure.""",
    exit_codes_text(tuple(EXIT_MEANINGS), EXIT_MEANINGS),
])


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
                        help="file of targets, one per line (# comments); '-' reads standard input; "
                             "may be repeated")
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
    parser.add_argument("--max-entries", type=int, default=DEFAULT_MAX_ENTRIES, metavar="N",
                        help="sessions one host may send before it is an error (default "
                             f"{DEFAULT_MAX_ENTRIES:,}; with a byte budget of {BYTES_PER_ENTRY} bytes "
                             "each, this bounds memory per host in flight)")
    parser.add_argument("--concurrency", type=int, default=64, metavar="N",
                        help="hosts in flight at once (default 64)")
    parser.add_argument("--processes", type=int, default=None, metavar="N",
                        help="worker processes sharing the concurrency (default: one per CPU; "
                             "1 = threads in this process)")
    parser.add_argument("--deadline", type=positive_seconds, metavar="S",
                        help="end the whole sweep after S seconds (running hosts: timeout, "
                             "the rest: skipped)")
    parser.add_argument("--format", choices=SWEEP_FORMATS, default="jsonl",
                        help="jsonl (default): one record per host and line; json: one array; "
                             "csv: one row per session (a host without sessions: one row); "
                             "table: one line per host")
    parser.add_argument("--only-sessions", action="store_true",
                        help="table: list only hosts with sessions (the summary still counts every host)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write records here instead of stdout")
    replace = parser.add_mutually_exclusive_group()
    replace.add_argument("--resume", action="store_true",
                         help="skip hosts already recorded in --output and append to it")
    replace.add_argument("--overwrite", action="store_true",
                         help="replace a non-empty --output file (refused otherwise)")
    parser.add_argument("--exclude", action="append", default=[], metavar="TARGETS",
                        help="never contact these: HOST, IP, CIDR (comma-separated) or @FILE of them; "
                             "may be repeated")
    guard = parser.add_mutually_exclusive_group()
    guard.add_argument("--max-logon-failures", type=int, default=DEFAULT_MAX_LOGON_FAILURES, metavar="N",
                       help="stop logging on after N hosts in a row refused the logon, so a wrong "
                            f"password cannot lock the account out (default {DEFAULT_MAX_LOGON_FAILURES})")
    guard.add_argument("--continue-on-auth-failure", action="store_true",
                       help="log on to every host whatever earlier hosts answered (local accounts "
                            "that differ per host); risks locking a domain account out")
    parser.set_defaults(handler=cmd_sweep)


# --------------------------------------------------------------------------- command



def _check_args(args: argparse.Namespace) -> None:
    """What argparse cannot check alone (--timeout, --deadline and --port are checked by their types)."""
    if not args.targets and not args.targets_file:
        raise UsageError("no targets: give TARGET arguments or --targets-file")
    if args.resume and not args.output:
        raise UsageError("--resume needs --output (the file whose hosts are skipped and appended to)")
    if args.resume and args.format in ("table", "json"):
        raise UsageError("--resume needs --format jsonl or csv")
    if args.only_sessions and args.format != "table":
        raise UsageError("--only-sessions applies to --format table")
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if args.max_entries < 1:
        raise UsageError("--max-entries must be at least 1")
    if args.processes is not None and args.processes < 1:
        raise UsageError("--processes must be at least 1")
    if args.max_range < 1:
        raise UsageError("--max-range must be at least 1")
    if args.max_logon_failures < 1:
        raise UsageError("--max-logon-failures must be at least 1 (or use --continue-on-auth-failure)")
    if args.output and not args.resume and not args.overwrite and _non_empty_file(args.output):
        raise UsageError(
            f"{args.output} is not empty: add --resume to continue that sweep, or --overwrite to replace it"
        )


def _non_empty_file(path: str) -> bool:
    try:
        return os.path.isfile(path) and os.path.getsize(path) > 0
    except OSError:
        return False


class _Run:
    """What one sweep command counts while it runs."""

    def __init__(self) -> None:
        self.written = 0
        self.found: list[str] = []
        self.found_count = 0
        self.unwritable = 0


def cmd_sweep(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    _check_args(args)
    source = TargetSource(args.targets, args.targets_file, default_port=args.port, max_range=args.max_range)
    bad_args = source.check_entries()
    if bad_args:
        raise UsageError("bad target: " + "; ".join(f"{b.text!r}: {b.reason}" for b in bad_args))
    for path in source.files:
        if not path.is_file():
            raise UsageError(f"cannot read targets file {path}")
    try:
        excluded = Exclusions(args.exclude)
    except (OSError, ValueError) as exc:
        raise UsageError(f"bad --exclude: {exc}") from None
    check_user_filter(args.user)
    credentials = credentials_from_args(args, None)
    if credentials.target_name:
        raise UsageError("--target-name names one server: a sweep's targets must themselves be "
                         "names for Kerberos (the SPN is cifs/<target>)")
    if credentials.kerberos:
        # One TGT for the whole sweep (kerberos.prepare): workers inherit its cache.
        from ..kerberos import prepare

        credentials = prepare(credentials)

    def report_bad(entry: BadEntry) -> None:
        err.write(f"smbsessions sweep: skipping bad target {printable(str(entry))}\n")

    done: set[str] = set()
    if args.resume:
        # A last line cut by an interrupted write must go before reading: its host is retried.
        trim_partial_line(args.output)
        state = read_resume(args.output, args.format)
        done = state.done
        if done:
            err.write(f"resuming: {len(done)} host(s) already in {args.output} are skipped\n")

    def wanted(target: Target) -> bool:
        return target.key not in done and target not in excluded

    if done or excluded:
        total = sum(1 for t in expand(source.specs(report_bad)) if wanted(t))
    else:
        total = count_targets(source.specs(report_bad))
    targets: Iterator[Target] = (t for t in expand(source.specs()) if wanted(t))

    margin = min(1.0, 0.25 + 0.1 * args.timeout)
    deadline = None if args.deadline is None else time.monotonic() + args.deadline
    config = SweepConfig(credentials, level=args.level, user=args.user, client=args.client,
                         timeout=args.timeout, margin=margin, deadline=deadline,
                         require_encryption=args.encrypt, max_entries=args.max_entries,
                         max_logon_failures=0 if args.continue_on_auth_failure else args.max_logon_failures)

    stream, close_stream = _open_output(args, out)
    writer: Any
    if args.format in ("jsonl", "json"):
        writer = JsonWriter(stream, args.format)
    elif args.format == "csv":
        writer = CsvWriter(stream, header=stream.tell() == 0 if args.output else True)
    else:
        writer = TableWriter(stream, args.only_sessions)

    stats = SweepStats(total=total)
    progress = Progress(err, total, stats, enabled=_isatty(err))
    progress.in_flight = lambda: stats.in_flight
    shared_terminal = progress.enabled and not args.output and _isatty(out)
    run = _Run()

    def on_record(record: HostRecord) -> None:
        if shared_terminal:
            progress.clear()
        _write_record(writer, record, run, err, progress)
        if args.user and record.status == SweepStatus.OK:
            run.found_count += 1
            if len(run.found) < MAX_LISTED_HOSTS:
                run.found.append(record.key)
        progress.tick()

    write_error: OutputWriteError | None = None
    with logsetup.before_emit(progress.clear):
        try:
            with sigterm_as_interrupt():
                run_sweep(targets, config, on_record, concurrency=args.concurrency,
                          processes=args.processes, on_tick=progress.tick, stats=stats)
        except KeyboardInterrupt:
            stats.interrupted = True
        except OutputWriteError as exc:
            write_error = exc
        finally:
            progress.clear()
            try:
                writer.close()
                if close_stream:
                    stream.close()
            except BrokenPipeError:
                raise
            except OSError as exc:
                write_error = write_error or OutputWriteError(exc)
                with contextlib.suppress(OSError):
                    stream.close()
    whole = read_results(args.output, args.format) if args.resume and args.output else None
    _summary(err, stats, total, args, credentials_label=str(credentials), run=run, whole=whole)
    if write_error is not None:
        finished = len(done) + run.written
        where = args.output or "the output"
        err.write(f"smbsessions: error: cannot write {where}: {write_error.reason}; {finished} finished "
                  f"host(s) are in {where}; free space and rerun with --resume\n")
        return ExitCode.ERROR
    if stats.interrupted:
        return ExitCode.INTERRUPTED
    if stats.logon_stopped:
        return ExitCode.AUTH
    if whole is not None:
        counts = whole.counts()
        failed = sum(n for status, n in counts.items() if status not in ANSWERED)
    else:
        failed = stats.done - stats.answered + run.unwritable
    return ExitCode.SOME_FAILED if failed else ExitCode.OK


def _write_record(writer: Any, record: HostRecord, run: _Run, err: IO[str], progress: Progress) -> None:
    """Write one record; a record that cannot be encoded is reported and replaced by a
    record without its sessions, so one hostile name never stops the sweep."""
    try:
        writer.write(record)
    except BrokenPipeError:
        raise  # the reader stopped (| head): the command line ends quietly
    except OSError as exc:
        raise OutputWriteError(exc) from None
    except (ValueError, TypeError) as exc:  # UnicodeEncodeError is a ValueError
        run.unwritable += 1
        key = printable(record.key)
        progress.clear()
        err.write(f"smbsessions sweep: cannot write the record of {key} ({type(exc).__name__}); "
                  "writing it without its sessions\n")
        replacement = dataclasses.replace(
            record, status=SweepStatus.ERROR, sessions=[], users=[], session_count=0,
            error="RecordNotWritable", code=None,
            detail=f"the record could not be written ({type(exc).__name__}): "
            f"was {record.status!s} with {record.session_count} session(s)",
            note=None,
        )
        try:
            writer.write(replacement)
        except OSError as second:
            raise OutputWriteError(second) from None
        except (ValueError, TypeError):
            err.write(f"smbsessions sweep: the record of {key} was left out\n")
            return
    run.written += 1


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _open_output(args: argparse.Namespace, out: IO[str]) -> tuple[IO[str], bool]:
    if not args.output:
        return out, False
    mode = "a" if args.resume else "w"
    try:
        return open(args.output, mode, encoding="utf-8", newline="" if args.format == "csv" else None), True
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc.strerror}") from None


def _summary(err: IO[str], stats: SweepStats, total: int, args: argparse.Namespace, *,
             credentials_label: str, run: _Run, whole: ResultsFile | None) -> None:
    rate = stats.done / stats.elapsed if stats.elapsed > 0 else 0.0
    head = "interrupted after" if stats.interrupted else "swept"
    this_run = "this run: " if whole is not None else ""
    err.write(f"{this_run}{head} {stats.done} of {total} host(s) in {stats.elapsed:.1f} s "
              f"({rate:.1f} hosts/s)\n")
    counts = ", ".join(f"{s} {stats.by_status[s]}" for s in STATUSES if stats.by_status.get(s))
    if counts:
        err.write(f"  {counts}\n")
    if run.unwritable:
        err.write(f"  {run.unwritable} record(s) could not be written as they were (see above)\n")
    if whole is not None:
        by_status = whole.counts()
        hosts = len(whole.statuses)
        answered = sum(by_status.get(s, 0) for s in ANSWERED)
        err.write(f"in total ({args.output}): {hosts} host(s)\n")
        listed = ", ".join(f"{s} {by_status[s]}" for s in STATUSES if by_status.get(s))
        if listed:
            err.write(f"  {listed}\n")
        err.write(f"{answered} of {hosts} hosts expose sessions to this account ({credentials_label})\n")
        if args.user:
            _found(err, args.user, whole.hosts_with_user(args.user))
    else:
        err.write(f"{stats.answered} of {stats.done} hosts expose sessions to this account "
                  f"({credentials_label})\n")
        if args.user:
            more = run.found_count - len(run.found)
            _found(err, args.user, run.found, more)
    guard = stats.logon_guard
    if guard is not None and guard.stopped:
        err.write(
            f"every host refused the logon: check the password ({guard.refusals} in a row, "
            f"last {guard.last_refusal}); the sweep stopped logging on to spare the account a lockout, "
            f"{stats.by_status.get(SweepStatus.NOT_ATTEMPTED, 0)} host(s) not attempted "
            "(rerun with --resume once fixed; --continue-on-auth-failure if accounts differ per host)\n"
        )
    if stats.interrupted and args.output:
        err.write(f"finished hosts are in {args.output}; continue with the same command and --resume\n")


def _found(err: IO[str], user: str, hosts: list[str], more: int = 0) -> None:
    shown = hosts[:MAX_LISTED_HOSTS]
    more += len(hosts) - len(shown)
    name = printable(user)
    if shown:
        tail = f" and {more} more" if more else ""
        err.write(f"user {name!r} found on {len(shown) + more} host(s): {', '.join(shown)}{tail}\n")
    else:
        err.write(f"user {name!r} found on no host\n")
