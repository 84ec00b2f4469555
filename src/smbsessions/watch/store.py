"""The history store: SQLAlchemy Core over SQLite (default) or PostgreSQL (psycopg 3).

The tables and their migrations are declared in ``schema``; this module opens
the store, upgrades it and writes and reads it.

Two watchers on one store **coordinate by host**: each host has at most one
watcher (a lease, renewed with every round's write). A watcher whose targets
overlap a live watcher's is refused at start, naming the hosts; one with
disjoint targets shares the store (a team's several watchers writing to one
PostgreSQL). A lease is free when its watcher stopped cleanly, when its
heartbeat is older than the lease time, or at once when it ran on this
machine and its process is gone (a restart after ``kill -9``).

Storage grows with changes, never with polls. Times are seconds since the
epoch (UTC) in double precision.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import URL, make_url

from .diffing import HostState, TrackedSession
from .pending import PendingWrites
from .schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    host_events_table,
    hosts_table,
    meta_table,
    metadata,
    sessions_table,
    watchers_table,
)


class StoreError(Exception):
    """The store cannot be used at all (bad URL, newer schema, ...): a fatal, clear message."""


class StoreUnavailable(StoreError):
    """The store did not answer or refused a write for now (stopped, locked, disk full)."""


class LeaseError(StoreError):
    """Another live watcher polls some of our hosts (at start), or took them over (later)."""


# --------------------------------------------------------------------------- locations


def default_db_path() -> Path:
    """``$XDG_DATA_HOME/smbsessions/history.sqlite`` (``~/.local/share`` without XDG_DATA_HOME)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "smbsessions" / "history.sqlite"


def store_url(text: str | None) -> URL:
    """A ``--db`` value as a SQLAlchemy URL.

    A path or ``sqlite:///path`` is SQLite; ``postgresql://user@host:port/db``
    (or ``postgres://``) is PostgreSQL through psycopg 3. None: the default
    SQLite file.
    """
    if not text:
        return make_url(f"sqlite:///{default_db_path()}")
    if "://" not in text:
        return make_url(f"sqlite:///{Path(text).expanduser().absolute()}")
    try:
        url = make_url(text)
    except sa.exc.ArgumentError as exc:
        raise StoreError(f"not a database URL: {exc}") from None
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if url.database in (None, "", ":memory:"):
            raise StoreError("an in-memory SQLite store would forget everything: give a file")
        return url.set(drivername="sqlite")
    raise StoreError(f"unsupported database {backend!r}: use a SQLite path or postgresql://")


def display_url(url: URL) -> str:
    """The URL without its password (for messages)."""
    if url.get_backend_name() == "sqlite":
        return str(url.database)
    return url.render_as_string(hide_password=True)


def _prepare_sqlite_file(path: str) -> None:
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not file.exists():
        # Session history names people: readable by its owner only.
        os.close(os.open(file, os.O_CREAT | os.O_WRONLY, 0o600))


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _reason(exc: BaseException) -> str:
    """The database's own words, first line only (no SQL, no parameters)."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


# --------------------------------------------------------------------------- the store


class Store:
    """One history store. ``open`` connects and upgrades the schema."""

    def __init__(self, engine: Engine, url: URL) -> None:
        self.engine = engine
        self.url = url
        self.watcher_id: str | None = None
        """Set by ``claim``: our lease; every write renews it."""
        self.found_version: int | None = None
        """The schema version ``open`` found (0: the store was empty and has just been created)."""

    @property
    def display(self) -> str:
        return display_url(self.url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @classmethod
    def open(cls, text: str | None, *, busy_timeout: float = 5.0, upgrade: bool = True,
             create: bool = True) -> Store:
        """Connect to ``--db`` (see ``store_url``); raises ``StoreError`` / ``StoreUnavailable``.

        ``create=False``: a SQLite file that does not exist is an error (history
        must not leave empty stores behind).
        """
        url = store_url(text)
        if url.get_backend_name() == "sqlite":
            assert url.database is not None
            if not create and not Path(url.database).exists():
                raise StoreError(f"no store at {url.database} (run 'smbsessions watch' first, or give --db)")
            try:
                _prepare_sqlite_file(url.database)
            except OSError as exc:
                raise StoreUnavailable(f"cannot create {url.database}: {exc.strerror}") from None
            engine = sa.create_engine(url, connect_args={"timeout": busy_timeout})
            event.listen(engine, "connect", _sqlite_on_connect)
        else:
            try:
                import psycopg  # noqa: F401
            except ImportError:
                raise StoreError("PostgreSQL needs psycopg 3: pip install 'psycopg[binary]'") from None
            engine = sa.create_engine(
                url, pool_pre_ping=True, pool_size=2, max_overflow=2,
                connect_args={"connect_timeout": max(1, int(busy_timeout)),
                              "application_name": "smbsessions"},
            )
        store = cls(engine, url)
        if upgrade:
            try:
                store.found_version = store.upgrade()
            except StoreError as exc:
                if "already exists" not in str(exc):
                    raise
                # Another process created the schema at the same moment (SQLite runs DDL
                # outside our transaction): it is there now.
                time.sleep(0.5)
                store.found_version = store.upgrade()
        return store

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _begin(self, action: str) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise StoreUnavailable(f"cannot {action} {self.display}: {_reason(exc)}") from None
        except sa.exc.DBAPIError as exc:
            raise StoreError(f"cannot {action} {self.display}: {_reason(exc)}") from None

    # ------------------------------------------------------------------ schema

    def schema_version(self) -> int | None:
        """The store's schema version (None: an empty database)."""
        with self._begin("read") as conn:
            if not sa.inspect(conn).has_table(meta_table.name):
                return None
            value = conn.execute(
                sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            ).scalar_one_or_none()
        return None if value is None else int(value)

    def _current_version(self) -> int | None:
        """The stored version read directly (one query, no catalog lookups); None if unreadable."""
        try:
            with self.engine.connect() as conn:
                value = conn.execute(
                    sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
                ).scalar_one_or_none()
        except (sa.exc.ProgrammingError, sa.exc.OperationalError):
            return None  # no such table yet, or not reachable: the full path says which
        return None if value is None else int(value)

    def upgrade(self) -> int:
        """Create or upgrade the schema to ``SCHEMA_VERSION``; returns the version found before (0: new)."""
        if self._current_version() == SCHEMA_VERSION:
            return SCHEMA_VERSION  # the usual case: no lock, no catalog queries
        with self._begin("set up") as conn:
            if self.dialect == "postgresql":
                # Two watchers starting together must not both create or upgrade.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7263401)"))
            found = 0
            if sa.inspect(conn).has_table(meta_table.name):
                value = conn.execute(
                    sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
                ).scalar_one_or_none()
                found = int(value) if value is not None else 0
            if found > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.display} has schema version {found}, newer than this smbsessions "
                    f"understands ({SCHEMA_VERSION}): upgrade smbsessions"
                )
            if found == 0:
                metadata.create_all(conn)
                conn.execute(sa.insert(meta_table).values(key="schema_version", value=str(SCHEMA_VERSION)))
                return 0
            for version in range(found, SCHEMA_VERSION):
                MIGRATIONS[version](conn)
            if found != SCHEMA_VERSION:
                conn.execute(
                    sa.update(meta_table).where(meta_table.c.key == "schema_version")
                    .values(value=str(SCHEMA_VERSION))
                )
            return found

    # ------------------------------------------------------------------ reading state

    def load(self, hosts: Iterable[str] | None = None) -> tuple[list[HostState], list[TrackedSession]]:
        """Host states and open sessions (of ``hosts``, or all) to resume tracking from."""
        wanted = None if hosts is None else set(hosts)
        states: list[HostState] = []
        sessions: list[TrackedSession] = []
        with self._begin("read") as conn:
            for row in conn.execute(sa.select(hosts_table)).mappings():
                if wanted is not None and row["host"] not in wanted:
                    continue
                states.append(HostState(
                    host=row["host"], status=row["status"], status_since=row["status_since"],
                    last_poll=row["last_poll"], last_ok=row["last_ok"],
                    last_ok_elapsed=row["last_ok_elapsed"] or 0.0, level=row["level"],
                ))
            query = sa.select(sessions_table).where(sessions_table.c.end_time.is_(None))
            for row in conn.execute(query).mappings():
                if wanted is not None and row["host"] not in wanted:
                    continue
                sessions.append(TrackedSession(
                    id=row["id"], host=row["host"], client=row["client"], user=row["user_name"],
                    start=row["start_time"], start_exact=bool(row["start_exact"]),
                    first_seen=row["first_seen"], level=row["level"], alert=bool(row["alert"]),
                ))
        return states, sessions

    # ------------------------------------------------------------------ writing

    def write(self, pending: PendingWrites) -> int:
        """Write everything pending in one transaction, then clear it; returns the rows written.

        Raises ``StoreUnavailable`` (nothing written, ``pending`` kept) when the
        store cannot take it now.
        """
        if pending.empty:
            return 0
        rows = 0
        with self._begin("write to") as conn:
            if self.watcher_id is not None:
                self._renew(conn)
            if pending.logons:
                conn.execute(self._insert_ignore(sessions_table, "id"), list(pending.logons.values()))
                rows += len(pending.logons)
            if pending.logoffs:
                conn.execute(
                    sa.update(sessions_table)
                    .where(sessions_table.c.id == sa.bindparam("b_id"))
                    .where(sessions_table.c.end_time.is_(None))
                    .values(end_time=sa.bindparam("b_end"), last_seen=sa.bindparam("b_seen")),
                    [{"b_id": r["id"], "b_end": r["end_time"], "b_seen": r["last_seen"]}
                     for r in pending.logoffs.values()],
                )
                rows += len(pending.logoffs)
            if pending.status_changes:
                conn.execute(sa.insert(host_events_table), pending.status_changes)
                rows += len(pending.status_changes)
            if pending.hosts:
                conn.execute(self._upsert_hosts(),
                             [_host_row(s, self.watcher_id) for s in pending.hosts.values()])
                rows += len(pending.hosts)
        pending.clear()
        return rows

    def _insert_ignore(self, table: sa.Table, key: str) -> Any:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(table).on_conflict_do_nothing(index_elements=[key])
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table).on_conflict_do_nothing(index_elements=[key])

    def _upsert_hosts(self) -> Any:
        statement: Any
        if self.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            statement = postgresql.insert(hosts_table)
        else:
            from sqlalchemy.dialects import sqlite

            statement = sqlite.insert(hosts_table)
        columns = [c.name for c in hosts_table.columns if c.name != "host"]
        return statement.on_conflict_do_update(
            index_elements=["host"], set_={name: statement.excluded[name] for name in columns}
        )

    # ------------------------------------------------------------------ leases

    def claim(self, hosts: Iterable[str], *, lease: float, now: float | None = None,
              watcher_id: str | None = None) -> str:
        """Become the one watcher of ``hosts`` (see the module doc); returns our watcher id.

        Raises ``LeaseError`` naming the hosts another live watcher holds
        (nothing is claimed then).
        """
        now = time.time() if now is None else now
        me = watcher_id or uuid.uuid4().hex
        machine = socket.gethostname()
        wanted = sorted(set(hosts))
        with self._begin("claim hosts in") as conn:
            # A write first: SQLite then holds the write lock for the whole check.
            conn.execute(sa.insert(watchers_table).values(
                id=me, machine=machine, pid=os.getpid(), started=now, heartbeat=now, lease=lease,
                targets=len(wanted)))
            others = conn.execute(sa.select(watchers_table).where(watchers_table.c.id != me)).mappings().all()
            stale = [row["id"] for row in others if _stale(row, now, machine)]
            live = {row["id"]: row for row in others if row["id"] not in stale}
            if stale:
                conn.execute(sa.delete(watchers_table).where(watchers_table.c.id.in_(stale)))
            conn.execute(self._insert_ignore(hosts_table, "host"), [{"host": h, "last_ok_elapsed": 0.0,
                                                                     "session_count": 0} for h in wanted])
            taken: list[tuple[str, str]] = []
            for chunk in _chunks(wanted, 500):
                conn.execute(
                    sa.update(hosts_table).where(hosts_table.c.host.in_(chunk))
                    .where(sa.or_(hosts_table.c.watcher.is_(None), hosts_table.c.watcher.not_in(list(live))))
                    .values(watcher=me)
                )
                taken += [(r.host, r.watcher) for r in conn.execute(
                    sa.select(hosts_table.c.host, hosts_table.c.watcher)
                    .where(hosts_table.c.host.in_(chunk)).where(hosts_table.c.watcher != me))]
            if taken:
                owner = live.get(taken[0][1])
                who = (f"watcher {taken[0][1][:8]} (pid {owner['pid']} on {owner['machine']}, last seen "
                       f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(owner['heartbeat']))})"
                       if owner else "another watcher")
                names = ", ".join(h for h, _ in taken[:5])
                if len(taken) > 5:
                    names += f" and {len(taken) - 5} more"
                raise LeaseError(f"{len(taken)} target(s) are already watched by {who} in {self.display}: "
                                 f"{names}. Two watchers on one store need disjoint targets; stop the other "
                                 "one or wait for its lease to expire")
        self.watcher_id = me
        return me

    def _renew(self, conn: Connection) -> None:
        renewed = conn.execute(
            sa.update(watchers_table).where(watchers_table.c.id == self.watcher_id)
            .values(heartbeat=time.time())
        ).rowcount
        if not renewed:
            raise LeaseError(f"our lease in {self.display} was taken over by another watcher while the store "
                             "did not answer: stopping rather than writing over its records")

    def release(self) -> None:
        """Give our hosts back (a clean stop); a later watcher takes them at once."""
        if self.watcher_id is None:
            return
        me, self.watcher_id = self.watcher_id, None
        with self._begin("release hosts in") as conn:
            conn.execute(sa.update(hosts_table).where(hosts_table.c.watcher == me).values(watcher=None))
            conn.execute(sa.delete(watchers_table).where(watchers_table.c.id == me))

    def prune(self, before: float) -> tuple[int, int]:
        """Delete sessions that ended and host-status rows older than ``before``; returns the counts.

        Open sessions are never pruned, however old.
        """
        with self._begin("prune") as conn:
            sessions = conn.execute(
                sa.delete(sessions_table).where(sessions_table.c.end_time < before)
            ).rowcount
            changes = conn.execute(
                sa.delete(host_events_table).where(host_events_table.c.time < before)
            ).rowcount
        return int(sessions or 0), int(changes or 0)

    def connection(self) -> Any:
        """A read-only use of the store (history): ``with store.connection() as conn``."""
        return self._begin("read")


def _stale(row: Any, now: float, machine: str) -> bool:
    """A watcher whose lease ran out, or that ran here and whose process is gone."""
    if row["heartbeat"] + row["lease"] < now:
        return True
    if row["machine"] == machine and row["pid"] != os.getpid():
        try:
            os.kill(int(row["pid"]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return False


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _host_row(state: HostState, watcher: str | None) -> dict[str, Any]:
    return {
        "watcher": watcher,
        "host": state.host,
        "status": state.status,
        "status_since": state.status_since,
        "last_poll": state.last_poll,
        "last_ok": state.last_ok,
        "last_ok_elapsed": state.last_ok_elapsed,
        "level": state.level,
        "session_count": state.session_count,
    }
