"""Every use of smbprotocol's internals, in one place (the rest of the package uses its public API).

smbprotocol has no hooks for what ``transport.SmbPipe`` needs (a deadline on every
wait, a cap on what a peer may claim, an anonymous logon, the socket's addresses), so
this module subclasses and reaches in. Private names touched, each checked to exist by
``tests/unit/test_smbprotocol_compat.py`` (``SMBPROTOCOL_PRIVATE_NAMES``):

* ``smbprotocol.transport.Tcp._recv``: ``BoundedTcp.recv`` reads through it.
* ``smbprotocol.transport.Tcp._sock``: the socket, for the peer and local addresses.
* ``smbprotocol.connection.Connection._t_worker``: the receive thread, joined on teardown.
* ``smbprotocol.connection.Connection._t_exc``: its exception, checked before waiting again.
* ``smbprotocol.connection.Connection._send_smb2_negotiate``: wrapped to keep the server's clock.
* ``smbprotocol.connection.Connection.session_table``: a null session registers itself there.
* ``smbprotocol.connection.Connection.preauth_integrity_session_hash_value``: a null
  session drops its entries (it derives no keys).
* ``smbprotocol.session.Session._connected``: set by the null session's own ``connect``.
* ``smbprotocol.connection.Request.response_event``,
  ``smbprotocol.connection.Request.response_event_lock`` and
  ``smbprotocol.connection.Request.response``: what ``DeadlineConnection.receive`` waits on.

Overridden: ``Connection.receive`` (smbprotocol 1.17 edited it: re-read it on an
upgrade), ``Connection.transport`` (a property here, so every ``Tcp`` becomes a
``BoundedTcp`` before the receive thread starts) and ``Session.connect``
(``NullSession``). Checked unchanged from smbprotocol 1.13 to 1.17 (pyproject pins
``<1.18``).
"""

from __future__ import annotations

import socket
import time
from typing import Any, cast

from smbprotocol.connection import Connection
from smbprotocol.exceptions import MoreProcessingRequired, SMBException
from smbprotocol.session import Session, SessionFlags, SMB2SessionSetupRequest, SMB2SessionSetupResponse
from smbprotocol.transport import Tcp

from smbsessions.ntlm import ntlm_anonymous_authenticate, ntlm_anonymous_negotiate
from smbsessions.status import NtStatus, TransportError

__all__ = [
    "SMBPROTOCOL_PRIVATE_NAMES",
    "BoundedTcp",
    "DeadlineConnection",
    "DeadlineExpired",
    "NullSession",
    "socket_addresses",
    "teardown",
    "worker_started",
]

SMBPROTOCOL_PRIVATE_NAMES: tuple[tuple[str, str], ...] = (
    ("smbprotocol.transport.Tcp", "_recv"),
    ("smbprotocol.transport.Tcp", "_sock"),
    ("smbprotocol.connection.Connection", "_t_worker"),
    ("smbprotocol.connection.Connection", "_t_exc"),
    ("smbprotocol.connection.Connection", "_send_smb2_negotiate"),
    ("smbprotocol.connection.Connection", "session_table"),
    ("smbprotocol.connection.Connection", "preauth_integrity_session_hash_value"),
    ("smbprotocol.session.Session", "_connected"),
    ("smbprotocol.connection.Request", "response_event"),
    ("smbprotocol.connection.Request", "response_event_lock"),
    ("smbprotocol.connection.Request", "response"),
)
"""Every smbprotocol name this module relies on beyond the public API (class, attribute);
a unit test checks they still exist, so an upgrade that renames one fails loudly."""

_SMB_MAGICS = (b"\xfeSMB", b"\xfdSMB")  # a plain SMB2 message, an SMB3 transform (encrypted)
_SMB1_MAGIC = b"\xffSMB"
_SMB2_HEADER_SIZE = 64  # MS-SMB2 2.2.1
_TRANSFORM_HEADER_SIZE = 52  # MS-SMB2 2.2.41
_TEARDOWN_JOIN_SECONDS = 2.0


class DeadlineExpired(Exception):
    """A reply did not come before the connection's deadline."""


class BoundedTcp(Tcp):  # type: ignore[misc]  # smbprotocol is untyped
    """smbprotocol's Direct TCP transport, checking what the peer claims before believing it.

    smbprotocol allocates a buffer of whatever length the 4-byte header claims (an
    HTTP server's ``HTTP`` is 1.2 GB, ``FF FF FF FF`` 4 GB). Here the header is
    checked first: MS-SMB2 2.1 makes its first byte zero, and no reply may exceed
    ``max_message_bytes``; the message must then start with an SMB2 (or SMB3
    transform) protocol id. Anything else ends the connection quietly (EOF for
    smbprotocol's receive thread, so it logs no traceback); ``violation`` says why
    and ``smb1_answer`` records an SMB1 reply to our SMB2 NEGOTIATE.
    """

    violation: str | None = None
    smb1_answer: bool = False
    max_message_bytes: int = 0

    def recv(self, timeout: float) -> bytes:
        head, timeout = self._recv(4, timeout)
        if not head:
            return b""
        length = int.from_bytes(head, "big")
        if head[0] != 0:
            return self._refuse(f"not an SMB server (it sent {_preview(head)})")
        if length > self.max_message_bytes:
            return self._refuse(
                f"not an SMB server (it announced a {length:,}-byte message; "
                f"no reply may exceed {self.max_message_bytes:,} bytes)"
            )
        if length < 4:
            return self._refuse(f"not an SMB server (it sent a {length}-byte message)")
        body, _ = self._recv(length, timeout)
        if not body:
            return b""
        magic = bytes(body[:4])
        if magic == _SMB1_MAGIC:
            self.smb1_answer = True
            return self._refuse("the server answered in SMB1")
        if magic not in _SMB_MAGICS:
            return self._refuse(f"not an SMB server (it sent {_preview(body)})")
        smallest = _SMB2_HEADER_SIZE if magic == _SMB_MAGICS[0] else _TRANSFORM_HEADER_SIZE
        if length < smallest:
            return self._refuse(f"a malformed SMB reply ({length} bytes, shorter than its header)")
        return cast(bytes, body)

    def _refuse(self, reason: str) -> bytes:
        if self.violation is None:
            self.violation = reason
        self.close()
        return b""


def _preview(data: bytes) -> str:
    """The first bytes a peer sent, quoted safely for a message."""
    text = bytes(data[:24]).decode("latin-1")
    shown = "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in text)
    return f"'{shown}'" + ("..." if len(data) > 24 else "")


class DeadlineConnection(Connection):  # type: ignore[misc]  # smbprotocol is untyped
    """A smbprotocol Connection whose every wait for a reply honours ``deadline``.

    smbprotocol's own ``receive`` waits forever when no timeout is passed, and the
    session setup, tree connect and create calls pass none; where a timeout is
    passed it is truncated to whole seconds. Waiting here first, on the monotonic
    deadline, bounds them all. STATUS_PENDING interim replies are consumed here too,
    so the parent's receive only ever sees a final reply and never waits itself.
    ``max_message_bytes`` caps what the peer may claim (see ``BoundedTcp``).
    """

    deadline: float | None = None
    max_message_bytes: int = 0
    _bounded_transport: BoundedTcp | None = None
    kerberos_logon = False
    server_time: Any = None
    """The server's clock from its NEGOTIATE reply (kerberos tells clock skew by it)."""

    def _send_smb2_negotiate(self, *args: Any, **kwargs: Any) -> Any:
        response = super()._send_smb2_negotiate(*args, **kwargs)
        try:
            self.server_time = response["system_time"].get_value()
        except Exception:  # a reply without the field: no skew diagnosis, nothing else
            self.server_time = None
        return response

    # smbprotocol's connect() builds its own Tcp; every transport it assigns is made a
    # BoundedTcp (same object, checked recv) before the receive thread starts.
    @property
    def transport(self) -> Any:
        return self._bounded_transport

    @transport.setter
    def transport(self, value: Any) -> None:
        if value is not None and type(value) is Tcp:
            value.__class__ = BoundedTcp
            value.max_message_bytes = self.max_message_bytes
        self._bounded_transport = value

    @property
    def violation(self) -> str | None:
        """Why the peer's bytes were refused (not SMB, oversized), or None."""
        transport = self._bounded_transport
        return None if transport is None else transport.violation

    @property
    def smb1_answer(self) -> bool:
        transport = self._bounded_transport
        return bool(transport is not None and transport.smb1_answer)

    def receive(
        self,
        request: Any,
        wait: bool = True,
        timeout: float | None = None,
        resolve_symlinks: bool = True,
    ) -> Any:
        limit = self.deadline
        if timeout is not None:
            own = time.monotonic() + timeout
            limit = own if limit is None else min(limit, own)
        if limit is not None:
            while True:
                remaining = limit - time.monotonic()
                if remaining <= 0 or not request.response_event.wait(remaining):
                    raise DeadlineExpired()
                with request.response_event_lock:
                    response = request.response
                    if (
                        wait
                        and response is not None
                        and self._t_exc is None
                        and response["status"].get_value() == NtStatus.STATUS_PENDING
                    ):
                        request.response_event.clear()
                        continue
                break
        return super().receive(request, wait=wait, timeout=None, resolve_symlinks=resolve_symlinks)


class NullSession(Session):  # type: ignore[misc]  # smbprotocol is untyped
    """An anonymous (null) SMB session: pyspnego cannot produce one, so the two
    NTLMSSP legs (``smbsessions.ntlm``) are sent raw (servers accept NTLMSSP without SPNEGO)."""

    is_null = False
    is_guest = False
    session_id: int

    def connect(self) -> None:
        connection = self.connection
        if connection.require_signing:
            raise SMBException("the server requires signing, which an anonymous session cannot do")
        token = ntlm_anonymous_negotiate()
        for _leg in range(2):
            setup = SMB2SessionSetupRequest()
            setup["security_mode"] = connection.client_security_mode
            setup["buffer"] = token
            request = connection.send(setup, sid=self.session_id, credit_request=64)
            message_id = request.message["message_id"].get_value()
            try:
                response = connection.receive(request)
            except MoreProcessingRequired as exc:
                response = exc.header
            finally:
                # Only 3.1.1 key derivation uses this table; a null session derives no keys.
                connection.preauth_integrity_session_hash_value.pop(message_id, None)
            if self.session_id == 0:
                self.session_id = response["session_id"].get_value()
            reply = SMB2SessionSetupResponse()
            reply.unpack(response["data"].get_value())
            if response["status"].get_value() != NtStatus.STATUS_MORE_PROCESSING_REQUIRED:
                break
            token = ntlm_anonymous_authenticate(reply["buffer"].get_value())
        else:
            raise TransportError("the anonymous session setup did not finish in two legs")
        flags = reply["session_flags"]
        self.is_null = bool(flags.has_flag(SessionFlags.SMB2_SESSION_FLAG_IS_NULL))
        self.is_guest = bool(flags.has_flag(SessionFlags.SMB2_SESSION_FLAG_IS_GUEST))
        self._connected = True
        connection.session_table[self.session_id] = self
        self.signing_required = False
        self.encrypt_data = bool(flags.has_flag(SessionFlags.SMB2_SESSION_FLAG_ENCRYPT_DATA))
        if self.encrypt_data:
            raise SMBException("the server requires encryption, which an anonymous session cannot do")


def worker_started(connection: DeadlineConnection) -> bool:
    """True once smbprotocol's receive thread exists (the TCP connect succeeded)."""
    return connection._t_worker is not None


def socket_addresses(connection: DeadlineConnection) -> tuple[tuple[str, int], tuple[str, int]]:
    """(peer, local) addresses of the connected socket: smbprotocol keeps no public handle on it."""
    sock: socket.socket = connection.transport._sock
    return cast(tuple[str, int], sock.getpeername()[:2]), cast(tuple[str, int], sock.getsockname()[:2])


def teardown(connection: DeadlineConnection) -> None:
    """Drop the TCP connection and stop smbprotocol's receive thread; never raises."""
    connection.deadline = time.monotonic()
    try:
        if connection.transport is not None:
            connection.transport.close()
    except Exception:  # the socket may already be dead; nothing left to release
        pass
    worker = connection._t_worker
    if worker is not None and worker.is_alive():
        worker.join(_TEARDOWN_JOIN_SECONDS)
