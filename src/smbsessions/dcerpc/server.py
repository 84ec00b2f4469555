"""Server side of one association: bind/alter_context answers, request reassembly, response
fragmentation, faults, RPC-level authentication."""

from __future__ import annotations

import dataclasses
import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..status import ProtocolError, RpcFaultStatus
from .pdu import (
    BIND_TIME_FEATURE_PREFIX,
    DEFAULT_MAX_FRAG,
    MAX_CONTEXTS,
    MAX_QUEUED_BYTES,
    MAX_REQUEST_STUB,
    MIN_FRAG,
    NAK_REASON_AUTHENTICATION_TYPE_NOT_RECOGNIZED,
    NAK_REASON_NOT_SPECIFIED,
    NDR20,
    NULL_SYNTAX,
    PFC_FIRST_FRAG,
    PFC_LAST_FRAG,
    PFC_SUPPORT_HEADER_SIGN,
    REASON_ABSTRACT_SYNTAX_NOT_SUPPORTED,
    REASON_LOCAL_LIMIT_EXCEEDED,
    REASON_NOT_SPECIFIED,
    REASON_TRANSFER_SYNTAXES_NOT_SUPPORTED,
    RESULT_ACCEPTANCE,
    RESULT_NEGOTIATE_ACK,
    RESULT_PROVIDER_REJECTION,
    SIGNED_LEVELS,
    SRVSVC,
    AuthLevel,
    BindAck,
    ContextElement,
    ContextResult,
    Pdu,
    PduStream,
    PType,
    SecTrailer,
    SyntaxId,
    decode_bind,
    decode_request,
    encode_bind_ack,
    encode_pdu,
    encode_pdu_with_auth,
    fault_pdu,
    fragment,
)
from .security import (
    AcceptorFactory,
    AuthAcceptor,
    PacketSecurity,
    RpcAuthError,
    auth_fragments,
    check_verifier,
    strip_verification_trailer,
)
from .state import (
    AUTH_TRANSITIONS,
    SERVER_TRANSITIONS,
    AuthEvent,
    AuthState,
    ServerEvent,
    ServerState,
    advance,
)


@dataclass(frozen=True)
class Call:
    """A complete request the server must answer with ``respond`` or ``fault``."""

    call_id: int
    context_id: int
    opnum: int
    stub: bytes


@dataclass
class _PendingRequest:
    call_id: int
    context_id: int
    opnum: int
    parts: list[bytes] = field(default_factory=list)
    size: int = 0


@dataclass
class _ServerAuth:
    trailer: SecTrailer
    acceptor: AuthAcceptor
    state: AuthState = AuthState.PENDING
    security: PacketSecurity | None = None

    @property
    def complete(self) -> bool:
        return self.state in (AuthState.COMPLETE, AuthState.REVOKED)

    @property
    def failed(self) -> bool:
        return self.state in (AuthState.FAILED, AuthState.REVOKED)

    def advance(self, event: AuthEvent) -> None:
        self.state = advance(AUTH_TRANSITIONS, self.state, event)


class RpcServerConnection:
    """Server side of one association on one pipe open.

    ``receive_data`` takes whatever the client wrote and returns the calls it
    completed; binds, alter_contexts and protocol errors are answered on the
    spot. Outgoing PDUs wait in a queue: ``next_pdu`` gives one per pipe read.

    ``acceptor_factory`` enables RPC-level authentication: a bind carrying a
    verifier starts an exchange with the acceptor it returns (3 legs: bind ->
    bind_ack, then auth3 or alter_context); ``auth_acceptor`` is that acceptor
    once complete (its identity is the caller), and every request is checked
    against its level.
    """

    def __init__(
        self,
        interfaces: Sequence[SyntaxId] = (SRVSVC,),
        max_frag: int = DEFAULT_MAX_FRAG,
        secondary_address: str = "\\PIPE\\srvsvc",
        assoc_group: int = 0x1234,
        acceptor_factory: AcceptorFactory | None = None,
        max_request_stub: int = MAX_REQUEST_STUB,
    ) -> None:
        """``max_request_stub`` bounds what one unfinished request may make us buffer."""
        self.interfaces = tuple(interfaces)
        self.max_request_stub = max_request_stub
        self.max_frag = max_frag
        self.secondary_address = secondary_address
        self.assoc_group = assoc_group
        self.contexts: dict[int, SyntaxId] = {}
        self.xmit_frag = max_frag
        self._stream = PduStream()
        self._outgoing: deque[bytes] = deque()
        self._queued_bytes = 0
        self._request: _PendingRequest | None = None
        self._refused_call: int | None = None
        self.state = ServerState.UNBOUND
        self._acceptor_factory = acceptor_factory
        self._auth: _ServerAuth | None = None

    @property
    def auth_level(self) -> int:
        """The association's authentication level (AuthLevel.NONE without RPC-level auth)."""
        return AuthLevel.NONE if self._auth is None else self._auth.trailer.auth_level

    @property
    def auth_acceptor(self) -> AuthAcceptor | None:
        """The completed, successful exchange that authenticated the association, if any."""
        auth = self._auth
        return auth.acceptor if auth is not None and auth.complete and not auth.failed else None

    # ---- incoming

    def receive_data(self, data: bytes) -> list[Call]:
        if self.broken:
            return []
        if self._queued_bytes > MAX_QUEUED_BYTES:
            self._break()
            return []
        try:
            pdus = self._stream.feed(data)
        except ProtocolError:
            self._break()
            return []
        calls = []
        for pdu in pdus:
            call = self._handle(pdu)
            if call is not None:
                calls.append(call)
        return calls

    @property
    def broken(self) -> bool:
        """Input is ignored from now on (a framing error, a flood, ``abort`` or ``close``)."""
        return self.state is ServerState.BROKEN

    def _break(self, status: int = RpcFaultStatus.nca_s_proto_error) -> None:
        # The byte stream is unsalvageable: tell the client once, then go quiet.
        self.state = advance(SERVER_TRANSITIONS, self.state, ServerEvent.BREAK)
        self._queue(fault_pdu(0, status))

    def _handle(self, pdu: Pdu) -> Call | None:
        if pdu.ptype in (PType.BIND, PType.ALTER_CONTEXT):
            self._answer_bind(pdu)
            return None
        if pdu.ptype == PType.AUTH3:
            self._auth3(pdu)
            return None
        if pdu.ptype != PType.REQUEST:
            # cancel, orphaned, shutdown and stray server PDUs need no answer.
            return None
        if pdu.call_id == self._refused_call:
            # Later fragments of a call already answered with a fault: drop them quietly.
            if pdu.last:
                self._refused_call = None
            return None
        checked = self._check_auth(pdu)
        if checked is None:
            return None
        pdu = checked
        try:
            request = decode_request(pdu)
        except ProtocolError:
            self._refuse(pdu, RpcFaultStatus.nca_s_proto_error)
            return None
        if pdu.first:
            if request.context_id not in self.contexts:
                self._refuse(pdu, RpcFaultStatus.nca_s_unk_if, request.context_id)
                return None
            self._request = _PendingRequest(pdu.call_id, request.context_id, request.opnum)
        pending = self._request
        if pending is None or pending.call_id != pdu.call_id:
            self._refuse(pdu, RpcFaultStatus.nca_s_proto_error)
            return None
        pending.parts.append(request.stub)
        pending.size += len(request.stub)
        if pending.size > self.max_request_stub:
            self._refuse(pdu, RpcFaultStatus.nca_s_proto_error)
            return None
        if not pdu.last:
            return None
        self._request = None
        stub = strip_verification_trailer(b"".join(pending.parts))
        return Call(pending.call_id, pending.context_id, pending.opnum, stub)

    def _check_auth(self, pdu: Pdu) -> Pdu | None:
        """The request PDU with a clear body, or None once it has been refused (as Samba refuses)."""
        auth = self._auth
        if auth is None:
            if pdu.auth_length:
                self._refuse(pdu, RpcFaultStatus.rpc_s_access_denied)
                return None
            return pdu
        if auth.failed:
            self._refuse(pdu, RpcFaultStatus.rpc_s_access_denied)
            return None
        if not auth.complete:
            self._refuse(pdu, RpcFaultStatus.nca_s_proto_error)
            return None
        if auth.trailer.auth_level not in SIGNED_LEVELS:
            return pdu  # CONNECT: the bind was authenticated, requests need no verifier
        if not pdu.auth_length and auth.trailer.auth_level in (AuthLevel.CALL, AuthLevel.PKT):
            # impacket binds at PKT and then sends its requests unsigned; Samba 4.17 accepts
            # them (measured), so do we. A verifier, when present, is checked as for integrity.
            return pdu
        if auth.security is None or not pdu.auth_length:
            self._refuse(pdu, RpcFaultStatus.nca_s_proto_error)
            return None
        try:
            return check_verifier(pdu, auth.trailer, auth.security)
        except RpcAuthError:
            # Sequence numbers are out of step from here on: fault this call, then go quiet.
            self._refuse(pdu, RpcFaultStatus.nca_s_fault_sec_pkg_error)
            auth.advance(AuthEvent.BAD_VERIFIER)
            return None

    def _refuse(self, pdu: Pdu, status: int, context_id: int = 0) -> None:
        """Fault the call ``pdu`` belongs to, once: its later fragments are dropped quietly."""
        self._queue(fault_pdu(pdu.call_id, status, context_id))
        self._request = None
        self._refused_call = None if pdu.last else pdu.call_id

    def _answer_bind(self, pdu: Pdu) -> None:
        reply_type = PType.BIND_ACK if pdu.ptype == PType.BIND else PType.ALTER_CONTEXT_RESP
        try:
            bind = decode_bind(pdu.body)
        except ProtocolError:
            self._queue(self._bind_nak(pdu.call_id, REASON_NOT_SPECIFIED))
            return
        # One BIND per association (more contexts come with ALTER_CONTEXT).
        if pdu.ptype == PType.BIND and self.state is not ServerState.UNBOUND:
            self._queue(self._bind_nak(pdu.call_id, REASON_NOT_SPECIFIED))
            return
        reply_token: bytes | None = None
        if pdu.trailer is not None:
            outcome = self._bind_auth(pdu)
            if isinstance(outcome, int):
                if pdu.ptype == PType.BIND:
                    self._queue(self._bind_nak(pdu.call_id, outcome))
                else:
                    self._queue(fault_pdu(pdu.call_id, RpcFaultStatus.rpc_s_access_denied))
                return
            reply_token = outcome
        if pdu.ptype == PType.BIND:
            self.state = advance(SERVER_TRANSITIONS, self.state, ServerEvent.BIND_ACCEPTED)
            # A client may not ask for less than MIN_FRAG; we never send more than max_frag.
            self.xmit_frag = min(self.max_frag, max(MIN_FRAG, bind.max_recv_frag))
        results = [self._negotiate(ctx) for ctx in bind.contexts]
        ack = BindAck(self.xmit_frag, self.max_frag, self.assoc_group,
                      self.secondary_address if reply_type == PType.BIND_ACK else "", tuple(results))
        flags = PFC_FIRST_FRAG | PFC_LAST_FRAG | (pdu.flags & PFC_SUPPORT_HEADER_SIGN)
        if reply_token and self._auth is not None:  # an empty final token travels as no verifier
            self._queue(encode_pdu_with_auth(reply_type, flags, pdu.call_id, encode_bind_ack(ack),
                                             self._auth.trailer, reply_token))
        else:
            self._queue(encode_pdu(reply_type, flags, pdu.call_id, encode_bind_ack(ack)))

    def _bind_auth(self, pdu: Pdu) -> bytes | int | None:
        """Run the auth leg a bind / alter_context carries: the reply token, or a bind_nak reason.

        None: an alter_context repeating the auth of a complete exchange (answered without a token).
        """
        trailer = pdu.trailer
        assert trailer is not None
        auth = self._auth
        if auth is not None:
            if auth.failed or (trailer.auth_type, trailer.auth_level, trailer.context_id) != (
                auth.trailer.auth_type, auth.trailer.auth_level, auth.trailer.context_id
            ):
                return NAK_REASON_NOT_SPECIFIED
            if auth.complete:
                return None
            return self._auth_step(auth, pdu.auth_value)
        if trailer.auth_level not in (AuthLevel.CONNECT, *SIGNED_LEVELS):
            return NAK_REASON_NOT_SPECIFIED
        acceptor = None if self._acceptor_factory is None else self._acceptor_factory(trailer.auth_type)
        if acceptor is None:
            return NAK_REASON_AUTHENTICATION_TYPE_NOT_RECOGNIZED
        auth = _ServerAuth(dataclasses.replace(trailer, pad_length=0), acceptor)
        reply = self._auth_step(auth, pdu.auth_value)
        if isinstance(reply, bytes):
            self._auth = auth
        return reply

    def _auth_step(self, auth: _ServerAuth, token: bytes) -> bytes | int:
        try:
            reply, done = auth.acceptor.step(token)
        except RpcAuthError:
            auth.advance(AuthEvent.STEP_REFUSED)
            return NAK_REASON_NOT_SPECIFIED
        if done:
            self._finish_auth(auth)
        return reply

    def _finish_auth(self, auth: _ServerAuth) -> None:
        if auth.trailer.auth_level not in SIGNED_LEVELS:
            auth.advance(AuthEvent.DONE_UNSIGNED)
            return
        auth.security = auth.acceptor.packet_security()
        # An anonymous logon has no key: nothing to sign with, so no signed level.
        auth.advance(AuthEvent.DONE_NO_KEY if auth.security is None else AuthEvent.DONE)

    def _auth3(self, pdu: Pdu) -> None:
        """The third leg (no answer is sent; a failure refuses every later call)."""
        auth = self._auth
        if auth is None or auth.complete or pdu.trailer is None:
            return
        expected = (auth.trailer.auth_type, auth.trailer.context_id)
        if (pdu.trailer.auth_type, pdu.trailer.context_id) != expected:
            auth.advance(AuthEvent.AUTH3_MISMATCH)
            return
        self._auth_step(auth, pdu.auth_value)
        if not auth.complete:
            auth.advance(AuthEvent.AUTH3_INCOMPLETE)

    def _negotiate(self, ctx: ContextElement) -> ContextResult:
        if any(t.uuid.bytes_le[:8] == BIND_TIME_FEATURE_PREFIX for t in ctx.transfer):
            # Acknowledge bind-time feature negotiation, supporting no optional feature.
            return ContextResult(RESULT_NEGOTIATE_ACK, 0, NULL_SYNTAX)
        if ctx.abstract not in self.interfaces:
            return ContextResult(RESULT_PROVIDER_REJECTION, REASON_ABSTRACT_SYNTAX_NOT_SUPPORTED,
                                 NULL_SYNTAX)
        if NDR20 not in ctx.transfer:
            return ContextResult(RESULT_PROVIDER_REJECTION, REASON_TRANSFER_SYNTAXES_NOT_SUPPORTED,
                                 NULL_SYNTAX)
        if ctx.context_id not in self.contexts and len(self.contexts) >= MAX_CONTEXTS:
            return ContextResult(RESULT_PROVIDER_REJECTION, REASON_LOCAL_LIMIT_EXCEEDED, NULL_SYNTAX)
        self.contexts[ctx.context_id] = ctx.abstract
        return ContextResult(RESULT_ACCEPTANCE, 0, NDR20)

    def _bind_nak(self, call_id: int, reason: int) -> bytes:
        return encode_pdu(PType.BIND_NAK, PFC_FIRST_FRAG | PFC_LAST_FRAG, call_id,
                          struct.pack("<HB", reason, 1) + bytes([5, 0]))

    @property
    def buffered_bytes(self) -> int:
        """Input held for later: a partial PDU plus the fragments of an unfinished request."""
        return self._stream.pending + (0 if self._request is None else self._request.size)

    def abort(self, status: int = RpcFaultStatus.nca_s_proto_error) -> None:
        """Drop the buffered input, answer one fault, and refuse everything after it."""
        self._stream = PduStream()
        self._request = None
        self._break(status)

    def close(self) -> None:
        """Drop every buffer (partial PDU, unfinished request, queued output) and refuse more input."""
        self._stream = PduStream()
        self._request = None
        self._outgoing.clear()
        self._queued_bytes = 0
        self._auth = None
        self.state = advance(SERVER_TRANSITIONS, self.state, ServerEvent.BREAK)

    # ---- outgoing

    def respond(self, call: Call, stub: bytes) -> None:
        """Queue the response to ``call``, fragmented to the negotiated size (signed/sealed as bound)."""
        auth = self._auth
        if auth is not None and auth.security is not None and auth.trailer.auth_level in SIGNED_LEVELS:
            pdus = auth_fragments(PType.RESPONSE, call.call_id, call.context_id, stub, self.xmit_frag, 0,
                                  auth.trailer, auth.security)
        else:
            pdus = fragment(PType.RESPONSE, call.call_id, call.context_id, stub, self.xmit_frag)
        for pdu in pdus:
            self._queue(pdu)

    def fault(self, call: Call, status: int) -> None:
        """Queue a fault PDU answering ``call``."""
        self._queue(fault_pdu(call.call_id, status, call.context_id))

    def _queue(self, pdu: bytes) -> None:
        self._outgoing.append(pdu)
        self._queued_bytes += len(pdu)

    def next_pdu(self) -> bytes | None:
        """The next whole PDU to hand to the client, or None."""
        if not self._outgoing:
            return None
        pdu = self._outgoing.popleft()
        self._queued_bytes -= len(pdu)
        return pdu
