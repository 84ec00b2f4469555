"""The SMB server behind ``smbsessions serve``: the control side of the asyncio shell.

``SessionServer`` owns the listening socket, the event-loop thread, the live
session table and the accounts; ``listener.SmbProtocol`` runs each connection
around the sans-I/O core (``smb2``), and ``limits`` holds the numbers and the
admission decisions an exposed server needs:

* NetBIOS frames capped (``nbss.MAX_MESSAGE``) before anything is buffered;
  a frame, once begun, must be complete within ``FRAME_TIMEOUT``;
* a connection must log on within ``preauth_timeout``; idle connections end
  after ``idle_timeout`` (null sessions after ``NULL_IDLE_TIMEOUT``);
* connections capped overall; connections without an authenticated session
  may use only part of the slots (the rest are kept for authenticated
  sessions) and only ``max_per_address`` of them per source address: when a
  new connection needs a place, the oldest unauthenticated one (from that
  address, or overall) is evicted;
* pipes capped per connection and server-wide; a client that does not read
  its replies stops being read;
* unread pipe output (answers queued for the client) capped per connection
  and server-wide: a write whose answer does not fit is refused;
* RLIMIT_NOFILE raised to its hard limit and ``max_connections`` lowered to
  fit below it (``limits.connection_cap``), so the kept slots and evictions
  apply before EMFILE; asyncio's accept loop backs off on EMFILE by itself.

Thread-safe: ``snapshot``, ``disconnect`` and ``stop`` may be called from
any thread (the srvsvc endpoint calls the first two from the loop thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from smbsessions.levels import SessionInfo
from smbsessions.server.accounts import Account, parse_account
from smbsessions.server.limits import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_PER_ACCOUNT,
    DEFAULT_MAX_PER_ADDRESS,
    DEFAULT_MAX_UNREAD_PER_CONNECTION,
    DEFAULT_MAX_UNREAD_SERVER,
    DEFAULT_PREAUTH_TIMEOUT,
    FRAME_TIMEOUT,
    NULL_IDLE_TIMEOUT,
    STOP_TIMEOUT,
    SWEEP_INTERVAL,
    Budget,
    Timeouts,
    connection_cap,
    evictions,
    raise_nofile_limit,
)
from smbsessions.server.listener import SmbProtocol, listen
from smbsessions.server.logfmt import escape
from smbsessions.server.sessions import SessionTable
from smbsessions.server.smb2.connection import CoreConfig
from smbsessions.server.types import PipeFactory, ServerControl, SessionKey
from smbsessions.srvsvc_levels import ServerIdentity, decoy_share

LOG = logging.getLogger("smbsessions.server")



class Share:
    """Kept so old callers get a clear refusal: ``serve`` serves no files."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise ValueError(FILE_SHARES_REFUSED)


FILE_SHARES_REFUSED = ("smbsessions serve has no file shares (IPC$ and \\PIPE\\srvsvc only); "
                       "use Samba or impacket-smbserver to serve files")


class SessionServer(ServerControl):
    """An SMB 2/3 server whose session list is real, with an in-process srvsvc pipe."""

    def __init__(
        self,
        bind: str = "127.0.0.1",
        port: int = 445,
        *,
        accounts: Sequence[Account] = (),
        domain: str = "WORKGROUP",
        server_name: str = "SMBSESSIONS",
        comment: str = "",
        decoy_shares: Sequence[str] = (),
        pipe_factory: PipeFactory | None = None,
        decoys: Sequence[SessionInfo] = (),
        allow_anonymous: bool = True,
        require_encryption: bool = False,
        require_signing: bool = False,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        preauth_timeout: float = DEFAULT_PREAUTH_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_per_address: int = DEFAULT_MAX_PER_ADDRESS,
        max_per_account: int = DEFAULT_MAX_PER_ACCOUNT,
        frame_timeout: float = FRAME_TIMEOUT,
        null_idle_timeout: float = NULL_IDLE_TIMEOUT,
        max_unread_per_connection: int = DEFAULT_MAX_UNREAD_PER_CONNECTION,
        max_unread_server: int = DEFAULT_MAX_UNREAD_SERVER,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        names = [a.user.lower() for a in accounts]
        if len(set(names)) != len(names):
            raise ValueError("duplicate account name")
        self._accounts = {a.user.lower(): a for a in accounts}
        self._identity = ServerIdentity(name=server_name, domain=domain, comment=comment,
                                       decoy_shares=tuple(decoy_share(s) for s in decoy_shares))
        self.core_config = CoreConfig(
            server_name=server_name, domain=domain, lookup_nt_hash=self.lookup_nt_hash,
            is_admin=self.is_admin, pipe_factory=pipe_factory, allow_anonymous=allow_anonymous,
            may_logon=self._may_logon,
            require_encryption=require_encryption, require_signing=require_signing,
            max_unread_per_connection=max_unread_per_connection,
            unread_budget=Budget(max_unread_server),
        )
        self.timeouts = Timeouts.clamped(idle=idle_timeout, null_idle=null_idle_timeout,
                                         preauth=preauth_timeout, frame=frame_timeout)
        self._max_per_account = max_per_account
        self._max_connections = max_connections
        self._max_per_address = max_per_address
        # Slots only authenticated connections may fill: a flood of unauthenticated ones
        # leaves room for an administrator.
        self._reserved = max_connections // 8
        self.table = SessionTable(decoys)
        self._lock = threading.Lock()
        self._connections: dict[str, SmbProtocol] = {}
        self._retired: Counter[str] = Counter()
        self._ids = itertools.count(1)
        self._stopping = False
        self._stop_requested = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._sock = listen(bind, port)

    @property
    def identity(self) -> ServerIdentity:
        return self._identity

    @property
    def pipe_factory(self) -> PipeFactory | None:
        return self.core_config.pipe_factory

    @pipe_factory.setter
    def pipe_factory(self, factory: PipeFactory | None) -> None:
        self.core_config.pipe_factory = factory

    # Lifecycle -----------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); port 0 at construction picks a free one."""
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Serve in a background thread."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._fit_descriptor_limit(raise_nofile_limit())
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="smbsessions-server",
                                        daemon=True)
        self._thread.start()
        ready.wait(10)

    def _fit_descriptor_limit(self, nofile: int | None) -> None:
        """Lower ``max_connections`` (and the kept slots) to fit under RLIMIT_NOFILE."""
        cap = connection_cap(self._max_connections, nofile)
        if cap < self._max_connections:
            LOG.warning("max_connections lowered from %d to %d to fit the descriptor limit (%d)",
                        self._max_connections, cap, nofile)
            self._max_connections = cap
            self._reserved = cap // 8

    @property
    def max_connections(self) -> int:
        """The connection cap in force (lowered at start to fit RLIMIT_NOFILE)."""
        return self._max_connections

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main(ready))
        finally:
            loop.close()

    async def _main(self, ready: threading.Event) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SmbProtocol(self), sock=self._sock, backlog=128)
        ready.set()
        try:
            while not self._stopping:
                await asyncio.sleep(SWEEP_INTERVAL)
                now = time.monotonic()
                for proto in list(self._connections.values()):
                    proto.check_deadlines(now)
        finally:
            server.close()
            for proto in list(self._connections.values()):
                proto.abort("server stopping")
            await asyncio.sleep(0)

    def serve_forever(self) -> None:
        """Serve in the calling thread until ``request_stop`` (or Ctrl-C), then stop."""
        self.start()
        try:
            while not self._stop_requested.wait(0.5):
                pass
        finally:
            self.stop()

    def request_stop(self) -> None:
        """Ask ``serve_forever`` to return; safe in a signal handler."""
        self._stop_requested.set()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Close the listener and every client connection; join the loop thread."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        self._stop_requested.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                LOG.warning("server thread still running after stop()")
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> SessionServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Admission (listener.ConnectionOwner) ----------------------------------

    def next_connection_id(self) -> str:
        return f"conn-{next(self._ids)}"

    def admit(self, proto: SmbProtocol) -> bool:
        """Whether a new connection may stay; evicts unauthenticated ones to make room."""
        if self._stopping:
            return False
        connections = list(self._connections.values())
        if len(connections) >= self._max_connections:
            LOG.warning("connection from %s refused: %d connections already open",
                        escape(proto.client_address), self._max_connections)
            return False
        waiting = [c for c in connections if c.core is None or not c.core.authenticated]
        for victim, why in evictions(proto.client_address, waiting, max_per_address=self._max_per_address,
                                     max_connections=self._max_connections, reserved=self._reserved):
            self._evict(victim, why)
        with self._lock:
            self._connections[proto.id] = proto
        return True

    def _evict(self, proto: SmbProtocol, why: str) -> None:
        LOG.warning("connection %s from %s evicted: %s", proto.id, escape(proto.client_address), why)
        proto.abort(f"evicted: {why}")
        self.forget(proto)

    def forget(self, proto: SmbProtocol) -> None:
        """A connection has ended (or was refused): it no longer counts."""
        with self._lock:
            self._connections.pop(proto.id, None)

    # ServerControl ------------------------------------------------------

    def snapshot(self) -> list[tuple[SessionKey, SessionInfo]]:
        return self.table.snapshot()

    def disconnect(
        self, keys: Iterable[SessionKey], defer_for: SessionKey | None = None
    ) -> list[SessionKey]:
        live, decoys = self.table.remove(keys)
        with self._lock:
            targets = [(s.key, self._connections.get(s.connection_id)) for s in live]
        loop = self._loop
        for key, proto in targets:
            if proto is None or loop is None:
                continue
            if key == defer_for:
                loop.call_soon_threadsafe(proto.close_after_reply)
            else:
                loop.call_soon_threadsafe(proto.abort, "session deleted by NetrSessionDel")
        return [s.key for s in live] + decoys

    def _may_logon(self, user: str, is_admin: bool) -> bool:
        """A non-admin account holds fewer than ``max_per_account`` sessions (admins: no cap)."""
        if is_admin:
            return True
        name = user.lower()
        held = sum(1 for key, info in self.table.snapshot()
                   if key > 0 and info.username is not None and info.username.lower() == name)
        return held < self._max_per_account

    def lookup_nt_hash(self, user: str) -> bytes | None:
        account = self._accounts.get(user.lower())
        return None if account is None else account.nt_hash

    def is_admin(self, user: str) -> bool:
        account = self._accounts.get(user.lower())
        return bool(account and account.admin)

    def set_decoys(self, decoys: Sequence[SessionInfo]) -> None:
        """Replace the sessions-file decoys (listed after the live sessions)."""
        self.table.set_decoys(decoys)

    def counters(self) -> dict[str, int]:
        """Requests seen ``signed`` (verified), ``encrypted``, refused for ``bad_signature``,
        over every connection so far."""
        with self._lock:
            total = Counter(self._retired)
            live = [p.core for p in self._connections.values() if p.core is not None]
        for core in live:
            total.update(core.counters)
        return dict(total)

    def retire_counters(self, counters: Counter[str]) -> None:
        """Keep a closed connection's counters in the totals."""
        with self._lock:
            self._retired.update(counters)

    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)


def build_server(
    bind: str = "::",
    port: int = 445,
    *,
    accounts: Iterable[Account | str] = (),
    shares: Iterable[object] = (),
    domain: str = "WORKGROUP",
    server_name: str = "SMBSESSIONS",
    comment: str = "",
    decoy_shares: Sequence[str] = (),
    decoys: Sequence[SessionInfo] = (),
    make_pipe_factory: Callable[[ServerControl], PipeFactory] | None = None,
    allow_anonymous: bool = True,
    require_encryption: bool = False,
    require_signing: bool = False,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    preauth_timeout: float = DEFAULT_PREAUTH_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    max_per_address: int = DEFAULT_MAX_PER_ADDRESS,
    max_per_account: int = DEFAULT_MAX_PER_ACCOUNT,
    frame_timeout: float = FRAME_TIMEOUT,
    null_idle_timeout: float = NULL_IDLE_TIMEOUT,
    max_unread_per_connection: int = DEFAULT_MAX_UNREAD_PER_CONNECTION,
    max_unread_server: int = DEFAULT_MAX_UNREAD_SERVER,
) -> SessionServer:
    """The server the CLI runs: accounts as ``USER:PASSWORD[:admin]``.

    ``make_pipe_factory`` receives the server (snapshot, disconnect, identity)
    and returns the factory called on each srvsvc open. ``shares`` must be
    empty (file serving is refused). Raises ``ValueError`` for a bad account,
    ``OSError`` if binding fails.
    """
    if list(shares):
        raise ValueError(FILE_SHARES_REFUSED)
    server = SessionServer(
        bind, port,
        accounts=[a if isinstance(a, Account) else parse_account(a) for a in accounts],
        domain=domain, server_name=server_name, comment=comment, decoy_shares=decoy_shares,
        decoys=decoys, allow_anonymous=allow_anonymous, require_encryption=require_encryption,
        require_signing=require_signing, idle_timeout=idle_timeout, preauth_timeout=preauth_timeout,
        max_connections=max_connections,
        max_per_address=max_per_address, max_per_account=max_per_account, frame_timeout=frame_timeout,
        null_idle_timeout=null_idle_timeout, max_unread_per_connection=max_unread_per_connection,
        max_unread_server=max_unread_server,
    )
    if make_pipe_factory is not None:
        server.pipe_factory = make_pipe_factory(server)
    return server
