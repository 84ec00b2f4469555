"""A private PostgreSQL for the watch tests: initdb in a temp dir, loopback port, torn down after.

Debian's PostgreSQL 15 (``apt-get install postgresql``; ``scripts/install-peers.sh``
installs it) provides ``initdb`` and ``pg_ctl`` under ``/usr/lib/postgresql/15/bin``.
PostgreSQL refuses to run as root, so as root the cluster belongs to the
``postgres`` system user (``runuser``); as anyone else it belongs to them.
The cluster listens on 127.0.0.1 only, on the first free port of
55432-55439 (``SMBSESSIONS_PG_PORTS=lo-hi`` overrides), with ``trust``
authentication for loopback (no password anywhere), and its directory is
removed at the end. Tests skip with the reason when it cannot run.

``PostgresServer.stop()`` / ``start()`` on the same data directory play a
database outage in the middle of a watch.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

DEFAULT_PORTS = range(55432, 55440)
_BIN_GLOBS = ("/usr/lib/postgresql/*/bin",)


def pg_ports() -> range:
    spec = os.environ.get("SMBSESSIONS_PG_PORTS")
    if not spec:
        return DEFAULT_PORTS
    low, _, high = spec.partition("-")
    return range(int(low), int(high or low) + 1)


def find_bindir() -> Path | None:
    """The newest installed PostgreSQL server's bin directory (with initdb and pg_ctl)."""
    candidates = []
    for pattern in _BIN_GLOBS:
        for path in glob.glob(pattern):
            if os.access(os.path.join(path, "initdb"), os.X_OK) and os.access(
                    os.path.join(path, "pg_ctl"), os.X_OK):
                candidates.append(Path(path))

    def version(path: Path) -> float:
        try:
            return float(path.parent.name)
        except ValueError:
            return 0.0

    return max(candidates, key=version) if candidates else None


def _run_as() -> list[str]:
    """argv prefix that runs a command as the cluster's owner."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


def unavailable_reason() -> str | None:
    """Why the private PostgreSQL cannot run here, or None when it can."""
    if find_bindir() is None:
        return "PostgreSQL server binaries not installed (apt-get install postgresql; see scripts/install-peers.sh)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to own the cluster"
        if shutil.which("runuser") is None:
            return "running as root without runuser to start PostgreSQL as 'postgres'"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg 3 is not installed (pip install 'psycopg[binary]')"
    return None


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class PostgresError(RuntimeError):
    pass


class PostgresServer:
    """One private cluster; ``url(db)`` for SQLAlchemy/psycopg, ``create_database`` per test."""

    def __init__(self, port: int) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise PostgresError("no PostgreSQL binaries")
        self.bindir = bindir
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="smbsessions-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "run"
        self.log = self.root / "postgres.log"
        self.running = False
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.root.chmod(0o700)

    def _cmd(self, *argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PGPASSWORD")}
        env["LC_ALL"] = "C"
        result = subprocess.run([*_run_as(), *argv], capture_output=True, text=True, timeout=timeout,
                                env=env, cwd=self.root, check=False)
        if result.returncode != 0:
            raise PostgresError(f"{argv[0]} failed ({result.returncode}): {result.stderr.strip()[-800:]} "
                                f"{self._log_tail()}")
        return result

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "log: " + self.log.read_text(errors="replace")[-800:]
        return ""

    def init(self) -> None:
        self._cmd(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--no-sync", "--locale=C")
        self._cmd("mkdir", "-p", str(self.socket_dir))

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.socket_dir} "
                   "-c fsync=off -c full_page_writes=off -c max_connections=40")
        self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "60", "start", timeout=90)
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: connections are cut, as in an outage)."""
        if not self.running:
            return
        self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop",
                  timeout=90)
        self.running = False

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except PostgresError:
            pass
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def create_database(self, prefix: str = "watch") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with contextlib.suppress(Exception):
            self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_postgres() -> PostgresServer:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"PostgreSQL unavailable: {reason}")
    tried = []
    for port in pg_ports():
        if not _port_free(port):
            tried.append(port)
            continue
        server = PostgresServer(port)
        try:
            server.init()
            server.start()
        except PostgresError:
            server.destroy()
            raise
        # A fresh cluster answers at once; make sure before handing it out.
        end = time.monotonic() + 20
        while True:
            try:
                server.execute("SELECT 1")
                return server
            except Exception:
                if time.monotonic() > end:
                    server.destroy()
                    raise
                time.sleep(0.2)
    pytest.fail(f"no free port for PostgreSQL: {tried} all in use (set SMBSESSIONS_PG_PORTS)")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One private PostgreSQL for the whole test session (skips with the reason if it cannot run)."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def postgres_cluster() -> Iterator[PostgresServer]:
    """A private PostgreSQL of one's own (for tests that stop and restart it)."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.destroy()
