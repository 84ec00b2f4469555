"""The SMB server behind ``smbsessions serve``: asyncio sockets around the sans-I/O core.

One event-loop thread serves every connection (``asyncio.Protocol``, no task
per connection, so thousands of idle sessions cost little). Each connection
owns a ``smb2.connection.ServerConnection``; this module only moves frames,
keeps time and enforces the limits an exposed server needs:

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
* RLIMIT_NOFILE raised to its hard limit; asyncio's accept loop backs off on
  EMFILE by itself (one second).

Thread-safe: ``snapshot``, ``disconnect`` and ``stop`` may be called from
any thread (the srvsvc endpoint calls the first two from the loop thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from smbsessions.addresses import bracketed, plain_address
from smbsessions.levels import SessionInfo
from smbsessions.server import nbss
from smbsessions.server.accounts import Account, parse_account
from smbsessions.server.logfmt import escape
from smbsessions.server.sessions import SessionTable
from smbsessions.server.smb2.connection import CoreConfig, ServerConnection, SessionRegistry
from smbsessions.server.smb2.session import SmbSession
from smbsessions.server.types import PipeFactory, ServerControl, SessionKey
from smbsessions.srvsvc_levels import ServerIdentity, decoy_share

LOG = logging.getLogger("smbsessions.server")

DEFAULT_IDLE_TIMEOUT = 15 * 60.0  # Windows' default autodisconnect
NULL_IDLE_TIMEOUT = 60.0  # null sessions and connections that never logged on
DEFAULT_PREAUTH_TIMEOUT = 30.0  # a connection must have logged on by then
DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_MAX_PER_ADDRESS = 64  # connections without an authenticated session, per source address
# Sessions one non-admin account may hold at once: with 64 pipes each, one plain account can
# then neither fill the connection slots nor the server-wide pipe budget (64 x 64 < 8192).
DEFAULT_MAX_PER_ACCOUNT = 64
FRAME_TIMEOUT = 60.0  # a frame, once begun, must be complete within this
DEFERRED_CLOSE_LIMIT = 5.0  # how long a self-disconnected caller gets to read its reply
SWEEP_INTERVAL = 0.25
STOP_TIMEOUT = 5.0
MAX_PIPES_SERVER = 8192
WRITE_HIGH_WATER = 1 << 20  # stop reading a client that does not read its replies


class Share:
    """Kept so old callers get a clear refusal: ``serve`` serves no files."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise ValueError(FILE_SHARES_REFUSED)


FILE_SHARES_REFUSED = ("smbsessions serve has no file shares (IPC$ and \\PIPE\\srvsvc only); "
                       "use Samba or impacket-smbserver to serve files")


class _Registry(SessionRegistry):
    """Feeds the live session table from a connection's core."""

    def __init__(self, table: SessionTable, proto: _SmbProtocol) -> None:
        self.table = table
        self.proto = proto

    def logon(self, connection_id: str, session: SmbSession, dialect: str) -> int | None:
        live = self.table.add(
            connection_id, client_address=self.proto.client_address, username=session.user,
            domain=session.domain, is_guest=session.anonymous, is_admin=session.is_admin,
            client_type=dialect, transport=self.proto.transport_name,
        )
        return live.key

    def logoff(self, connection_id: str) -> None:
        self.table.remove_connection(connection_id)

    def touch(self, connection_id: str) -> None:
        self.table.touch(connection_id, time.monotonic())

    def opens(self, connection_id: str, count: int) -> None:
        self.table.set_num_opens(connection_id, count)


class _SmbProtocol(asyncio.Protocol):
    def __init__(self, server: SessionServer) -> None:
        self.server = server
        self.id = f"conn-{next(server._ids)}"
        self.transport: asyncio.Transport | None = None
        self.client_address = ""
        self.transport_name = ""
        self.core: ServerConnection | None = None
        self.buffer = bytearray()
        self.frame_started: float | None = None
        self.opened = self.last_frame = time.monotonic()
        self.close_deadline: float | None = None
        self.closed = False

    # asyncio callbacks ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername") or ("", 0)
        local = transport.get_extra_info("sockname") or ("", 0)
        self.client_address = plain_address(str(peer[0]))
        self.transport_name = f"tcp:{bracketed(plain_address(str(local[0])))}:{local[1]}"
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        if not self.server._admit(self):
            self.closed = True
            transport.abort()
            return
        self.core = ServerConnection(self.server._core_config, _Registry(self.server._table, self),
                                     connection_id=self.id, client_address=self.client_address,
                                     transport=self.transport_name)
        LOG.info("connection %s from %s port %s", self.id, escape(self.client_address), peer[1])

    def data_received(self, data: bytes) -> None:
        if self.closed or self.core is None:
            return
        self.buffer += data
        while len(self.buffer) >= nbss.HEADER_SIZE:
            try:
                kind, length = nbss.parse_header(bytes(self.buffer[:nbss.HEADER_SIZE]))
            except nbss.FramingError as exc:
                self.abort(f"bad frame: {exc}")
                return
            end = nbss.HEADER_SIZE + length
            if len(self.buffer) < end:
                if self.frame_started is None:
                    self.frame_started = time.monotonic()
                return
            payload = bytes(self.buffer[nbss.HEADER_SIZE:end])
            del self.buffer[:end]
            self.frame_started = None
            self.last_frame = time.monotonic()
            self._frame(kind, payload)
            if self.closed:
                return
        if self.buffer and self.frame_started is None:
            self.frame_started = time.monotonic()

    def _frame(self, kind: int, payload: bytes) -> None:
        assert self.core is not None and self.transport is not None
        if kind == nbss.SESSION_KEEP_ALIVE:
            return
        if kind == nbss.SESSION_REQUEST:
            self.transport.write(nbss.frame(b"", nbss.POSITIVE_SESSION_RESPONSE))
            return
        was_authenticated = self.core.authenticated
        try:
            out = self.core.receive_frame(payload)
        except Exception:  # a bug costs this connection, never the server
            LOG.exception("connection %s: internal error", self.id)
            self.abort("internal error")
            return
        for reply in out:
            self.transport.write(nbss.frame(reply))
        if self.core.authenticated != was_authenticated:
            self.server._authenticated_changed(self)
        if self.core.closed:
            self.close_gracefully(self.core.close_reason)
        elif self.close_deadline is not None and not self.core.pending_output():
            self.close_gracefully("session deleted")

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.core is not None:
            self.server._retire_counters(self.core.counters)
            self.core.close("connection lost")
            LOG.info("connection %s from %s closed", self.id, escape(self.client_address))
        self.server._forget(self)

    # control ----------------------------------------------------------------

    def close_gracefully(self, reason: str) -> None:
        """Send what is queued, then close."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.closed = True

    def abort(self, reason: str) -> None:
        if not self.closed:
            LOG.info("connection %s from %s dropped: %s", self.id, escape(self.client_address), reason)
        self.closed = True
        if self.core is not None:
            self.core.close(reason)
        if self.transport is not None:
            self.transport.abort()

    def close_after_reply(self) -> None:
        """Close once the client has everything queued for it (runs after the current reply
        was written: ``disconnect`` schedules it from inside the request)."""
        deadline = time.monotonic() + DEFERRED_CLOSE_LIMIT
        if self.close_deadline is None or deadline < self.close_deadline:
            self.close_deadline = deadline
        if self.core is not None and not self.core.pending_output():
            self.close_gracefully("session deleted")

    def check_deadlines(self, now: float) -> None:
        server = self.server
        core = self.core
        if self.closed or core is None:
            return
        if self.frame_started is not None and now - self.frame_started > server._frame_timeout:
            self.abort("frame not completed in time")
        elif not core.logged_on and now - self.opened > server._preauth_timeout:
            self.abort(f"no logon within {server._preauth_timeout:g} s")
        elif now - self.last_frame > (server._idle_timeout if core.authenticated else server._null_idle):
            self.abort("idle")
        elif self.close_deadline is not None and now >= self.close_deadline:
            self.abort("session deleted")


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
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        names = [a.user.lower() for a in accounts]
        if len(set(names)) != len(names):
            raise ValueError("duplicate account name")
        self._accounts = {a.user.lower(): a for a in accounts}
        self._identity = ServerIdentity(name=server_name, domain=domain, comment=comment,
                                       decoy_shares=tuple(decoy_share(s) for s in decoy_shares))
        self._core_config = CoreConfig(
            server_name=server_name, domain=domain, lookup_nt_hash=self.lookup_nt_hash,
            is_admin=self.is_admin, pipe_factory=pipe_factory, allow_anonymous=allow_anonymous,
            may_logon=self._may_logon,
            require_encryption=require_encryption, require_signing=require_signing,
        )
        self._idle_timeout = idle_timeout
        self._null_idle = min(null_idle_timeout, idle_timeout)
        self._preauth_timeout = preauth_timeout
        self._frame_timeout = min(frame_timeout, idle_timeout)
        self._max_per_account = max_per_account
        self._max_connections = max_connections
        self._max_per_address = max_per_address
        # Slots only authenticated connections may fill: a flood of unauthenticated ones
        # leaves room for an administrator.
        self._reserved = max_connections // 8
        self._table = SessionTable(decoys)
        self._lock = threading.Lock()
        self._connections: dict[str, _SmbProtocol] = {}
        self._retired: Counter[str] = Counter()
        self._ids = itertools.count(1)
        self._stopping = False
        self._stop_requested = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._sock = _listen(bind, port)

    @property
    def identity(self) -> ServerIdentity:
        return self._identity

    @property
    def pipe_factory(self) -> PipeFactory | None:
        return self._core_config.pipe_factory

    @pipe_factory.setter
    def pipe_factory(self, factory: PipeFactory | None) -> None:
        self._core_config.pipe_factory = factory

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
        raise_nofile_limit()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="smbsessions-server",
                                        daemon=True)
        self._thread.start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main(ready))
        finally:
            loop.close()

    async def _main(self, ready: threading.Event) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _SmbProtocol(self), sock=self._sock, backlog=128)
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

    # Admission --------------------------------------------------------------

    def _admit(self, proto: _SmbProtocol) -> bool:
        if self._stopping:
            return False
        connections = list(self._connections.values())
        if len(connections) >= self._max_connections:
            LOG.warning("connection from %s refused: %d connections already open",
                        escape(proto.client_address), self._max_connections)
            return False
        waiting = [c for c in connections if c.core is None or not c.core.authenticated]
        by_address: dict[str, list[_SmbProtocol]] = {}
        for c in waiting:
            by_address.setdefault(c.client_address, []).append(c)
        same = by_address.get(proto.client_address, [])
        if len(same) >= self._max_per_address:
            # The newest connection gets its chance (it may be a real client behind the same
            # address); the oldest unauthenticated one from that address makes room.
            victim = min(same, key=lambda c: c.opened)
            self._evict(victim, "unauthenticated connections per address")
            waiting.remove(victim)
            same.remove(victim)
        if self._reserved and len(waiting) >= self._max_connections - self._reserved:
            # Evict from the address holding the most unauthenticated connections (its oldest):
            # a lone administrator's address is never the victim of a flood from elsewhere.
            crowded = max(by_address.values(), key=len)
            self._evict(min(crowded, key=lambda c: c.opened), "unauthenticated slots full")
        with self._lock:
            self._connections[proto.id] = proto
        return True

    def _evict(self, proto: _SmbProtocol, why: str) -> None:
        LOG.warning("connection %s from %s evicted: %s", proto.id, escape(proto.client_address), why)
        proto.abort(f"evicted: {why}")
        self._forget(proto)

    def _forget(self, proto: _SmbProtocol) -> None:
        with self._lock:
            self._connections.pop(proto.id, None)

    def _authenticated_changed(self, proto: _SmbProtocol) -> None:
        pass  # admission counts from the live state; nothing cached to update

    # ServerControl ------------------------------------------------------

    def snapshot(self) -> list[tuple[SessionKey, SessionInfo]]:
        return self._table.snapshot()

    def disconnect(
        self, keys: Iterable[SessionKey], defer_for: SessionKey | None = None
    ) -> list[SessionKey]:
        live, decoys = self._table.remove(keys)
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
        held = sum(1 for key, info in self._table.snapshot()
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
        self._table.set_decoys(decoys)

    def counters(self) -> dict[str, int]:
        """Requests seen ``signed`` (verified), ``encrypted``, refused for ``bad_signature``,
        over every connection so far."""
        with self._lock:
            total = Counter(self._retired)
            live = [p.core for p in self._connections.values() if p.core is not None]
        for core in live:
            total.update(core.counters)
        return dict(total)

    def _retire_counters(self, counters: Counter[str]) -> None:
        with self._lock:
            self._retired.update(counters)

    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)


def _listen(bind: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and bind in ("::", ""):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((bind, port))
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def raise_nofile_limit() -> None:
    """Raise the soft RLIMIT_NOFILE to the hard limit (each connection is a descriptor)."""
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


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
        null_idle_timeout=null_idle_timeout,
    )
    if make_pipe_factory is not None:
        server.pipe_factory = make_pipe_factory(server)
    return server
