"""``smbsessions watch`` and ``smbsessions history``: argument wiring and output.

Registered by ``smbsessions.cli`` (``add_parser``): the two parsers and their help
live here; the commands themselves in ``watch_command`` and ``history_command``.
The database, metrics and plotting libraries are imported only when a command
runs, so ``--help`` and the other commands stay cheap.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..cli_args import add_auth_arguments, level_number, port_number, positive_seconds
from ..exitcodes import ExitCode, exit_codes_text
from ..output import FORMATS
from ..sweep.targets import DEFAULT_PORT
from .history_command import cmd_history
from .watch_command import cmd_watch

EXIT_STORE_UNAVAILABLE = ExitCode.STORE_UNAVAILABLE
"""11: the store could not be opened (watch, history), or another watcher holds our hosts."""
EXIT_STORE_LOST = ExitCode.STORE_LOST
"""12: watch: the store stayed unavailable until waiting writes could no longer be held: some are lost."""


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


if __name__ == "__main__":  # pragma: no cover
    from ..cli import main

    sys.exit(main(["watch", *sys.argv[1:]]))
