"""``history`` queries: who was connected where, when. Reads the store only (no network).

* by user, client, host (any combination), within a time window
  (``since``/``until``: sessions overlapping it);
* ``at``: sessions open at that moment (started at or before it, not yet seen
  gone by then);
* ``current``: sessions open as of the last successful poll of their host.

A session's end is the first poll that no longer listed it (``end``); it
ended after ``last_seen``, the last poll that did. ``at`` counts a session
until ``end``: between ``last_seen`` and ``end`` it may already be gone.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..addresses import parse_host_port
from ..rules import canonical_client_name
from ..sweep.targets import record_key
from .events import iso_time
from .schema import host_events_table, hosts_table, sessions_table
from .store import Store

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(text: str, now: float | None = None) -> float:
    """A moment: ISO 8601 (``2026-11-30T03:10``, local time unless it names a zone,
    ``Z`` for UTC), ``now``, or a relative age back from now (``90s``, ``15m``,
    ``2h``, ``7d``, ``1w``). Raises ``ValueError`` with what is accepted."""
    now = time.time() if now is None else now
    value = text.strip()
    if value.lower() == "now":
        return now
    match = _RELATIVE.match(value)
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2).lower()]
    try:
        moment = dt.datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (use ISO 8601 such as 2026-11-30T03:10 or 2026-11-30T03:10Z, "
            "'now', or an age such as 90s, 15m, 2h, 7d, 1w)"
        ) from None
    return moment.timestamp()  # naive: local time


def parse_age(text: str) -> float:
    """A duration such as ``90d`` or ``12h`` (``--retain``, ``--prune``) in seconds."""
    match = _RELATIVE.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use 90s, 15m, 12h, 90d, 2w)")
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


@dataclass(frozen=True)
class Query:
    """What ``history`` was asked (None: not restricted)."""

    user: str | None = None
    client: str | None = None
    host: str | None = None
    since: float | None = None
    until: float | None = None
    at: float | None = None
    current: bool = False
    limit: int | None = None


SESSION_COLUMNS: tuple[str, ...] = (
    "host", "client", "user", "start", "start_exact", "last_seen", "end", "state", "duration",
    "alert", "level", "as_of", "session_id",
)


def host_condition(column: Any, text: str) -> Any:
    """``HOST:PORT`` matches that host key; ``HOST`` alone matches it on any port."""
    host, port = parse_host_port(text)
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        host = host.lower().rstrip(".")  # as targets keep names
    if port:
        return column == record_key(host, port)
    prefix = record_key(host, 1)[:-1]  # "host:" or "[v6]:"
    return column.startswith(prefix, autoescape=True)


def build_query(query: Query) -> Any:
    """The SELECT for ``query`` (sessions joined with their host's last successful poll)."""
    s = sessions_table
    statement = (
        sa.select(s, hosts_table.c.last_ok, hosts_table.c.status.label("host_status"))
        .select_from(s.outerjoin(hosts_table, hosts_table.c.host == s.c.host))
    )
    if query.user is not None:
        statement = statement.where(sa.func.lower(s.c.user_name) == query.user.lower())
    if query.client is not None:
        statement = statement.where(
            sa.func.lower(s.c.client) == canonical_client_name(query.client).lower()
        )
    if query.host is not None:
        statement = statement.where(host_condition(s.c.host, query.host))
    if query.current:
        statement = statement.where(s.c.end_time.is_(None))
    if query.at is not None:
        statement = statement.where(s.c.start_time <= query.at).where(
            sa.or_(s.c.end_time.is_(None), s.c.end_time > query.at)
        )
    if query.since is not None:
        statement = statement.where(sa.or_(s.c.end_time.is_(None), s.c.end_time >= query.since))
    if query.until is not None:
        statement = statement.where(s.c.start_time <= query.until)
    statement = statement.order_by(s.c.start_time, s.c.host, s.c.id)
    if query.limit is not None:
        statement = statement.limit(query.limit)
    return statement


def sessions(store: Store, query: Query, now: float | None = None) -> Iterator[dict[str, Any]]:
    """The sessions ``query`` selects, oldest first, as output records (``SESSION_COLUMNS``)."""
    now = time.time() if now is None else now
    with store.connection() as conn:
        rows = conn.execute(build_query(query)).mappings().all()
    for row in rows:
        yield session_record(row, now)


def session_record(row: Any, now: float) -> dict[str, Any]:
    end = row["end_time"]
    as_of = row["last_ok"] if end is None else None
    until = end if end is not None else (as_of if as_of is not None else now)
    return {
        "host": row["host"],
        "client": row["client"],
        "user": row["user_name"],
        "start": iso_time(row["start_time"]),
        "start_exact": bool(row["start_exact"]),
        "last_seen": iso_time(row["last_seen"] if end is not None else row["last_ok"]),
        "end": iso_time(end),
        "state": "open" if end is None else "ended",
        "duration": round(max(0.0, until - row["start_time"]), 3),
        "alert": bool(row["alert"]),
        "level": row["level"],
        "as_of": iso_time(as_of),
        "session_id": row["id"],
        # raw numbers for the plot and tests (not printed)
        "_start": row["start_time"],
        "_end": end,
        "_until": until,
    }


def host_changes(store: Store, host: str | None = None, since: float | None = None,
                 until: float | None = None) -> list[dict[str, Any]]:
    """Host-status changes (the gaps), oldest first."""
    t = host_events_table
    statement = sa.select(t).order_by(t.c.time, t.c.id)
    if host is not None:
        statement = statement.where(host_condition(t.c.host, host))
    if since is not None:
        statement = statement.where(t.c.time >= since)
    if until is not None:
        statement = statement.where(t.c.time <= until)
    with store.connection() as conn:
        rows = conn.execute(statement).mappings().all()
    return [
        {"time": iso_time(r["time"]), "host": r["host"], "old": r["old_status"], "new": r["new_status"],
         "detail": r["detail"], "_time": r["time"]}
        for r in rows
    ]


def prune(store: Store, older_than: float, now: float | None = None) -> tuple[int, int]:
    """``--prune AGE``: remove ended sessions and host-status rows older than AGE."""
    now = time.time() if now is None else now
    return store.prune(now - older_than)
