"""The history store's schema: SQLAlchemy Core tables and the migrations between versions.

Tables (names prefixed ``watch_`` so a shared PostgreSQL database can hold
other things):

* ``watch_meta``: ``schema_version`` (the schema upgrades itself, see
  ``MIGRATIONS``).
* ``watch_hosts``: one row per host, updated at most once per round: status,
  since when, last poll, last successful poll.
* ``watch_sessions``: one row per session, written when it starts and updated
  once when it ends; steady sessions cost nothing per round.
* ``watch_host_events``: one row per host-status change (the gaps).
* ``watch_watchers`` (since version 2): the running watchers and their
  heartbeat; ``watch_hosts.watcher`` says which one polls each host.

Times are seconds since the epoch (UTC) in double precision.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy import Connection

SCHEMA_VERSION = 2

metadata = sa.MetaData()

meta_table = sa.Table(
    "watch_meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

hosts_table = sa.Table(
    "watch_hosts", metadata,
    sa.Column("host", sa.Text, primary_key=True),
    sa.Column("status", sa.Text),
    sa.Column("status_since", sa.Double),
    sa.Column("last_poll", sa.Double),
    sa.Column("last_ok", sa.Double),
    sa.Column("last_ok_elapsed", sa.Double, nullable=False, default=0.0),
    sa.Column("level", sa.Integer),
    sa.Column("session_count", sa.Integer, nullable=False, default=0),
)

sessions_table = sa.Table(
    "watch_sessions", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("client", sa.Text, nullable=False),
    sa.Column("user_name", sa.Text),
    sa.Column("start_time", sa.Double, nullable=False),
    sa.Column("start_exact", sa.Boolean, nullable=False),
    sa.Column("first_seen", sa.Double, nullable=False),
    sa.Column("last_seen", sa.Double),
    sa.Column("end_time", sa.Double),
    sa.Column("level", sa.Integer),
    sa.Column("alert", sa.Boolean, nullable=False, default=False),
)
sa.Index("ix_watch_sessions_user", sa.func.lower(sessions_table.c.user_name), sessions_table.c.start_time)
sa.Index("ix_watch_sessions_client", sa.func.lower(sessions_table.c.client), sessions_table.c.start_time)
sa.Index("ix_watch_sessions_host", sessions_table.c.host, sessions_table.c.start_time)
sa.Index("ix_watch_sessions_start", sessions_table.c.start_time)
sa.Index("ix_watch_sessions_end", sessions_table.c.end_time)

host_events_table = sa.Table(
    "watch_host_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("time", sa.Double, nullable=False),
    sa.Column("old_status", sa.Text),
    sa.Column("new_status", sa.Text, nullable=False),
    sa.Column("detail", sa.Text),
)
sa.Index("ix_watch_host_events_host", host_events_table.c.host, host_events_table.c.time)
sa.Index("ix_watch_host_events_time", host_events_table.c.time)

watchers_table = sa.Table(
    "watch_watchers", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("machine", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started", sa.Double, nullable=False),
    sa.Column("heartbeat", sa.Double, nullable=False),
    sa.Column("lease", sa.Double, nullable=False),
    sa.Column("targets", sa.Integer, nullable=False),
)
hosts_table.append_column(sa.Column("watcher", sa.String(32)))


def _upgrade_1_to_2(conn: Connection) -> None:
    """Version 2: watchers and their leases on hosts."""
    watchers_table.create(conn, checkfirst=True)
    conn.execute(sa.text("ALTER TABLE watch_hosts ADD COLUMN watcher VARCHAR(32)"))


MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _upgrade_1_to_2}
"""``MIGRATIONS[n]`` upgrades a version-``n`` store to version ``n + 1`` (in one transaction)."""
