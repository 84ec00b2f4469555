"""``smbsessions history``: query the watch store from parsed arguments and write the
answer (table, JSON, JSON Lines, CSV, or a plot). The parser is in ``cli``.

The database and plotting libraries are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import time
from typing import IO, Any

from ..cli_args import UsageError
from ..exitcodes import ExitCode
from ..output import RecordWriter, printable, render_table

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
        return ExitCode.STORE_UNAVAILABLE
    try:
        if prune_age is not None:
            sessions, changes = history.prune(store, prune_age, now)
            err.write(f"pruned: {sessions} ended session(s) and {changes} host-status row(s) older than "
                      f"{args.prune} from {store.display}\n")
            return ExitCode.OK
        if store.found_version == 0:
            err.write(f"smbsessions history: {store.display} holds no watch history\n")
            return ExitCode.STORE_UNAVAILABLE
        if args.host_status:
            changes_list = history.host_changes(store, args.host, query.since, query.until)
            _write_changes(changes_list, args.format, out)
            return ExitCode.OK
        records = list(history.sessions(store, query, now))
        plot_changes = (history.host_changes(store, args.host, query.since, query.until)
                        if args.plot and args.plot_by == "host" else [])
    except StoreError as exc:
        err.write(f"smbsessions history: {exc}\n")
        return ExitCode.STORE_UNAVAILABLE
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
