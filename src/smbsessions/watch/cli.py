"""``smbsessions watch`` and ``smbsessions history``: argument wiring and output.

Registered by ``smbsessions.cli`` (``add_parser``). The database, metrics and
plotting libraries are imported only when a command runs, so ``--help`` and
the other commands stay cheap.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import IO, Any

from ..cli_args import (
    UsageError,
    add_auth_arguments,
    credentials_from_args,
    level_number,
    port_number,
    positive_seconds,
)
from ..exitcodes import ExitCode, exit_codes_text
from ..output import FORMATS, RecordWriter, printable, render_table
from ..sweep.targets import DEFAULT_MAX_RANGE, DEFAULT_PORT, BadEntry, Target, TargetSource, expand

EXIT_STORE_UNAVAILABLE = ExitCode.STORE_UNAVAILABLE
"""11: the store could not be opened (watch, history), or another watcher holds our hosts."""
EXIT_STORE_LOST = ExitCode.STORE_LOST
"""12: watch: the store stayed unavailable until waiting writes could no longer be held: some are lost."""

LEASE_MINIMUM = 120.0
"""Seconds: the shortest lease a watcher takes on its hosts."""


def _codes(*codes: int) -> str:
    return exit_codes_text([ExitCode(c) for c in codes])


WATCH_EPILOG = """\
examples:
  smbsessions watch -f servers.txt -U admin --interval 60 --alert-user svc_backup
  smbsessions watch 10.0.0.0/24 -U admin --db postgresql://watch@db:5432/sessions --metrics-port 9464
  smbsessions watch fs01 -U admin --rounds 1 --events -          (one poll, JSON Lines, for cron)

what is recorded: a session starts (logon) when a poll first lists it and ends (logoff) when a
successful poll no longer does; a host that fails a poll ends nothing (host-status event, the gap
is recorded). Storage grows with changes, not with polls. The caller's own session is never
recorded. --events JSON Lines: {"event": "logon"|"logoff"|"host-status", "time", "host", "client",
"user", "start", "alert", ...}.

store: SQLite by default (the path is printed at start), or postgresql://USER@HOST:PORT/DB (password
from ~/.pgpass or $PGPASSWORD, never on the command line) for a team. Two watchers may share a
store only with disjoint targets (each host has one watcher; a second one is refused).
"""

HISTORY_EPILOG = """\
examples:
  smbsessions history --user bob --since 7d
  smbsessions history --host fs01 --at 2026-11-30T03:10
  smbsessions history --current --format json
  smbsessions history --since 1d --plot sessions.png
  smbsessions history --prune 90d

WHEN: ISO 8601 (2026-11-30T03:10 local time, ...Z for UTC), 'now', or an age back from now:
90s, 15m, 2h, 7d, 1w. --at: sessions open at WHEN; --since/--until: sessions overlapping the
window; --current: open as of each host's last successful poll. A session ended between
last_seen (the last poll that listed it) and end (the first that did not).
"""


def add_parser(commands: Any) -> None:
    """Register ``watch`` and ``history``."""
    _add_watch(commands)
    _add_history(commands)


def _add_watch(commands: Any) -> None:
    parser = commands.add_parser(
        "watch",
        help="poll hosts every few seconds and record who connects where (history store)",
        description="Poll TARGETs every --interval seconds (each round is one sweep), print one line "
                    "per logon, logoff and host-status change as it happens, and keep the history in "
                    "a database (SQLite or PostgreSQL) for 'smbsessions history'.",
        epilog=WATCH_EPILOG + "\n" + _codes(0, 1, 2, EXIT_STORE_UNAVAILABLE, EXIT_STORE_LOST),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("targets", nargs="*", metavar="TARGET",
                        help="HOST, HOST:PORT, IPv4, IPv6, [IPv6]:PORT, CIDR (10.0.0.0/24[:PORT])")
    parser.add_argument("-f", "--targets-file", action="append", default=[], metavar="FILE",
                        help="file of targets, one per line (# comments); may be repeated")
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT,
                        help=f"port for targets that name none (default {DEFAULT_PORT})")
    add_auth_arguments(parser, timeout_help="seconds one host may take per poll (default 10)")
    parser.add_argument("--level", type=level_number,
                        help="0, 1, 2, 10 or 502 (default: the richest allowed; level 0 has no user "
                             "and no time, see 'what is recorded')")
    parser.add_argument("--interval", type=positive_seconds, default=60.0, metavar="S",
                        help="seconds from the start of one round to the next (default 60); a round "
                             "that runs longer delays the next, and the lag is reported")
    parser.add_argument("--rounds", type=_positive_int, metavar="N", help="stop after N rounds")
    parser.add_argument("--db", metavar="URL",
                        help="store: a path, sqlite:///PATH or postgresql://USER@HOST:PORT/DB "
                             "(default $XDG_DATA_HOME/smbsessions/history.sqlite)")
    parser.add_argument("--events", metavar="FILE|-",
                        help="also write every event as JSON Lines to FILE (appended), or only JSON "
                             "Lines to stdout with '-'")
    parser.add_argument("--alert-user", action="append", default=[], metavar="NAME",
                        help="flag events of this user (\"alert\": true, highlighted, counted); repeatable")
    parser.add_argument("--metrics-port", metavar="[ADDR:]PORT",
                        help="serve Prometheus metrics on PORT (loopback; ADDR:PORT, e.g. "
                             "0.0.0.0:9464, for a remote scraper)")
    parser.add_argument("--concurrency", type=_positive_int, default=64, metavar="N",
                        help="hosts polled at once (default 64)")
    parser.add_argument("--processes", type=_positive_int, metavar="N",
                        help="sweep worker processes (default: one per CPU; 1 = threads in this process)")
    parser.add_argument("--retain", metavar="AGE",
                        help="remove sessions that ended, and host-status rows, older than AGE "
                             "(90d, 12h, ...), at start and hourly")
    parser.add_argument("--max-pending", type=_positive_int, default=200_000, metavar="N",
                        help="events held in memory while the store is unavailable (default 200000); "
                             "beyond that the watch stops (exit 12) saying what was lost")
    parser.set_defaults(handler=cmd_watch)


def _add_history(commands: Any) -> None:
    parser = commands.add_parser(
        "history",
        help="who was connected where and when, from the watch store (no network)",
        description="Answer from the store that 'smbsessions watch' fills: sessions by user, client, "
                    "host and time, who was on a host at a moment, who is connected now.",
        epilog=HISTORY_EPILOG + "\n" + _codes(0, 1, 2, EXIT_STORE_UNAVAILABLE),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--db", metavar="URL", help="store (default: as watch)")
    parser.add_argument("--user", metavar="NAME", help="sessions of this user (any case)")
    parser.add_argument("--client", metavar="NAME", help="sessions from this client (\\\\NAME or IP)")
    parser.add_argument("--host", metavar="HOST[:PORT]",
                        help="sessions on this host (any port if none given)")
    parser.add_argument("--since", metavar="WHEN", help="sessions still open at or after WHEN")
    parser.add_argument("--until", metavar="WHEN", help="sessions started at or before WHEN")
    parser.add_argument("--at", metavar="WHEN", help="sessions open at WHEN")
    parser.add_argument("--current", action="store_true",
                        help="sessions open now (as of each host's last successful poll)")
    parser.add_argument("--format", choices=FORMATS, default="table",
                        help="table (default, local times; '~' marks a start only known as 'first seen'), "
                             "json (one array), jsonl (one object a line) or csv; JSON/CSV times are "
                             "ISO 8601 UTC")
    parser.add_argument("--limit", type=_positive_int, metavar="N", help="at most N sessions (oldest first)")
    parser.add_argument("--host-status", action="store_true",
                        help="list host-status changes (the gaps in polling) instead of sessions")
    parser.add_argument("--plot", metavar="FILE.png|.svg",
                        help="draw a timeline of the selected sessions (needs the 'plot' extra)")
    parser.add_argument("--plot-by", choices=("host", "user"), default="host",
                        help="one lane per host (default) or per user")
    parser.add_argument("--prune", metavar="AGE",
                        help="remove sessions that ended, and host-status rows, older than AGE, then exit")
    parser.set_defaults(handler=cmd_history)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


# --------------------------------------------------------------------------- watch


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the watch like Ctrl-C: the round's polls are kept and written."""
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


def _targets(args: argparse.Namespace, err: IO[str]) -> list[Target]:
    if not args.targets and not args.targets_file:
        raise UsageError("no targets: give TARGET arguments or --targets-file")
    source = TargetSource(args.targets, args.targets_file, default_port=args.port,
                          max_range=DEFAULT_MAX_RANGE)
    bad = source.check_entries()
    if bad:
        raise UsageError("bad target: " + "; ".join(f"{b.text!r}: {b.reason}" for b in bad))
    for path in source.files:
        if not path.is_file():
            raise UsageError(f"cannot read targets file {path}")

    def report_bad(entry: BadEntry) -> None:
        err.write(f"smbsessions watch: skipping bad target {entry}\n")

    targets = list(expand(source.specs(report_bad)))
    if not targets:
        raise UsageError("no usable target")
    return targets


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def cmd_watch(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from ..sweep.runner import SweepConfig
    from .events import Event, event_json, event_line
    from .history import parse_age
    from .store import LeaseError, Store, StoreError, StoreUnavailable
    from .watcher import StoreLossError, Watcher

    targets = _targets(args, err)
    try:
        retain = parse_age(args.retain) if args.retain else None
    except ValueError as exc:
        raise UsageError(f"--retain: {exc}") from None
    listen = None
    if args.metrics_port:
        from .metrics import parse_listen

        try:
            listen = parse_listen(args.metrics_port)
        except ValueError as exc:
            raise UsageError(f"--metrics-port: {exc}") from None
    credentials = credentials_from_args(args, None)
    margin = min(1.0, 0.25 + 0.1 * args.timeout)
    config = SweepConfig(credentials, level=args.level, timeout=args.timeout, margin=margin,
                         require_encryption=args.encrypt)

    try:
        store = Store.open(args.db)
    except StoreError as exc:
        err.write(f"smbsessions watch: the store is not available: {exc}\n")
        return EXIT_STORE_UNAVAILABLE

    events_file: IO[str] | None = None
    jsonl_out = args.events == "-"
    if args.events and not jsonl_out:
        try:
            events_file = open(args.events, "a", encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as exc:
            store.close()
            raise UsageError(f"cannot write {args.events}: {exc.strerror}") from None
    color = _isatty(out) and not jsonl_out

    def on_event(event: Event) -> None:
        if jsonl_out:
            out.write(event_json(event) + "\n")
        else:
            out.write(event_line(event, color=color) + "\n")
        out.flush()
        if events_file is not None:
            events_file.write(event_json(event) + "\n")
            events_file.flush()

    metrics = None
    if listen is not None:
        from .metrics import WatchMetrics

        metrics = WatchMetrics()
        try:
            metrics.serve(*listen)
        except OSError as exc:
            store.close()
            raise UsageError(
                f"--metrics-port: cannot listen on {listen[0]}:{listen[1]}: {exc.strerror}"
            ) from None

    # A lease outlives a few rounds and a short store outage; a crash on this machine frees it at once.
    lease = max(LEASE_MINIMUM, 5 * args.interval + args.timeout)
    watcher = Watcher(store, targets, config, alert_users=args.alert_user, concurrency=args.concurrency,
                      processes=args.processes, on_event=on_event, messages=err, metrics=metrics,
                      retain=retain, pending_limit=args.max_pending, lease=lease)
    code = ExitCode.OK
    try:
        try:
            watcher.start()
        except LeaseError as exc:
            err.write(f"smbsessions watch: refused: {exc}\n")
            return EXIT_STORE_UNAVAILABLE
        except StoreError as exc:
            err.write(f"smbsessions watch: the store is not available: {exc}\n")
            return EXIT_STORE_UNAVAILABLE
        open_count = watcher.tracker.open_count
        err.write(f"smbsessions watch: store {store.display}; {len(targets)} target(s) every "
                  f"{args.interval:g} s" + (f" for {args.rounds} round(s)" if args.rounds else "")
                  + (f"; {open_count} open session(s) carried over, reconciled at the next poll"
                     if open_count else "")
                  + (f"; metrics on http://{listen[0]}:{listen[1]}/metrics" if listen else "") + "\n")
        err.flush()
        try:
            with _sigterm_as_interrupt():
                watcher.run(args.rounds, args.interval)
        except KeyboardInterrupt:
            err.write("smbsessions watch: stopping\n")
        except StoreLossError as exc:
            err.write(f"smbsessions watch: {exc}\n")
            if events_file is not None:
                err.write(f"smbsessions watch: every event was written to {args.events} as it happened\n")
            return EXIT_STORE_LOST
        except StoreError as exc:  # our lease was taken over while the store was away
            err.write(f"smbsessions watch: {exc}; not stored: {watcher.pending.describe()}\n")
            return EXIT_STORE_LOST
        if not watcher.flush():
            # Stopping with writes the store never took: they are lost to it.
            try:
                _retry_flush(watcher)
            except StoreUnavailable as exc:
                err.write(f"smbsessions watch: {exc}; stopping with {watcher.pending.describe()} not "
                          "stored (lost from the history)\n")
                if events_file is not None:
                    err.write(f"smbsessions watch: they are in {args.events}\n")
                return EXIT_STORE_LOST
        with contextlib.suppress(StoreError):
            store.release()
        return code
    finally:
        if events_file is not None:
            events_file.close()
        if metrics is not None:
            metrics.close()
        store.close()


def _retry_flush(watcher: Any, attempts: int = 3, pause: float = 1.0) -> None:
    from .store import StoreUnavailable

    for attempt in range(attempts):
        try:
            watcher.store.write(watcher.pending)
            return
        except StoreUnavailable:
            if attempt == attempts - 1:
                raise
            time.sleep(pause)


# --------------------------------------------------------------------------- history


HISTORY_TABLE = ("START", "END", "HOST", "CLIENT", "USER", "DURATION", "STATE")


def _local(iso: str | None) -> str:
    if iso is None:
        return "-"
    import datetime as dt

    moment = dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}d {clock}" if days else clock


def _table_row(record: dict[str, Any]) -> list[str]:
    start = _local(record["start"]) + ("" if record["start_exact"] else "~")
    end = _local(record["end"]) if record["end"] else "(open)"
    state = record["state"]
    if record["state"] == "open" and record["as_of"]:
        state = f"open as of {_local(record['as_of'])[11:]}"
    if record["alert"]:
        state += " ALERT"
    return [start, end, printable(record["host"]), printable(record["client"]),
            printable(record["user"] or "-"), _duration(record["duration"]), state]


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith("_")}


def _when(option: str, text: str | None, now: float) -> float | None:
    from .history import parse_when

    if text is None:
        return None
    try:
        return parse_when(text, now)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def cmd_history(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from . import history
    from .schema import sessions_table
    from .store import Store, StoreError

    now = time.time()
    if args.at is not None and (args.since or args.until or args.current):
        raise UsageError("--at is a moment: it does not combine with --since, --until or --current")
    query = history.Query(
        user=args.user, client=args.client, host=args.host,
        since=_when("--since", args.since, now), until=_when("--until", args.until, now),
        at=_when("--at", args.at, now), current=args.current, limit=args.limit,
    )
    if query.since is not None and query.until is not None and query.since > query.until:
        raise UsageError("--since is after --until")
    prune_age = None
    if args.prune:
        try:
            prune_age = history.parse_age(args.prune)
        except ValueError as exc:
            raise UsageError(f"--prune: {exc}") from None
    if args.plot and not args.plot.lower().endswith((".png", ".svg", ".pdf")):
        raise UsageError("--plot: the file name must end in .png, .svg or .pdf")
    if args.host:
        try:
            history.host_condition(sessions_table.c.host, args.host)  # checks the text
        except ValueError as exc:
            raise UsageError(f"--host: {exc}") from None
    try:
        store = Store.open(args.db, create=False)
    except StoreError as exc:
        err.write(f"smbsessions history: the store is not available: {exc}\n")
        return EXIT_STORE_UNAVAILABLE
    try:
        if prune_age is not None:
            sessions, changes = history.prune(store, prune_age, now)
            err.write(f"pruned: {sessions} ended session(s) and {changes} host-status row(s) older than "
                      f"{args.prune} from {store.display}\n")
            return ExitCode.OK
        if store.found_version == 0:
            err.write(f"smbsessions history: {store.display} holds no watch history\n")
            return EXIT_STORE_UNAVAILABLE
        if args.host_status:
            changes_list = history.host_changes(store, args.host, query.since, query.until)
            _write_changes(changes_list, args.format, out)
            return ExitCode.OK
        records = list(history.sessions(store, query, now))
        plot_changes = (history.host_changes(store, args.host, query.since, query.until)
                        if args.plot and args.plot_by == "host" else [])
    except StoreError as exc:
        err.write(f"smbsessions history: {exc}\n")
        return EXIT_STORE_UNAVAILABLE
    finally:
        store.close()
    if args.plot:
        from .plot import plot_sessions

        try:
            plot_sessions(records, args.plot, by=args.plot_by, now=now, changes=plot_changes)
        except OSError as exc:
            raise UsageError(f"cannot write {args.plot}: {exc.strerror}") from None
        err.write(f"plotted {len(records)} session(s) to {args.plot}\n")
    _write_sessions(records, args.format, out, err)
    return ExitCode.OK


def _write_sessions(records: list[dict[str, Any]], fmt: str, out: IO[str], err: IO[str]) -> None:
    from .history import SESSION_COLUMNS

    if fmt == "table":
        if records:
            out.write(render_table(HISTORY_TABLE, (_table_row(r) for r in records)) + "\n")
        else:
            err.write("no sessions match\n")
        return
    writer = RecordWriter(out, fmt, SESSION_COLUMNS)
    for record in records:
        writer.write(_public(record))
    writer.close()


def _write_changes(changes: list[dict[str, Any]], fmt: str, out: IO[str]) -> None:
    if fmt == "table":
        rows = ([_local(c["time"]), printable(c["host"]), c["old"] or "-", c["new"],
                 printable(c["detail"] or "")] for c in changes)
        out.write(render_table(("TIME", "HOST", "FROM", "TO", "DETAIL"), rows) + "\n")
        return
    writer = RecordWriter(out, fmt, ("time", "host", "old", "new", "detail"))
    for change in changes:
        writer.write(_public(change))
    writer.close()


if __name__ == "__main__":  # pragma: no cover
    from ..cli import main

    sys.exit(main(["watch", *sys.argv[1:]]))
