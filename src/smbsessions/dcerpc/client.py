"""Client side of one association: bind (optionally authenticated), requests, response reassembly."""

from __future__ import annotations

import struct

from ..status import ProtocolError, RpcFaultError
from .pdu import (
    DEFAULT_MAX_FRAG,
    HEADER_SIZE,
    MAX_FRAG,
    NAK_REASON_NAMES,
    NDR20,
    PFC_FIRST_FRAG,
    PFC_LAST_FRAG,
    RESULT_ACCEPTANCE,
    SIGNED_LEVELS,
    SRVSVC,
    AuthLevel,
    Bind,
    BindAck,
    ContextElement,
    Pdu,
    PType,
    SecTrailer,
    SyntaxId,
    decode_bind_ack,
    decode_fault,
    decode_response,
    encode_bind,
    encode_pdu,
    encode_pdu_with_auth,
    fragment,
    parse_pdu,
)
from .security import (
    AuthInitiator,
    PacketSecurity,
    RpcAuthError,
    auth_fragments,
    check_verifier,
)
from .state import CLIENT_TRANSITIONS, ClientEvent, ClientState, advance

# Any value works; the server echoes it and checks it on every verifier.
CLIENT_AUTH_CONTEXT_ID = 1


class RpcClientConnection:
    """Client side of one association: bind, then calls one at a time.

    With ``auth`` and ``auth_level``, the bind carries the initiator's first
    token, ``receive_bind_ack`` feeds it the server's, and ``auth3`` gives the
    third leg to write before the first call; requests are then signed (and
    sealed at PKT_PRIVACY), and every response fragment's verifier is checked.
    """

    def __init__(
        self,
        abstract: SyntaxId = SRVSVC,
        max_xmit_frag: int = DEFAULT_MAX_FRAG,
        max_recv_frag: int = MAX_FRAG,
        auth: AuthInitiator | None = None,
        auth_level: int = AuthLevel.PKT_INTEGRITY,
    ) -> None:
        self.abstract = abstract
        self.max_xmit_frag = max_xmit_frag
        self.max_recv_frag = max_recv_frag
        self.state = ClientState.UNBOUND
        self.auth = auth
        self._trailer = (
            None if auth is None else SecTrailer(auth.auth_type, auth_level, 0, CLIENT_AUTH_CONTEXT_ID)
        )
        self._security: PacketSecurity | None = None
        self._auth3_token: bytes | None = None
        self._call_id = 0
        self._context_id = 0
        self._pending: int | None = None
        self._parts: list[bytes] = []
        self._received = 0

    @property
    def bound(self) -> bool:
        """A bind succeeded: calls may be made (``state`` tells more)."""
        return self.state in (ClientState.BOUND, ClientState.CALLING)

    def _next_call_id(self) -> int:
        self._call_id += 1
        return self._call_id

    def bind(self) -> bytes:
        """The bind PDU offering NDR20 for the interface."""
        body = encode_bind(
            Bind(self.max_xmit_frag, self.max_recv_frag, 0,
                 (ContextElement(self._context_id, self.abstract, (NDR20,)),))
        )
        self.state = advance(CLIENT_TRANSITIONS, self.state, ClientEvent.BIND)
        call_id = self._next_call_id()
        self._pending = call_id
        if self.auth is not None and self._trailer is not None:
            token = self.auth.step(None) or b""
            return encode_pdu_with_auth(PType.BIND, PFC_FIRST_FRAG | PFC_LAST_FRAG, call_id, body,
                                        self._trailer, token)
        return encode_pdu(PType.BIND, PFC_FIRST_FRAG | PFC_LAST_FRAG, call_id, body)

    def auth3(self) -> bytes | None:
        """The rpc_auth3 PDU to write after the bind_ack (no answer comes), or None."""
        token, self._auth3_token = self._auth3_token, None
        if token is None or self._trailer is None:
            return None
        return encode_pdu_with_auth(PType.AUTH3, PFC_FIRST_FRAG | PFC_LAST_FRAG, self._next_call_id(),
                                    b"\0" * 4, self._trailer, token)

    def receive_bind_ack(self, data: bytes) -> BindAck:
        """Accept the server's answer to ``bind``; raise if the interface was refused."""
        pdu = parse_pdu(data)
        if pdu.ptype == PType.BIND_NAK:
            reason = struct.unpack_from("<H", pdu.body)[0] if len(pdu.body) >= 2 else -1
            name = NAK_REASON_NAMES.get(reason, "unknown")
            raise ProtocolError(f"the server refused the srvsvc bind (bind_nak reason {reason}, {name})")
        if pdu.ptype == PType.FAULT:
            fault = decode_fault(pdu)
            raise RpcFaultError(fault.status, "in answer to bind")
        if pdu.ptype != PType.BIND_ACK:
            raise ProtocolError(f"expected bind_ack, got PDU type {pdu.ptype}")
        if pdu.call_id != self._pending:
            raise ProtocolError(f"bind_ack for call {pdu.call_id}, expected {self._pending}")
        ack = decode_bind_ack(pdu.body)
        if not ack.results or ack.results[0].result != RESULT_ACCEPTANCE:
            reason = ack.results[0].reason if ack.results else -1
            raise ProtocolError(f"the server rejected the srvsvc presentation context (reason {reason})")
        if ack.max_recv_frag < HEADER_SIZE + 16 or ack.max_xmit_frag < HEADER_SIZE + 16:
            raise ProtocolError(
                f"server fragment sizes {ack.max_xmit_frag}/{ack.max_recv_frag} leave no room for data"
            )
        if self.auth is not None and self._trailer is not None:
            if pdu.trailer is None:
                raise RpcAuthError("the server's bind_ack carries no authentication token")
            self._auth3_token = self.auth.step(pdu.auth_value)
            if self._trailer.auth_level in SIGNED_LEVELS:
                self._security = self.auth.packet_security()
        # The server's max_recv bounds what we send; its max_xmit what it sends us.
        self.max_xmit_frag = min(self.max_xmit_frag, ack.max_recv_frag)
        self.state = advance(CLIENT_TRANSITIONS, self.state, ClientEvent.BIND_ACK)
        self._pending = None
        return ack

    def request(self, opnum: int, stub: bytes) -> list[bytes]:
        """Request PDUs for one call; feed the answer to ``receive``.

        At a signed level the PDUs are signed as they are built (sequence numbers
        advance): send every one of them, in order.
        """
        if not self.bound:
            raise ProtocolError("request before a successful bind")
        self.state = advance(CLIENT_TRANSITIONS, self.state, ClientEvent.REQUEST)
        call_id = self._next_call_id()
        self._pending = call_id
        self._parts = []
        self._received = 0
        if self._security is not None and self._trailer is not None:
            return auth_fragments(PType.REQUEST, call_id, self._context_id, stub, self.max_xmit_frag, opnum,
                                  self._trailer, self._security)
        return fragment(PType.REQUEST, call_id, self._context_id, stub, self.max_xmit_frag, opnum)

    def receive(self, pdu: Pdu, max_stub: int = 1 << 30) -> bytes | None:
        """Feed one PDU of the answer; the whole stub once the last fragment is in.

        Raises ``RpcFaultError`` for a fault, ``ProtocolError`` for anything unexpected.
        """
        if self._pending is None:
            raise ProtocolError("a PDU arrived with no call outstanding")
        if pdu.call_id != self._pending:
            raise ProtocolError(f"PDU for call {pdu.call_id} while waiting for call {self._pending}")
        if pdu.ptype == PType.FAULT:
            self._pending = None
            self.state = advance(CLIENT_TRANSITIONS, self.state, ClientEvent.FAULT)
            raise RpcFaultError(decode_fault(pdu).status)
        if pdu.ptype != PType.RESPONSE:
            raise ProtocolError(f"expected a response PDU, got type {pdu.ptype}")
        if self._security is not None and self._trailer is not None:
            pdu = check_verifier(pdu, self._trailer, self._security)
        if pdu.first != (not self._parts):
            raise ProtocolError("response fragments out of order")
        response = decode_response(pdu)
        self._received += len(response.stub)
        if self._received > max_stub:
            raise ProtocolError(f"response larger than {max_stub} bytes")
        self._parts.append(response.stub)
        if not pdu.last:
            return None
        self._pending = None
        self.state = advance(CLIENT_TRANSITIONS, self.state, ClientEvent.LAST_FRAGMENT)
        stub = b"".join(self._parts)
        self._parts = []
        return stub
