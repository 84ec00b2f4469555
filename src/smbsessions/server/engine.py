"""The SMB server behind ``smbsessions serve``, on impacket's SMB engine.

impacket parses and answers SMB (SMB1 ``NT LM 0.12`` and SMB2 dialect 2.0.2;
no SMB3, hence no encryption) and checks NTLMv2 logons. Around it this module
owns what NetrSessionEnum needs to be true:

* the connection loop (our own: TCP_NODELAY, timeouts, clean shutdown, closing
  a client on demand), see ``_serve_connection``;
* the live session table, fed by the session setup/logoff hooks
  (``auth_hooks.py``) and by every request (idle time, open count);
* the ``\\PIPE\\srvsvc`` route (``pipe_hooks.py``): opens of that pipe go to a
  ``PipeEndpoint`` made by the pipe factory, with the caller's identity.

Transport name (sesi502_transport): ``tcp:<server address>:<port>``, the local
end of the TCP connection the session arrived on (``tcp:[::1]:4455``).
Client type (sesi502_cltype_name): the negotiated dialect, ``SMB 2.0.2`` or
``NT LM 0.12``.

Hardening around impacket (each a gap found in impacket's own server):

* IPC$ is backed by an empty private directory and opens other than srvsvc
  are refused there (impacket would serve a directory as IPC$);
* SMB2 compound chains are checked before impacket sees them: impacket checks
  authentication for the first command only (``_check_compound``);
* null sessions reach only IPC$ when accounts are configured, as on Windows;
* LOGOFF and a new SESSION_SETUP end the old session's trees and opens;
* frames have a size cap, a receive deadline and (before logon) a short
  connection deadline; concurrent connections are capped.
"""

from __future__ import annotations

import configparser
import contextlib
import itertools
import logging
import os
import socket
import socketserver
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from impacket import smb
from impacket import smb3structs as smb2
from impacket.smbserver import SMBSERVER, SRVSServer

from smbsessions.levels import SessionInfo
from smbsessions.ndr import encode_unique_string
from smbsessions.server import auth_hooks
from smbsessions.server.accounts import Account, parse_account
from smbsessions.server.framing import (
    POSITIVE_SESSION_RESPONSE,
    SESSION_KEEP_ALIVE,
    SESSION_MESSAGE,
    SESSION_REQUEST,
    FramingError,
    frame,
    recv_frame,
)
from smbsessions.server.pipe import PipeHandle
from smbsessions.server.pipe_hooks import PipeRouter
from smbsessions.server.sessions import SessionTable, bracketed, plain_address
from smbsessions.server.types import CallerInfo, PipeFactory, ServerControl, SessionKey

LOG = logging.getLogger("smbsessions.server")
STATUS_MORE_PROCESSING_REQUIRED = 0xC0000016
OPNUM_NETR_SERVER_GET_INFO = 21

DEFAULT_IDLE_TIMEOUT = 15 * 60.0  # Windows' default autodisconnect
DEFAULT_PREAUTH_TIMEOUT = 30.0  # a connection must have logged on by then
DEFAULT_MAX_CONNECTIONS = 1024
FRAME_TIMEOUT = 60.0  # a frame, once begun, must be complete within this
SEND_TIMEOUT = 60.0  # a client must take each reply within this
MAX_COMPOUND = 32  # SMB2 commands in one message
SMB2_HEADER_SIZE = 64
DEFERRED_CLOSE_LIMIT = 5.0  # how long a self-disconnected caller gets to read its reply
STOP_TIMEOUT = 5.0


@dataclass(frozen=True)
class Share:
    """A disk share (``--share NAME=PATH``, ``NAME=PATH:ro`` for read-only)."""

    name: str
    path: str
    read_only: bool = False
    comment: str = ""

    def __post_init__(self) -> None:
        if not self.name or self.name.upper() == "IPC$" or "]" in self.name:
            raise ValueError(f"invalid share name {self.name!r}")
        if not os.path.isdir(self.path):
            raise ValueError(f"share {self.name}: {self.path!r} is not a directory")


def parse_share(spec: str) -> Share:
    """``NAME=PATH`` (read-write, as impacket-smbserver's shares) or ``NAME=PATH:ro`` / ``:rw``."""
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise ValueError("share must look like NAME=PATH[:ro]")
    read_only = False
    for suffix, flag in ((":ro", True), (":rw", False)):
        if path.endswith(suffix) and not os.path.isdir(path):
            path, read_only = path[: -len(suffix)], flag
    return Share(name, os.path.abspath(path), read_only=read_only)


class _Connection:
    """One TCP connection (impacket: one SMB session at a time on it)."""

    def __init__(
        self, connection_id: str, sock: socket.socket, client: str, local: str, preauth: float
    ) -> None:
        self.id = connection_id
        self.sock = sock
        self.client_address = client
        self.transport = local
        self.preauth_timeout = preauth
        self.pipes: set[PipeHandle] = set()  # touched by the connection thread only
        self.close_deadline: float | None = None
        # Until a logon succeeds the connection must log on by this time (None: logged on).
        self.auth_deadline: float | None = time.monotonic() + preauth

    def logged_on(self, yes: bool) -> None:
        if yes:
            self.auth_deadline = None
        elif self.auth_deadline is None:
            # Only a logged-on connection gets a fresh deadline: repeating unfinished
            # logons must not keep a connection open.
            self.auth_deadline = time.monotonic() + self.preauth_timeout

    def abort(self) -> None:
        """Cut the client off; the connection thread then cleans up."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close_after_reply(self) -> None:
        deadline = time.monotonic() + DEFERRED_CLOSE_LIMIT
        if self.close_deadline is None or deadline < self.close_deadline:
            self.close_deadline = deadline

    def close_due(self) -> bool:
        if self.close_deadline is None:
            return False
        if time.monotonic() >= self.close_deadline:
            return True
        return not any(pipe.pending() for pipe in self.pipes)

    def deadline(self) -> float | None:
        """When the connection must end unless something changes (logon, reply read)."""
        deadlines = [d for d in (self.close_deadline, self.auth_deadline) if d is not None]
        return min(deadlines) if deadlines else None


class _Refused(Exception):
    """A request we will not hand to impacket; the connection is dropped."""


class _ConnectionHandler(socketserver.BaseRequestHandler):
    server: _ImpacketServer

    def handle(self) -> None:
        self.server.owner._serve_connection(self.request, self.client_address)


class _ImpacketServer(SMBSERVER):  # type: ignore[misc]
    """impacket's SMBSERVER with our connection loop, threads and challenge."""

    request_queue_size = 128

    def __init__(self, owner: SessionServer, address: tuple[str, int], config: Any) -> None:
        self.owner = owner
        super().__init__(
            address, handler_class=_ConnectionHandler, config_parser=config, ipv6=":" in address[0]
        )
        # Keep a reference to impacket's SMB1 NEGOTIATE handler (hook returns the old one).
        negotiate = smb.SMB.SMB_COM_NEGOTIATE
        self._smb1_negotiate = self.hookSmbCommand(negotiate, None)
        self.hookSmbCommand(negotiate, self._smb1_negotiate)

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        if not self.owner._slots.acquire(blocking=False):
            LOG.warning("connection from %s refused: %d connections already open",
                        client_address[0], self.owner._max_connections)
            self.shutdown_request(request)
            return
        # Our own thread bookkeeping so stop() can join them with a deadline.
        thread = threading.Thread(
            target=self._connection_thread,
            args=(request, client_address),
            name="smbsessions-connection",
            daemon=True,
        )
        self.owner._track_thread(thread)
        try:
            thread.start()
        except BaseException:
            self.owner._slots.release()
            self.shutdown_request(request)
            raise

    def _connection_thread(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            self.owner._slots.release()

    def processRequest(self, connId: str, data: bytes) -> Any:  # impacket's name
        self.owner._table.touch(connId, time.monotonic())
        conn_data = self.getActiveConnections().get(connId)
        _check_compound(data, bool(conn_data is not None and conn_data.get("Authenticated")))
        if _offers_smb1_only(data):
            # impacket would first try SMB2 and print a traceback when that fails.
            packet = smb.NewSMBPacket(data=data)
            _, packets, _ = self._smb1_negotiate(connId, self, smb.SMBCommand(packet["Data"][0]), packet)
            return packets
        try:
            return super().processRequest(connId, data)
        finally:
            conn_data = self.getActiveConnections().get(connId)
            if conn_data is not None:
                self.owner._table.set_num_opens(connId, len(conn_data["OpenedFiles"]))

    def getSMBChallenge(self) -> bytes:  # impacket's name
        # impacket uses one fixed challenge for every logon; ours is per connection.
        challenge: bytes = getattr(self.owner._local, "challenge", None) or os.urandom(8)
        return challenge


def _check_compound(data: bytes, authenticated: bool) -> None:
    """Refuse an SMB2 compound impacket would mishandle (raises ``_Refused``).

    impacket checks that the connection is authenticated for the first command
    of a message only, then runs every chained command, and re-slices the rest
    of the message for each one. So: no chain before logon, no NEGOTIATE or
    SESSION_SETUP inside a chain, LOGOFF only last, at most ``MAX_COMPOUND``
    commands, and offsets that stay inside the message.
    """
    if data[:4] == b"\xffSMB":
        # impacket runs only the first command of an SMB1 AndX chain. A message it
        # cannot parse as SMB1 would be retried as SMB2, chain and all: refuse it.
        try:
            smb.SMBCommand(smb.NewSMBPacket(data=data)["Data"][0])
        except Exception as exc:
            raise _Refused("malformed SMB1 message") from exc
        return
    if data[:4] != b"\xfeSMB":
        raise _Refused("not an SMB message")
    offset = 0
    for index in range(MAX_COMPOUND):
        if len(data) - offset < SMB2_HEADER_SIZE:
            raise _Refused("truncated SMB2 header")
        command, next_command = _SMB2_CHAIN_FIELDS.unpack_from(data, offset)
        if index > 0:
            if not authenticated:
                raise _Refused("compound request before logon")
            if command in (smb2.SMB2_NEGOTIATE, smb2.SMB2_SESSION_SETUP):
                raise _Refused("NEGOTIATE or SESSION_SETUP inside a compound request")
        if next_command == 0:
            return
        if command == smb2.SMB2_LOGOFF:
            raise _Refused("LOGOFF followed by more commands")
        if next_command < SMB2_HEADER_SIZE or next_command % 8 or next_command >= len(data) - offset:
            raise _Refused("bad NextCommand offset")
        offset += next_command
    raise _Refused(f"more than {MAX_COMPOUND} commands in one message")


# Command (offset 12) and NextCommand (offset 20) of an SMB2 header.
_SMB2_CHAIN_FIELDS = struct.Struct("<12xH6xI")


def _offers_smb1_only(data: bytes) -> bool:
    """An SMB1 NEGOTIATE whose dialect list has no ``SMB 2.xxx`` entry."""
    return data[:5] == b"\xffSMB" + bytes([smb.SMB.SMB_COM_NEGOTIATE]) and b"\x02SMB 2." not in data


class SessionServer(ServerControl):
    """An SMB server whose session list is real, with an in-process srvsvc pipe.

    Thread-safe: ``snapshot``, ``disconnect``, ``legacy_srvsvc`` and ``stop``
    may be called from any thread (the pipe endpoint calls the first three
    from connection threads).
    """

    def __init__(
        self,
        bind: str = "127.0.0.1",
        port: int = 445,
        *,
        accounts: Sequence[Account] = (),
        shares: Sequence[Share] = (),
        domain: str = "WORKGROUP",
        server_name: str = "SMBSESSIONS",
        pipe_factory: PipeFactory | None = None,
        decoys: Sequence[SessionInfo] = (),
        allow_anonymous: bool = True,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        preauth_timeout: float = DEFAULT_PREAUTH_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        names = [a.user.lower() for a in accounts]
        if len(set(names)) != len(names):
            raise ValueError("duplicate account name")
        self._accounts = {a.user.lower(): a for a in accounts}
        self._server_name = server_name
        self.pipe_factory = pipe_factory
        self._allow_anonymous = allow_anonymous
        self._idle_timeout = idle_timeout
        self._preauth_timeout = preauth_timeout
        self._max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        self._table = SessionTable(decoys)
        self._lock = threading.Lock()
        self._connections: dict[str, _Connection] = {}
        self._threads: list[threading.Thread] = []
        self._ids = itertools.count(1)
        self._local = threading.local()
        self._stopping = False
        self._stop_requested = threading.Event()
        self._accept_thread: threading.Thread | None = None

        # impacket logs every NTLM response (crackable) at INFO; keep it quiet.
        logging.getLogger("impacket.smbserver").setLevel(logging.WARNING)
        # impacket serves IPC$ as a directory (an empty path would be the cwd):
        # give it an empty one of its own, for the server's lifetime.
        self._ipc_dir = tempfile.TemporaryDirectory(prefix="smbsessions-ipc-")
        try:
            config = _impacket_config(server_name, domain, shares, allow_anonymous, self._ipc_dir.name)
            self._impacket = _ImpacketServer(self, (bind, port), config)
        except BaseException:
            self._ipc_dir.cleanup()
            raise
        self._impacket.processConfigFile()
        for account in accounts:
            self._impacket.addCredential(account.user, 0, "", account.nt_hash().hex())
        auth_hooks.SessionHooks(
            self._impacket,
            self._on_session_setup,
            self._on_logoff,
            self._on_setup_start,
            self._may_connect,
        )
        PipeRouter(self._impacket, self._open_pipe, self._release_pipe)
        self._legacy = _legacy_srvsvc(config)
        self._legacy_lock = threading.Lock()

    # Lifecycle -----------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); port 0 at construction picks a free one."""
        host, port = self._impacket.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Serve in a background thread."""
        if self._accept_thread is not None:
            raise RuntimeError("server already started")
        self._accept_thread = threading.Thread(
            target=self._impacket.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="smbsessions-accept",
            daemon=True,
        )
        self._accept_thread.start()

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
        """Close the listener and every client connection; join all threads."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        self._stop_requested.set()
        deadline = time.monotonic() + timeout
        if self._accept_thread is not None:
            self._impacket.shutdown()
            self._accept_thread.join(max(deadline - time.monotonic(), 0))
        self._impacket.server_close()
        with self._lock:
            connections = list(self._connections.values())
            threads = list(self._threads)
        for conn in connections:
            conn.abort()
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0))
        left = [t for t in threads if t.is_alive()]
        if left:
            LOG.warning("%d connection threads still running after stop()", len(left))
        self._ipc_dir.cleanup()

    def __enter__(self) -> SessionServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ServerControl ------------------------------------------------------

    def snapshot(self) -> list[tuple[SessionKey, SessionInfo]]:
        return self._table.snapshot()

    def disconnect(
        self, keys: Iterable[SessionKey], defer_for: SessionKey | None = None
    ) -> list[SessionKey]:
        live, decoys = self._table.remove(keys)
        with self._lock:
            connections = [(s.key, self._connections.get(s.connection_id)) for s in live]
        for key, conn in connections:
            if conn is None:
                continue
            if key == defer_for:
                conn.close_after_reply()
            else:
                conn.abort()
        return [s.key for s in live] + decoys

    def legacy_srvsvc(self, opnum: int, stub: bytes) -> bytes | None:
        handler = self._legacy.srvsvcCallBacks.get(opnum)
        if handler is None:
            return None
        if opnum == OPNUM_NETR_SERVER_GET_INFO and stub[:4] == b"\0\0\0\0":
            # impacket's handler echoes ServerName and fails on NULL, which is what
            # most clients (impacket's own hNetrServerGetInfo included) send.
            stub = encode_unique_string(f"\\\\{self._server_name}", 0x20000) + stub[4:]
        try:
            with self._legacy_lock:
                answer = handler(stub)
                data: bytes = answer.getData()
        except Exception as exc:
            raise ValueError(f"cannot answer srvsvc opnum {opnum}") from exc
        return data

    def set_decoys(self, decoys: Sequence[SessionInfo]) -> None:
        """Replace the sessions-file decoys (listed after the live sessions)."""
        self._table.set_decoys(decoys)

    # Connection threads ---------------------------------------------------

    def _track_thread(self, thread: threading.Thread) -> None:
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)

    def _serve_connection(self, sock: socket.socket, client: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        host, port = str(client[0]), int(client[1])
        local_host, local_port = sock.getsockname()[:2]
        local = f"tcp:{bracketed(plain_address(local_host))}:{local_port}"
        conn = _Connection(f"conn-{next(self._ids)}", sock, host, local, self._preauth_timeout)
        with self._lock:
            if self._stopping:
                return
            self._connections[conn.id] = conn
        self._local.challenge = os.urandom(8)
        self._impacket.addConnection(conn.id, host, port)
        LOG.info("connection %s from %s port %d", conn.id, host, port)
        try:
            self._connection_loop(conn)
        except _Refused as exc:
            LOG.info("connection %s dropped: %s", conn.id, exc)
        except Exception:
            # impacket raises on requests it cannot parse; the client is dropped.
            LOG.debug("connection %s dropped", conn.id, exc_info=True)
        finally:
            self._end_connection(conn)

    def _connection_loop(self, conn: _Connection) -> None:
        sock = conn.sock
        frame_timeout = min(FRAME_TIMEOUT, self._idle_timeout)
        while True:
            try:
                received = recv_frame(sock, self._idle_timeout, frame_timeout, conn.deadline())
            except TimeoutError:
                if conn.auth_deadline is not None and time.monotonic() >= conn.auth_deadline:
                    LOG.info("connection %s dropped: no logon within %g s", conn.id,
                             self._preauth_timeout)
                return
            except (OSError, FramingError):
                return
            if received is None:
                return
            kind, payload = received
            if kind == SESSION_KEEP_ALIVE:
                continue
            sock.settimeout(SEND_TIMEOUT)
            if kind == SESSION_REQUEST:
                sock.sendall(frame(b"", POSITIVE_SESSION_RESPONSE))
                continue
            if kind != SESSION_MESSAGE:
                return
            for response in self._impacket.processRequest(conn.id, payload):
                data = response.getData() if hasattr(response, "getData") else response
                sock.sendall(frame(bytes(data)))
            if conn.close_due():
                return

    def _end_connection(self, conn: _Connection) -> None:
        LOG.info("connection %s from %s closed", conn.id, conn.client_address)
        with self._lock:
            self._connections.pop(conn.id, None)
        self._end_session(conn.id, conn)
        self._impacket.removeConnection(conn.id)

    def _end_session(self, connection_id: str, conn: _Connection | None) -> None:
        """Forget the connection's session and close its trees and opens (pipes too)."""
        self._table.remove_connection(connection_id)
        conn_data = self._impacket.getActiveConnections().get(connection_id)
        if conn_data is not None:
            _close_open_files(conn_data)
            conn_data["ConnectedShares"] = {}
        if conn is not None:
            for pipe in list(conn.pipes):
                _close_pipe(pipe)
            conn.pipes.clear()

    def _connection(self, connection_id: str) -> _Connection | None:
        with self._lock:
            return self._connections.get(connection_id)

    # Hooks (called in the connection's own thread) -------------------------

    def _on_setup_start(self, connection_id: str) -> None:
        # impacket keeps one session per connection: a new logon replaces the old one,
        # whose trees and opens (and their rights) must not survive into it.
        conn = self._connection(connection_id)
        self._end_session(connection_id, conn)
        if conn is not None:
            conn.logged_on(False)

    def _may_connect(self, connection_id: str, share_name: str) -> bool:
        # Windows gives null sessions IPC$ only; without accounts everybody is a
        # guest and the shares are public.
        if share_name.upper() == "IPC$" or not self._accounts:
            return True
        session = self._table.for_connection(connection_id)
        return session is not None and not session.is_guest

    def _on_session_setup(self, connection_id: str, dialect: str, status: int) -> int:
        if status != auth_hooks.STATUS_SUCCESS:
            if status != STATUS_MORE_PROCESSING_REQUIRED:  # the NTLM challenge round, not a failure
                LOG.info("connection %s: logon failed (0x%08X)", connection_id, status)
            return status
        conn_data = self._impacket.getConnectionData(connection_id, False)
        username = str(conn_data.get("user_name", ""))
        if not username and not self._allow_anonymous:
            self._table.remove_connection(connection_id)
            return auth_hooks.STATUS_LOGON_FAILURE
        conn = self._connection(connection_id)
        if conn is None:
            return status
        conn.logged_on(True)
        account = self._accounts.get(username.lower())
        # Without accounts impacket lets anybody in under any name: all guests.
        is_guest = not username or account is None
        self._table.add(
            connection_id,
            client_address=conn.client_address,
            username=username,
            domain=str(conn_data.get("user_domain_name", "")),
            is_guest=is_guest,
            is_admin=bool(account and account.admin and not is_guest),
            client_type=dialect,
            transport=conn.transport,
        )
        LOG.info("connection %s: session for %s (%s%s)", connection_id, username or "(anonymous)",
                 dialect, ", guest" if is_guest else ", admin" if account and account.admin else "")
        return status

    def _on_logoff(self, connection_id: str) -> None:
        conn = self._connection(connection_id)
        self._end_session(connection_id, conn)
        if conn is not None:
            conn.logged_on(False)

    def _open_pipe(self, connection_id: str) -> PipeHandle | None:
        factory = self.pipe_factory
        session = self._table.for_connection(connection_id)
        with self._lock:
            conn = self._connections.get(connection_id)
        if factory is None or session is None or conn is None:
            return None
        caller = CallerInfo(
            session_key=session.key,
            username=session.username,
            domain=session.domain,
            is_admin=session.is_admin,
            is_guest=session.is_guest,
            client_address=session.client_address,
        )
        try:
            pipe = PipeHandle(factory(caller))
        except Exception:
            LOG.exception("srvsvc pipe factory failed")
            return None
        conn.pipes.add(pipe)
        return pipe

    def _release_pipe(self, connection_id: str, pipe: PipeHandle) -> None:
        with self._lock:
            conn = self._connections.get(connection_id)
        if conn is not None:
            conn.pipes.discard(pipe)
        _close_pipe(pipe)


def _close_pipe(pipe: PipeHandle) -> None:
    try:
        pipe.close()
    except Exception:
        LOG.exception("srvsvc pipe endpoint failed to close")


def _close_open_files(conn_data: dict[str, Any]) -> None:
    # impacket leaves file descriptors and pipe sockets open when a client goes away.
    for entry in list(conn_data.get("OpenedFiles", {}).values()):
        if "Pipe" in entry:
            continue  # ours; closed through the connection's pipe set
        try:
            if "Socket" in entry:
                entry["Socket"].close()
            elif isinstance(entry.get("FileHandle"), int) and entry["FileHandle"] >= 0:
                os.close(entry["FileHandle"])
        except OSError:
            pass
    conn_data["OpenedFiles"] = {}


def _impacket_config(
    server_name: str, domain: str, shares: Sequence[Share], allow_anonymous: bool, ipc_path: str
) -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config["global"] = {
        "server_name": server_name,
        "server_os": "smbsessions",
        "server_domain": domain,
        "log_file": "None",
        "rpc_apis": "yes",
        "credentials_file": "",
        "SMB2Support": "True",
        "anonymous_logon": str(allow_anonymous),
    }
    config["IPC$"] = {"comment": "", "read only": "yes", "share type": "3", "path": ipc_path}
    for share in shares:
        name = share.name.upper()  # impacket looks shares up upper-cased
        if config.has_section(name):
            raise ValueError(f"duplicate share {share.name!r}")
        config[name] = {
            "comment": share.comment,
            "read only": "yes" if share.read_only else "no",
            "share type": "0",
            "path": share.path,
        }
    return config


def _legacy_srvsvc(config: configparser.ConfigParser) -> Any:
    """impacket's stock srvsvc handlers, called in-process (never started as a thread)."""
    srvs = SRVSServer()
    srvs._sock.close()  # it binds a TCP socket in __init__; we never listen on it
    srvs.setServerConfig(config)
    srvs.processConfigFile()
    return srvs


def build_server(
    bind: str = "::",
    port: int = 445,
    *,
    accounts: Iterable[Account | str] = (),
    shares: Iterable[Share | str] = (),
    domain: str = "WORKGROUP",
    decoys: Sequence[SessionInfo] = (),
    make_pipe_factory: Callable[[ServerControl], PipeFactory] | None = None,
    allow_anonymous: bool = True,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    preauth_timeout: float = DEFAULT_PREAUTH_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> SessionServer:
    """The server the CLI runs: accounts as ``USER:PASSWORD[:admin]``, shares as ``NAME=PATH``.

    ``make_pipe_factory`` receives the server (snapshot, disconnect,
    legacy_srvsvc) and returns the factory called on each srvsvc open.
    Raises ``ValueError`` for a bad account or share, ``OSError`` if binding fails.
    """
    server = SessionServer(
        bind,
        port,
        accounts=[a if isinstance(a, Account) else parse_account(a) for a in accounts],
        shares=[s if isinstance(s, Share) else parse_share(s) for s in shares],
        domain=domain,
        decoys=decoys,
        allow_anonymous=allow_anonymous,
        idle_timeout=idle_timeout,
        preauth_timeout=preauth_timeout,
        max_connections=max_connections,
    )
    if make_pipe_factory is not None:
        server.pipe_factory = make_pipe_factory(server)
    return server
