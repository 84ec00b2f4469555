"""``smbsessions watch`` / ``history`` against real peers, with SQLite and PostgreSQL stores.

Hosts (all on loopback, started here):

* our server (in-process, ``ourserver.running_server``) with three static decoys, and live
  sessions held and released between rounds from their own 127.0.42.x addresses;
* a second server of ours run as ``smbsessions serve`` with a sessions file, restarted halfway
  with its account no longer an administrator (it starts denying), then restored;
* a private Samba smbd (``samba_factory``) with a session held from 127.0.43.2;
* a silent host: accepts TCP connections and never answers.

Every store-facing test runs once per backend (``store_db``): SQLite always, PostgreSQL when
the private cluster of ``postgres.py`` can run (else that half skips with the reason).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from smbsessions.auth import Credentials
from smbsessions.cli import main
from smbsessions.client import SessionClient
from smbsessions.sweep.runner import SweepConfig
from smbsessions.sweep.targets import Target
from smbsessions.watch import history
from smbsessions.watch.events import HOST_STATUS, LOGOFF, LOGON, Event, HostStatusEvent, SessionEvent
from smbsessions.watch.store import Store, display_url, store_url
from smbsessions.watch.watcher import Watcher

from ..peers.holders import SessionHolder
from ..peers.ourserver import ADMIN, USER, decoy_sessions, running_server, write_sessions_file
from ..peers.postgres import PostgresServer, postgres_server  # noqa: F401 - the fixture
from ..peers.samba import SambaServer
from .conftest import interop_ports

ALICE = Credentials(username=ADMIN[0], password=ADMIN[1])
BOB = (USER[0], USER[1])
OURS_ADDR = "127.0.41.1"
DENIER_ADDR = "127.0.41.2"
SILENT_ADDR = "127.0.41.9"
RUN_TIMEOUT = 120


# --------------------------------------------------------------------------- stores


@pytest.fixture(params=["sqlite", "postgresql"])
def store_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store URL of each backend."""
    if request.param == "sqlite":
        yield str(tmp_path / "history.sqlite")
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.create_database()
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


# --------------------------------------------------------------------------- hosts


class SilentHost:
    """Accepts connections and never sends a byte."""

    def __init__(self, address: str, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.address, self.port = address, port
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)

    @property
    def key(self) -> str:
        return f"{self.address}:{self.port}"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for conn in [*self._conns, self.sock]:
            with contextlib.suppress(OSError):
                conn.close()


def _bind_port(address: str) -> int:
    for port in interop_ports():
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except OSError:
                continue
            return port
    pytest.fail(f"no free interop port on {address} in {interop_ports()}")


@pytest.fixture
def silent_host() -> Iterator[SilentHost]:
    host = SilentHost(SILENT_ADDR, _bind_port(SILENT_ADDR))
    try:
        yield host
    finally:
        host.close()


class ServeProcess:
    """``smbsessions serve`` in a child process, restartable with other accounts."""

    def __init__(self, workdir: Path, address: str, port: int, decoys_file: Path) -> None:
        self.workdir, self.address, self.port, self.decoys_file = workdir, address, port, decoys_file
        self.process: subprocess.Popen[str] | None = None

    @property
    def key(self) -> str:
        return f"{self.address}:{self.port}"

    def start(self, admin: bool) -> None:
        accounts = self.workdir / "accounts.txt"
        accounts.write_text(f"{ADMIN[0]}:{ADMIN[1]}{':admin' if admin else ''}\n")
        accounts.chmod(0o600)
        argv = [sys.executable, "-c", "import sys; from smbsessions.cli import main; sys.exit(main())",
                "serve", "--bind", self.address, "--port", str(self.port), "--accounts-file", str(accounts),
                "--sessions-file", str(self.decoys_file), "--quiet"]
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "listening on" not in line:
            self.stop()
            pytest.fail(f"smbsessions serve did not start: {line!r}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        self.process = None

    def restart(self, admin: bool) -> None:
        self.stop()
        deadline = time.monotonic() + 10
        while True:  # the listener may take a moment to free the port
            try:
                self.start(admin)
                return
            except BaseException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


@pytest.fixture
def denier(tmp_path: Path) -> Iterator[ServeProcess]:
    decoys = write_sessions_file(tmp_path / "denier-decoys.json", decoy_sessions(2, start=500))
    server = ServeProcess(tmp_path, DENIER_ADDR, _bind_port(DENIER_ADDR), decoys)
    server.start(admin=True)
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- helpers


def watcher_for(db: str, targets: Sequence[str], events: list[Event], **kw: Any) -> Watcher:
    store = Store.open(db)
    parsed = []
    for text in targets:
        host, _, port = text.rpartition(":")
        parsed.append(Target(host, int(port)))
    config = SweepConfig(ALICE, timeout=kw.pop("timeout", 1.5), margin=0.5)
    watcher = Watcher(store, parsed, config, concurrency=8, processes=1, on_event=events.append, **kw)
    watcher.start()
    return watcher


def summary(events: Sequence[Event]) -> list[tuple[str, str, str]]:
    """(kind, host, detail) sorted: detail is 'user@client' or 'old->new'."""
    rows = []
    for event in events:
        if isinstance(event, HostStatusEvent):
            rows.append((HOST_STATUS, event.host, f"{event.old}->{event.new}"))
        else:
            rows.append((event.kind, event.host, f"{event.user}@{event.client}"))
    return sorted(rows)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def listed_clients(host: str, port: int) -> list[str]:
    with SessionClient(host, port, credentials=ALICE, timeout=5) as client:
        return [s.client_name or "" for s in client.enum(1)]


def hold(host: str, port: int, user: tuple[str, str], source: str) -> SessionHolder:
    return SessionHolder(host, port, 1, credentials=[user], source_ips=[source]).open()


# --------------------------------------------------------------------------- the main scenario


def test_watch_events_and_history(
    store_db: str, tmp_path: Path, samba_factory: Callable[..., SambaServer], silent_host: SilentHost,
    denier: ServeProcess,
) -> None:
    samba = samba_factory()
    held: list[SessionHolder] = []
    with running_server(tmp_path / "ours", bind=OURS_ADDR, decoys=decoy_sessions(3),
                        ports=interop_ports()) as ours:
        ours_key = f"{OURS_ADDR}:{ours.port}"
        samba_key = f"127.0.0.1:{samba.port}"
        try:
            a = hold(OURS_ADDR, ours.port, BOB, "127.0.42.2")
            b = hold(OURS_ADDR, ours.port, BOB, "127.0.42.3")
            s = hold("127.0.0.1", samba.port, BOB, "127.0.43.2")
            held += [a, b, s]
            events: list[Event] = []
            watcher = watcher_for(store_db, [ours_key, denier.key, samba_key, silent_host.key], events,
                                  alert_users=["BOB"])
            try:
                # ---- round 1: everything is new (initial logons), four first statuses
                watcher.run_round()
                decoys = [(LOGON, ours_key, f"decoy{i:05d}@\\\\10.0.0.{i}") for i in range(3)]
                denier_decoys = [(LOGON, denier.key, f"decoy{i:05d}@\\\\10.0.{i >> 8}.{i & 255}")
                                 for i in (500, 501)]
                assert summary(events) == sorted([
                    (HOST_STATUS, ours_key, "None->ok"), (HOST_STATUS, denier.key, "None->ok"),
                    (HOST_STATUS, samba_key, "None->ok"), (HOST_STATUS, silent_host.key, "None->timeout"),
                    *decoys, *denier_decoys,
                    (LOGON, ours_key, "bob@\\\\127.0.42.2"), (LOGON, ours_key, "bob@\\\\127.0.42.3"),
                    (LOGON, samba_key, "bob@\\\\127.0.43.2"),
                ])
                assert all(e.initial for e in events if isinstance(e, SessionEvent))
                assert {e.alert for e in events if isinstance(e, SessionEvent) and e.user == "bob"} == {True}
                after_round_1 = time.time()
                time.sleep(0.2)

                # ---- round 2: bob leaves ours from .2 and Samba; alice arrives on ours from .4
                events.clear()
                a.close()
                s.close()
                c = hold(OURS_ADDR, ours.port, (ADMIN[0], ADMIN[1]), "127.0.42.4")
                held.append(c)
                wait_for(lambda: "\\\\127.0.43.2" not in listed_clients("127.0.0.1", samba.port),
                         what="Samba to drop the released session")
                ours.wait_live(2)
                # Our own poll session is the youngest of our account: let alice's held one age
                # past that window (the client's own_session mark makes this unnecessary).
                time.sleep(3.2)
                round_2_start = time.time()
                watcher.run_round()
                assert summary(events) == sorted([
                    (LOGOFF, ours_key, "bob@\\\\127.0.42.2"),
                    (LOGON, ours_key, "alice@\\\\127.0.42.4"),
                    (LOGOFF, samba_key, "bob@\\\\127.0.43.2"),
                ])
                logoff = next(e for e in events if e.kind == LOGOFF and e.host == ours_key)
                assert isinstance(logoff, SessionEvent) and logoff.last_seen is not None
                assert logoff.last_seen < round_2_start <= logoff.time

                # ---- round 3: the second server of ours now refuses (account no longer admin)
                events.clear()
                denier.restart(admin=False)
                watcher.run_round()
                assert summary(events) == [(HOST_STATUS, denier.key, "ok->denied")]

                # ---- round 4: restored; its decoys were never closed; bob leaves ours from .3
                events.clear()
                denier.restart(admin=True)
                b.close()
                ours.wait_live(1)
                watcher.run_round()
                assert summary(events) == sorted([
                    (HOST_STATUS, denier.key, "denied->ok"),
                    (LOGOFF, ours_key, "bob@\\\\127.0.42.3"),
                ])
            finally:
                watcher.store.close()
        finally:
            for holder in held:
                holder.close()

    # ---- history answers from the store alone
    store = Store.open(store_db, create=False)
    try:
        def ask(**kw: Any) -> list[tuple[str, str, str]]:
            return sorted((r["host"], r["user"], r["client"]) for r in history.sessions(store, history.Query(**kw)))

        ours_decoys = [(ours_key, f"decoy{i:05d}", f"\\\\10.0.0.{i}") for i in range(3)]
        denier_sessions = [(denier.key, f"decoy{i:05d}", f"\\\\10.0.{i >> 8}.{i & 255}") for i in (500, 501)]
        bobs_ours = [(ours_key, "bob", "\\\\127.0.42.2"), (ours_key, "bob", "\\\\127.0.42.3")]
        bobs = sorted([*bobs_ours, (samba_key, "bob", "\\\\127.0.43.2")])
        alice = (ours_key, "alice", "\\\\127.0.42.4")
        assert ask(user="Bob") == bobs
        assert all(r["state"] == "ended" and r["alert"] for r in history.sessions(store, history.Query(user="bob")))
        assert ask(client="127.0.42.4") == [alice]
        assert ask(host=OURS_ADDR) == sorted([*ours_decoys, *bobs_ours, alice])
        assert ask(current=True) == sorted([*ours_decoys, *denier_sessions, alice])
        assert ask(at=after_round_1) == sorted([*ours_decoys, *denier_sessions, *bobs])
        assert ask(since=round_2_start + 60) == sorted([*ours_decoys, *denier_sessions, alice])
        assert ask(user="alice") == [alice]  # our own poll sessions were never recorded
        changes = [(c["host"], c["old"], c["new"]) for c in history.host_changes(store)]
        assert sorted(changes[:4], key=str) == sorted([
            (ours_key, None, "ok"), (denier.key, None, "ok"), (samba_key, None, "ok"),
            (silent_host.key, None, "timeout")], key=str)
        assert changes[4:] == [(denier.key, "ok", "denied"), (denier.key, "denied", "ok")]
    finally:
        store.close()

    # ---- and through the command line
    out, err = io.StringIO(), io.StringIO()
    assert main(["history", "--db", store_db, "--user", "bob", "--format", "json"], out, err) == 0, err.getvalue()
    assert sorted(r["client"] for r in json.loads(out.getvalue())) == sorted(b[2] for b in bobs)
    out = io.StringIO()
    assert main(["history", "--db", store_db, "--host", denier.key, "--host-status"], out, io.StringIO()) == 0
    assert "denied" in out.getvalue()


# --------------------------------------------------------------------------- the command line


def test_watch_command_rounds_events_file_and_history_plot(store_db: str, tmp_path: Path) -> None:
    with running_server(tmp_path / "ours", bind=OURS_ADDR, decoys=decoy_sessions(2),
                        ports=interop_ports()) as ours:
        key = f"{OURS_ADDR}:{ours.port}"
        events_file = tmp_path / "events.jsonl"
        with hold(OURS_ADDR, ours.port, BOB, "127.0.42.7"):
            out, err = io.StringIO(), io.StringIO()
            code = main(["watch", key, "-U", f"{ADMIN[0]}%{ADMIN[1]}", "--db", store_db, "--rounds", "2",
                         "--interval", "0.5", "--events", str(events_file), "--alert-user", "bob",
                         "--timeout", "5"], out, err)
            assert code == 0, err.getvalue()
    assert f"store {display_url(store_url(store_db))}" in err.getvalue()
    lines = out.getvalue().splitlines()
    assert sum("logon" in line for line in lines) == 3  # two decoys and bob, once each
    assert any(line.startswith("ALERT") and "bob" in line for line in lines)
    records = [json.loads(line) for line in events_file.read_text().splitlines()]
    assert [r["event"] for r in records].count("logon") == 3
    assert [r["event"] for r in records].count("host-status") == 1
    bob = next(r for r in records if r.get("user") == "bob")
    assert bob["alert"] is True and bob["client"] == "\\\\127.0.42.7" and bob["initial"] is True

    plot = tmp_path / "timeline.png"
    err = io.StringIO()
    assert main(["history", "--db", store_db, "--plot", str(plot), "--format", "csv"],
                io.StringIO(), err) == 0, err.getvalue()
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 5000
