"""The per-connection side of ``smbsessions serve``: one ``asyncio.Protocol`` per client.

One event-loop thread serves every connection (``asyncio.Protocol``, no task per
connection, so thousands of idle sessions cost little). Each connection owns a
``smb2.connection.ServerConnection``; this module only moves NetBIOS frames to
and from it and keeps time:

* NetBIOS frames capped (``nbss.MAX_MESSAGE``) before anything is buffered; a
  frame, once begun, must be complete within the frame timeout;
* a client that does not read its replies stops being read;
* the deadlines of ``limits.Timeouts`` end a connection that runs past them.

Admission, the session table and counters belong to the owner (``shell.SessionServer``),
reached through the small ``ConnectionOwner`` protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import Counter
from typing import Protocol

from smbsessions.addresses import bracketed, plain_address
from smbsessions.server import nbss
from smbsessions.server.limits import DEFERRED_CLOSE_LIMIT, WRITE_HIGH_WATER, Timeouts
from smbsessions.server.logfmt import escape
from smbsessions.server.sessions import SessionTable
from smbsessions.server.smb2.connection import CoreConfig, ServerConnection, SessionRegistry
from smbsessions.server.smb2.session import SmbSession

LOG = logging.getLogger("smbsessions.server")


class ConnectionOwner(Protocol):
    """What a connection needs from the server that accepted it."""

    timeouts: Timeouts
    core_config: CoreConfig
    table: SessionTable

    def next_connection_id(self) -> str: ...

    def admit(self, proto: SmbProtocol) -> bool: ...

    def forget(self, proto: SmbProtocol) -> None: ...

    def retire_counters(self, counters: Counter[str]) -> None: ...



class _Registry(SessionRegistry):
    """Feeds the live session table from a connection's core."""

    def __init__(self, table: SessionTable, proto: SmbProtocol) -> None:
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


class SmbProtocol(asyncio.Protocol):
    """One client connection: NetBIOS framing and deadlines around its ``ServerConnection``."""

    def __init__(self, server: ConnectionOwner) -> None:
        self.server = server
        self.id = server.next_connection_id()
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
        if not self.server.admit(self):
            self.closed = True
            transport.abort()
            return
        self.core = ServerConnection(self.server.core_config, _Registry(self.server.table, self),
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
        try:
            out = self.core.receive_frame(payload)
        except Exception:  # a bug costs this connection, never the server
            LOG.exception("connection %s: internal error", self.id)
            self.abort("internal error")
            return
        for reply in out:
            self.transport.write(nbss.frame(reply))
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
            self.server.retire_counters(self.core.counters)
            self.core.close("connection lost")
            LOG.info("connection %s from %s closed", self.id, escape(self.client_address))
        self.server.forget(self)

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
        core = self.core
        if self.closed or core is None:
            return
        reason = self.server.timeouts.expired(
            now, opened=self.opened, last_frame=self.last_frame, frame_started=self.frame_started,
            logged_on=core.logged_on, authenticated=core.authenticated,
        )
        if reason is not None:
            self.abort(reason)
        elif self.close_deadline is not None and now >= self.close_deadline:
            self.abort("session deleted")


def listen(bind: str, port: int) -> socket.socket:
    """A non-blocking listening socket on (bind, port); "::" also accepts IPv4."""
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
