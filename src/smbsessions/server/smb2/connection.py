"""One SMB2/3 server connection as a pure object: frames in, frames out, no sockets.

``ServerConnection.receive_frame(frame)`` takes one NetBIOS payload (SMB1
NEGOTIATE, SMB2 message or compound, or an SMB3 TRANSFORM) and returns the
frames to send back; ``closed`` says the transport must be dropped. This
module owns the framing-level rules (state tables, MessageId window and
credits, compounds, signatures, encryption, the session and its keys); the
commands that touch the pipe live in ``handlers.py``.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from smbsessions.server.limits import (
    DEFAULT_MAX_UNREAD_PER_CONNECTION,
    DEFAULT_MAX_UNREAD_SERVER,
    MAX_PIPES_SERVER,
    Budget,
)
from smbsessions.server.logfmt import escape
from smbsessions.server.pipe import PipeHandle
from smbsessions.server.smb2 import codec, handlers
from smbsessions.server.smb2.codec import Smb2DecodeError
from smbsessions.server.smb2.constants import (
    HEADER_SIZE,
    SMB1_MAGIC,
    TRANSFORM_HEADER_SIZE,
    TRANSFORM_MAGIC,
    Command,
    Dialect,
    HeaderFlags,
    SecurityMode,
)
from smbsessions.server.smb2.credits import CreditWindow
from smbsessions.server.smb2.messages import Header, Message, NegotiateRequest
from smbsessions.server.smb2.negotiate import Negotiated, NegotiateRefused
from smbsessions.server.smb2.session import SessionSecurity, SmbSession
from smbsessions.server.smb2.state import (
    SESSIONLESS_COMMANDS,
    TREE_COMMANDS,
    ConnectionEvent,
    ConnectionState,
    ProtocolStateError,
    SessionState,
    advance_connection,
)
from smbsessions.server.smb2_crypto import preauth_hash
from smbsessions.server.types import CallerInfo, PipeFactory
from smbsessions.status import NtStatus

log = logging.getLogger("smbsessions.server")

MAX_IO_SIZE = 64 * 1024  # MaxTransactSize/MaxReadSize/MaxWriteSize; LARGE_MTU is not offered
_FILETIME_EPOCH = 116444736000000000


def filetime(now: float | None = None) -> int:
    return int((time.time() if now is None else now) * 10_000_000) + _FILETIME_EPOCH


@dataclass
class CoreConfig:
    """What every connection of one server shares (immutable after start)."""

    server_name: str
    domain: str
    lookup_nt_hash: Callable[[str], bytes | None]
    is_admin: Callable[[str], bool]
    pipe_factory: PipeFactory | None = None
    allow_anonymous: bool = True
    require_encryption: bool = False
    # Announce SIGNING_REQUIRED (as domain controllers and Windows 11 24H2 do). Off by default:
    # a client then cannot open a null session (it has no key to sign with). Authenticated
    # sessions are signed whenever either side requires it, and every signed request is verified.
    require_signing: bool = False
    # Asked before a logon of a real account completes (user, is_admin): False refuses it
    # with STATUS_REQUEST_NOT_ACCEPTED (the account holds too many sessions).
    may_logon: Callable[[str, bool], bool] = lambda user, is_admin: True
    server_guid: bytes = field(default_factory=lambda: os.urandom(16))
    max_pipes: int = 64  # opens per authenticated session
    max_pipes_anonymous: int = 4  # opens per null session
    pipe_budget: Budget = field(default_factory=lambda: Budget(MAX_PIPES_SERVER))  # opens server-wide
    # Bytes of unread pipe output: per connection (the limit) and server-wide (shared).
    max_unread_per_connection: int = DEFAULT_MAX_UNREAD_PER_CONNECTION
    unread_budget: Budget = field(default_factory=lambda: Budget(DEFAULT_MAX_UNREAD_SERVER))
    max_trees: int = 16  # tree connects per session
    max_credits: int = 512


class SessionRegistry:
    """How a connection reports its session to the live table (see ``sessions.SessionTable``).

    The default does nothing, for tests of the core alone.
    """

    def logon(self, connection_id: str, session: SmbSession, dialect: str) -> int | None:
        """A session became valid; returns its table key."""
        return None

    def logoff(self, connection_id: str) -> None:
        """The connection's session ended."""

    def touch(self, connection_id: str) -> None:
        """A request arrived."""

    def opens(self, connection_id: str, count: int) -> None:
        """The session's number of pipe opens changed."""


@dataclass
class Response:
    """One response of a (possibly compound) reply before it is framed and signed."""

    header: Header
    body: bytes
    session: SmbSession | None = None  # whose key signs it
    sign: bool = False
    hash_into: SmbSession | None = None  # 3.1.1: a SESSION_SETUP leg hashed into its session


class ServerConnection:
    """The server side of one TCP connection."""

    def __init__(self, config: CoreConfig, registry: SessionRegistry | None = None, *,
                 connection_id: str = "conn", client_address: str = "", transport: str = "") -> None:
        self.config = config
        self.registry = registry or SessionRegistry()
        self.id = connection_id
        self.client_address = client_address
        self.transport = transport
        self.state = ConnectionState.AWAIT_NEGOTIATE
        self.negotiate_request: NegotiateRequest | None = None
        self.negotiated: Negotiated | None = None
        self.preauth_hash = bytes(64)
        self.credits = CreditWindow(config.max_credits)
        self.unread = Budget(config.max_unread_per_connection)  # bytes of unread pipe output
        self.session: SmbSession | None = None  # one session per connection
        self.close_reason = ""
        self._next_file = 1
        # What this connection carried, for operators and tests: requests seen signed (and
        # verified), requests that arrived encrypted, requests refused for a bad signature.
        self.counters: Counter[str] = Counter()

    # ----------------------------------------------------------------- public

    @property
    def closed(self) -> bool:
        return self.state is ConnectionState.CLOSED

    @property
    def dialect(self) -> Dialect | None:
        return None if self.negotiated is None else self.negotiated.dialect

    @property
    def logged_on(self) -> bool:
        """A valid session exists (a null session counts: it logged on)."""
        return self.session is not None and self.session.state is SessionState.VALID

    @property
    def authenticated(self) -> bool:
        """A valid session of a real account (not null/guest)."""
        return self.logged_on and self.session is not None and not self.session.anonymous

    def pending_output(self) -> bool:
        """Some pipe holds a reply the client has not read yet."""
        return self.session is not None and any(o.pipe.pending() for o in self.session.opens.values())

    @property
    def security_mode(self) -> int:
        mode = SecurityMode.SIGNING_ENABLED
        if self.config.require_signing:
            mode |= SecurityMode.SIGNING_REQUIRED
        return int(mode)

    def close(self, reason: str = "closed") -> None:
        """End the connection: the session leaves the table, its pipes close."""
        if self.state is not ConnectionState.CLOSED:
            self.close_reason = reason
            self.state = advance_connection(self.state, ConnectionEvent.CLOSE)
        self.end_session()

    def receive_frame(self, frame: bytes) -> list[bytes]:
        """Handle one NetBIOS payload; returns the frames to send (maybe none)."""
        if self.closed:
            return []
        try:
            if frame[:4] == SMB1_MAGIC:
                return self._smb1(frame)
            if frame[:4] == TRANSFORM_MAGIC:
                session, plain = self._decrypt(frame)
                # The reply is sealed with the keys that opened the request, even when the
                # request (a re-authentication) replaces them.
                security, session_id = session.security, session.id
                self.counters["encrypted"] += 1
                out = self._smb2(plain, encrypted_by=session)
                return [security.encrypt(o, session_id) for o in out] if out else []
            return self._smb2(frame, encrypted_by=None)
        except (Smb2DecodeError, ProtocolStateError, _Drop) as exc:
            log.info("connection %s from %s dropped: %s", self.id, self.client_address, escape(str(exc)))
            self.close(str(exc))
            return []

    # ----------------------------------------------------------------- SMB1 and transform

    def _smb1(self, frame: bytes) -> list[bytes]:
        from smbsessions.server.smb2.negotiate import smb1_dialects, smb1_upgrade_dialect

        if self.state is not ConnectionState.AWAIT_NEGOTIATE:
            raise _Drop("SMB1 after negotiation")
        dialect = smb1_upgrade_dialect(smb1_dialects(frame))
        if dialect is None:
            self.state = advance_connection(self.state, ConnectionEvent.SMB1_ONLY)
            log.info("connection %s from %s: SMB1-only client refused", self.id, self.client_address)
            self.close("SMB1 only")
            return []
        header = Header(0, 0, Command.NEGOTIATE, 1, HeaderFlags.SERVER_TO_REDIR, 0, 0, 0, 0, bytes(16))
        if dialect is Dialect.SMB_2_WILDCARD:
            self.state = advance_connection(self.state, ConnectionEvent.SMB1_UPGRADE)
            self.credits.restart_at(1)
        else:
            self.negotiate_request = NegotiateRequest(0, 0, bytes(16), (int(dialect),))
            self.negotiated = Negotiated(dialect, 0, None, handlers.HMAC, [])
            self.state = advance_connection(self.state, ConnectionEvent.NEGOTIATE)
            self.credits.restart_at(0)
            self.credits.grant(1)
        body = handlers.negotiate_body(self, dialect, 0, [])
        return [codec.encode_header(header) + body]

    def _decrypt(self, frame: bytes) -> tuple[SmbSession, bytes]:
        if len(frame) < TRANSFORM_HEADER_SIZE + HEADER_SIZE:
            raise _Drop("truncated TRANSFORM_HEADER")
        (session_id,) = struct.unpack_from("<Q", frame, 44)
        session = self.session
        if session is None or session.id != session_id or not session.security.can_encrypt:
            raise _Drop("TRANSFORM_HEADER for an unknown session")
        plain = session.security.decrypt(frame)
        if plain is None:
            raise _Drop("message failed to decrypt")
        return session, plain

    # ----------------------------------------------------------------- SMB2

    def _smb2(self, frame: bytes, encrypted_by: SmbSession | None) -> list[bytes]:
        messages = list(codec.split_compound(frame))
        if len(messages) > 1:
            if not self.logged_on:
                raise _Drop("compound request before logon")
            if any(m.header.command in (Command.NEGOTIATE, Command.SESSION_SETUP) for m in messages):
                raise _Drop("NEGOTIATE or SESSION_SETUP inside a compound request")
            if any(m.header.command == Command.LOGOFF for m in messages[:-1]):
                raise _Drop("LOGOFF followed by more commands")
        if encrypted_by is not None and any(m.header.session_id != encrypted_by.id for m in messages):
            raise _Drop("encrypted message for another session")
        responses: list[Response] = []
        previous: tuple[Message, Response | None, bytes] | None = None
        for index, message in enumerate(messages):
            response, file_id = self._one(message, index, previous, encrypted_by is not None)
            previous = (message, response, file_id)
            if response is not None:
                responses.append(response)
            if self.closed:
                break
        return [self._frame(responses)] if responses else []

    def _frame(self, responses: list[Response]) -> bytes:
        parts: list[bytes] = []
        for i, response in enumerate(responses):
            body = response.body
            last = i + 1 == len(responses)
            length = HEADER_SIZE + len(body)
            pad = 0 if last else -length % 8
            header = replace(response.header, next_command=0 if last else length + pad)
            message = codec.encode_header(header) + body + b"\0" * pad
            if response.sign and response.session is not None and response.session.security.can_sign:
                message = response.session.security.sign_response(message, header.message_id)
            if response.hash_into is not None:
                response.hash_into.preauth_hash = preauth_hash(response.hash_into.preauth_hash, message)
            parts.append(message)
        return b"".join(parts)

    def _one(self, message: Message, index: int, previous: tuple[Message, Response | None, bytes] | None,
             encrypted: bool) -> tuple[Response | None, bytes]:
        header = message.header
        command = header.command
        if command == Command.CANCEL:
            return None, b""  # nothing of ours ever goes async; cancel has no response
        if header.flags & HeaderFlags.ASYNC_COMMAND:
            raise _Drop("async request")
        if self.state is not ConnectionState.NEGOTIATED and command != Command.NEGOTIATE:
            raise _Drop(f"command {command:#x} before NEGOTIATE")
        if self.state is ConnectionState.NEGOTIATED and command == Command.NEGOTIATE:
            raise _Drop("second NEGOTIATE")
        if not self.credits.consume(header.message_id, header.credit_charge):
            raise _Drop(f"MessageId {header.message_id} outside the window")
        related = bool(header.flags & HeaderFlags.RELATED_OPERATIONS)
        file_id = b""
        if related:
            if index == 0 or previous is None:
                return self._error(header, NtStatus.STATUS_INVALID_PARAMETER), b""
            prev_message, prev_response, file_id = previous
            if prev_response is not None and prev_response.header.status not in handlers.OK_STATUSES:
                return self._error(header, prev_response.header.status), file_id
            header = replace(header, session_id=prev_message.header.session_id,
                             tree_id=prev_response.header.tree_id if prev_response else header.tree_id)
            message = Message(header, message.raw, message.body)
        self.registry.touch(self.id)
        session = None
        if command not in SESSIONLESS_COMMANDS or header.session_id:
            session = self.session if self.session and self.session.id == header.session_id else None
            if command not in SESSIONLESS_COMMANDS and (session is None
                                                       or session.state is not SessionState.VALID):
                return self._error(header, NtStatus.STATUS_USER_SESSION_DELETED), file_id
            if command == Command.SESSION_SETUP and header.session_id and session is None:
                return self._error(header, NtStatus.STATUS_USER_SESSION_DELETED), file_id
        sign = False
        if session is not None and session.state is SessionState.VALID and session.security.can_sign:
            if not encrypted:
                if header.flags & HeaderFlags.SIGNED:
                    if not session.security.verify(message.raw, header.message_id,
                                                   command == Command.CANCEL):
                        self.counters["bad_signature"] += 1
                        log.warning("connection %s from %s: bad signature on %s, refused", self.id,
                                    self.client_address, _command_name(command))
                        return self._error(header, NtStatus.STATUS_ACCESS_DENIED), file_id
                    self.counters["signed"] += 1
                elif session.signing_required and command != Command.SESSION_SETUP:
                    return self._error(header, NtStatus.STATUS_ACCESS_DENIED), file_id
                sign = True
            if session.encrypt_data and not encrypted and command not in SESSIONLESS_COMMANDS:
                return self._error(header, NtStatus.STATUS_ACCESS_DENIED, session, sign), file_id
        if command in TREE_COMMANDS and (session is None or header.tree_id not in session.trees):
            return self._error(header, NtStatus.STATUS_NETWORK_NAME_DELETED, session, sign), file_id
        try:
            request = codec.decode_request(command, message.raw)
        except Smb2DecodeError as exc:
            if command == Command.NEGOTIATE:
                raise
            return self._error(header, exc.status, session, sign), file_id
        try:
            result = handlers.handle(self, message, request, session, file_id)
        except NegotiateRefused as exc:
            if exc.status is None:
                raise _Drop(str(exc)) from exc
            response = self._error(header, exc.status)
            self.close(str(exc))
            return response, file_id
        response = Response(
            replace(header, status=result.status, flags=handlers.response_flags(header, sign and result.sign),
                    credits=self.credits.grant(header.credits), session_id=result.session_id
                    if result.session_id is not None else header.session_id,
                    tree_id=result.tree_id if result.tree_id is not None else header.tree_id,
                    signature=bytes(16), next_command=0),
            result.body if result.body is not None else codec.ERROR_BODY,
            result.signer or session, (sign and result.sign) or result.force_sign, result.hash_into,
        )
        if response.sign:
            response.header = replace(response.header, flags=response.header.flags | HeaderFlags.SIGNED)
        return response, result.file_id or file_id

    def _error(self, header: Header, status: int, session: SmbSession | None = None,
               sign: bool = False) -> Response:
        flags = handlers.response_flags(header, sign)
        return Response(
            replace(header, status=int(status), flags=flags, credits=self.credits.grant(header.credits),
                    signature=bytes(16), next_command=0),
            codec.ERROR_BODY, session, sign,
        )

    # ----------------------------------------------------------------- sessions and pipes

    def end_session(self) -> None:
        """The connection's session ends (logoff, new logon, failure or disconnect)."""
        session, self.session = self.session, None
        if session is None:
            return
        was_valid = session.state is SessionState.VALID
        session.end()
        for open_ in list(session.opens.values()):
            _close_pipe(open_.pipe)
            self.config.pipe_budget.give()
        session.opens.clear()
        session.trees.clear()
        if was_valid:
            self.registry.logoff(self.id)

    def open_pipe(self, session: SmbSession) -> PipeHandle | None:
        factory = self.config.pipe_factory
        if factory is None:
            return None
        caller = CallerInfo(
            session_key=session.table_key or 0,
            username=session.user,
            domain=session.domain,
            is_admin=session.is_admin,
            is_guest=session.anonymous,
            client_address=self.client_address,
        )
        try:
            return PipeHandle(factory(caller), budgets=(self.unread, self.config.unread_budget))
        except Exception:
            log.exception("srvsvc pipe factory failed")
            return None

    def next_file_id(self) -> bytes:
        self._next_file += 1
        return struct.pack("<QQ", self._next_file, int.from_bytes(os.urandom(8), "little"))

    def logon_succeeded(self, session: SmbSession) -> None:
        dialect = self.dialect.label if self.dialect else "SMB 2.0.2"
        session.table_key = self.registry.logon(self.id, session, dialect)


def _close_pipe(pipe: PipeHandle) -> None:
    try:
        pipe.close()
    except Exception:
        log.exception("srvsvc pipe endpoint failed to close")


def _command_name(command: int) -> str:
    try:
        return Command(command).name
    except ValueError:
        return f"command {command:#x}"


class _Drop(Exception):
    """The connection must be dropped (MS-SMB2 says 'disconnect' for this)."""


__all__ = ["Budget", "CoreConfig", "ServerConnection", "SessionRegistry", "SessionSecurity"]
