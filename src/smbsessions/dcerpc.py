"""Sans-I/O DCE/RPC connection-oriented PDUs (C706 chapter 12, MS-RPCE 2.2.2).

Only what an ncacn_np srvsvc conversation needs, for both sides:

* ``parse_pdu`` / ``PduStream``: bytes -> PDU objects (a pipe is a byte stream
  to some servers, so a stream splitter is provided).
* ``RpcClientConnection``: bind, request fragmentation, response reassembly,
  faults.
* ``RpcServerConnection``: bind/alter_context answers, request reassembly,
  response fragmentation, faults. It queues outgoing PDUs; the shell hands
  them to the pipe one message per read.

No socket, no SMB. Authentication verifiers (MS-RPCE 2.2.2.11): a bind or
alter_context may carry one (NTLM, raw or inside SPNEGO, through a pluggable
``AuthAcceptor`` / ``AuthInitiator``); at CONNECT level only the bind is
authenticated, at PKT_INTEGRITY every request and response is signed, at
PKT_PRIVACY their stubs are also sealed (``PacketSecurity``). Without RPC-level
authentication, ncacn_np relies on the SMB session and a request carrying a
verifier is refused.
"""

from __future__ import annotations

import dataclasses
import struct
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

from .status import ProtocolError, RpcFaultError, RpcFaultStatus


class PType(IntEnum):
    REQUEST = 0
    RESPONSE = 2
    FAULT = 3
    BIND = 11
    BIND_ACK = 12
    BIND_NAK = 13
    ALTER_CONTEXT = 14
    ALTER_CONTEXT_RESP = 15
    AUTH3 = 16
    SHUTDOWN = 17
    CO_CANCEL = 18
    ORPHANED = 19


PFC_FIRST_FRAG = 0x01
PFC_LAST_FRAG = 0x02
PFC_OBJECT_UUID = 0x80
# In a bind / bind_ack: the client can sign the PDU header, and the server agrees
# (MS-RPCE 2.2.2.3). Our NTLM verifiers always cover the header, so we echo it.
PFC_SUPPORT_HEADER_SIGN = 0x04

# Presentation-context results (C706 p_cont_def_result_t) and reasons.
RESULT_ACCEPTANCE = 0
RESULT_PROVIDER_REJECTION = 2
RESULT_NEGOTIATE_ACK = 3
REASON_NOT_SPECIFIED = 0
REASON_ABSTRACT_SYNTAX_NOT_SUPPORTED = 1
REASON_TRANSFER_SYNTAXES_NOT_SUPPORTED = 2
REASON_LOCAL_LIMIT_EXCEEDED = 3
# Presentation contexts one association may hold (clients use one or two): alter_contexts
# cannot grow the table towards 65,536 entries per pipe.
MAX_CONTEXTS = 16
# bind_nak provider reject reasons (C706 p_reject_reason_t, MS-RPCE 2.2.2.5).
NAK_REASON_NOT_SPECIFIED = 0
NAK_REASON_AUTHENTICATION_TYPE_NOT_RECOGNIZED = 8
NAK_REASON_INVALID_CHECKSUM = 9
NAK_REASON_NAMES = {
    0: "reason_not_specified", 1: "temporary_congestion", 2: "local_limit_exceeded",
    3: "called_paddr_unknown", 4: "protocol_version_not_supported", 5: "default_context_not_supported",
    6: "user_data_not_readable", 7: "no_psap_available", 8: "authentication_type_not_recognized",
    9: "invalid_checksum",
}


class AuthType(IntEnum):
    """sec_trailer auth_type (MS-RPCE 2.2.1.1.7)."""

    NONE = 0
    GSS_NEGOTIATE = 9  # SPNEGO
    WINNT = 10  # NTLM
    GSS_KERBEROS = 16
    NETLOGON = 0x44
    DEFAULT = 0xFF


class AuthLevel(IntEnum):
    """sec_trailer auth_level (MS-RPCE 2.2.1.1.8)."""

    NONE = 1
    CONNECT = 2
    CALL = 3
    PKT = 4
    PKT_INTEGRITY = 5
    PKT_PRIVACY = 6


# The bind authenticates the association; from CALL up every request and response
# carries a verifier (CALL and PKT are checked as PKT_INTEGRITY, as Samba does; a request
# without one is accepted at those two levels only, as Samba 4.17 accepts impacket's).
SIGNED_LEVELS = frozenset({AuthLevel.CALL, AuthLevel.PKT, AuthLevel.PKT_INTEGRITY, AuthLevel.PKT_PRIVACY})
SEC_TRAILER = struct.Struct("<BBBBI")
AUTH_PAD_ALIGNMENT = 16  # request/response stubs are padded so the sec_trailer follows a 16-byte multiple
NTLM_SIGNATURE_SIZE = 16

HEADER = struct.Struct("<BBBBIHHI")
HEADER_SIZE = HEADER.size  # 16
_LITTLE_ENDIAN_ASCII_IEEE = 0x00000010
_REQUEST = struct.Struct("<IHH")
_RESPONSE = struct.Struct("<IHBB")
_FAULT = struct.Struct("<IHBBII")
_BIND = struct.Struct("<HHIBBH")
_CONTEXT = struct.Struct("<HBB")
_SYNTAX = struct.Struct("<16sHH")
_RESULT = struct.Struct("<HH")

# Fragments bigger than this are refused whatever was negotiated, and so are
# reassembled requests bigger than MAX_REQUEST_STUB: a client cannot make the
# server buffer without bound.
MAX_FRAG = 0xFFFF
MAX_REQUEST_STUB = 1 << 20
DEFAULT_MAX_FRAG = 4280  # what Windows and Samba negotiate on ncacn_np
MIN_FRAG = 1432  # C706 / MS-RPCE: no fragment size below this may be negotiated
# A client that keeps writing without reading the answers gets cut off once
# this much output waits for it.
MAX_QUEUED_BYTES = 32 << 20


@dataclass(frozen=True)
class SyntaxId:
    """An interface or transfer syntax: UUID and version."""

    uuid: uuid.UUID
    major: int
    minor: int = 0

    def pack(self) -> bytes:
        return _SYNTAX.pack(self.uuid.bytes_le, self.major, self.minor)

    @classmethod
    def unpack_from(cls, data: bytes, offset: int) -> SyntaxId:
        raw, major, minor = _SYNTAX.unpack_from(data, offset)
        return cls(uuid.UUID(bytes_le=raw), major, minor)


SRVSVC = SyntaxId(uuid.UUID("4b324fc8-1670-01d3-1278-5a47bf6ee188"), 3, 0)
NDR20 = SyntaxId(uuid.UUID("8a885d04-1ceb-11c9-9fe8-08002b104860"), 2, 0)
NDR64 = SyntaxId(uuid.UUID("71710533-beba-4937-8319-b5dbef9ccc36"), 1, 0)
# Bind-time feature negotiation (MS-RPCE 3.3.1.5.3): the UUID's first 8 bytes are fixed.
_BIND_TIME_FEATURE_PREFIX = uuid.UUID("6cb71c2c-9812-4540-0000-000000000000").bytes_le[:8]
_NULL_SYNTAX = SyntaxId(uuid.UUID(int=0), 0, 0)


@dataclass(frozen=True)
class ContextElement:
    context_id: int
    abstract: SyntaxId
    transfer: tuple[SyntaxId, ...]


@dataclass(frozen=True)
class ContextResult:
    result: int
    reason: int
    transfer: SyntaxId


@dataclass(frozen=True)
class SecTrailer:
    """The sec_trailer before an auth value (MS-RPCE 2.2.2.11)."""

    auth_type: int
    auth_level: int
    pad_length: int
    context_id: int

    def pack(self) -> bytes:
        return SEC_TRAILER.pack(self.auth_type, self.auth_level, self.pad_length, 0, self.context_id)


@dataclass(frozen=True)
class Pdu:
    """Common header fields; ``body`` is the bytes after the 16-byte header (auth and its pad excluded).

    With a verifier, ``trailer`` and ``auth_value`` hold it and ``raw`` the whole
    PDU (signatures cover the header, the body and the sec_trailer as sent).
    """

    ptype: int
    flags: int
    call_id: int
    frag_length: int
    auth_length: int
    body: bytes
    raw: bytes = b""
    trailer: SecTrailer | None = None
    auth_value: bytes = b""

    @property
    def first(self) -> bool:
        return bool(self.flags & PFC_FIRST_FRAG)

    @property
    def last(self) -> bool:
        return bool(self.flags & PFC_LAST_FRAG)


@dataclass(frozen=True)
class Bind:
    max_xmit_frag: int
    max_recv_frag: int
    assoc_group: int
    contexts: tuple[ContextElement, ...]


@dataclass(frozen=True)
class BindAck:
    max_xmit_frag: int
    max_recv_frag: int
    assoc_group: int
    secondary_address: str
    results: tuple[ContextResult, ...]


@dataclass(frozen=True)
class Request:
    alloc_hint: int
    context_id: int
    opnum: int
    stub: bytes


@dataclass(frozen=True)
class Response:
    alloc_hint: int
    context_id: int
    stub: bytes


@dataclass(frozen=True)
class Fault:
    context_id: int
    status: int


# --------------------------------------------------------------------------- framing


def _pdu(ptype: int, flags: int, call_id: int, body: bytes) -> bytes:
    length = HEADER_SIZE + len(body)
    if length > MAX_FRAG:
        raise ValueError(f"PDU of {length} bytes exceeds a fragment's 16-bit length")
    return HEADER.pack(5, 0, ptype, flags, _LITTLE_ENDIAN_ASCII_IEEE, length, 0, call_id) + body


def _pdu_with_auth(
    ptype: int, flags: int, call_id: int, body: bytes, trailer: SecTrailer, token: bytes
) -> bytes:
    """A bind-type PDU (bind, bind_ack, alter_context(_resp), auth3) carrying an auth token.

    The body is padded so the sec_trailer starts 4-byte aligned.
    """
    pad = -(HEADER_SIZE + len(body)) % 4
    trailer = dataclasses.replace(trailer, pad_length=pad)
    rest = body + b"\0" * pad + trailer.pack() + token
    length = HEADER_SIZE + len(rest)
    if length > MAX_FRAG or len(token) > 0xFFFF:
        raise ValueError(f"PDU of {length} bytes exceeds a fragment's 16-bit length")
    return HEADER.pack(5, 0, ptype, flags, _LITTLE_ENDIAN_ASCII_IEEE, length, len(token), call_id) + rest


def parse_pdu(data: bytes) -> Pdu:
    """Parse one complete PDU (exactly ``frag_length`` bytes)."""
    if len(data) < HEADER_SIZE:
        raise ProtocolError(f"DCE/RPC PDU of {len(data)} bytes is shorter than its header")
    major, minor, ptype, flags, drep, frag_length, auth_length, call_id = HEADER.unpack_from(data)
    if major != 5 or minor not in (0, 1):
        raise ProtocolError(f"DCE/RPC version {major}.{minor} is not 5.0/5.1")
    if drep & 0xF0 != 0x10 or drep & 0x0F:
        raise ProtocolError(f"unsupported data representation 0x{drep:08x} (only little-endian ASCII)")
    if frag_length != len(data):
        raise ProtocolError(f"frag_length {frag_length} does not match the {len(data)} bytes received")
    if not auth_length:
        return Pdu(ptype, flags, call_id, frag_length, 0, bytes(data[HEADER_SIZE:]))
    # sec_trailer (8 bytes) + verifier; auth_pad_length sits in the trailer.
    start = frag_length - auth_length - SEC_TRAILER.size
    if start < HEADER_SIZE:
        raise ProtocolError(f"auth_length {auth_length} larger than the PDU")
    auth_type, auth_level, pad, _, context_id = SEC_TRAILER.unpack_from(data, start)
    body_end = start - pad
    if body_end < HEADER_SIZE:
        raise ProtocolError("auth padding larger than the PDU body")
    raw = bytes(data)
    return Pdu(ptype, flags, call_id, frag_length, auth_length, raw[HEADER_SIZE:body_end], raw,
               SecTrailer(auth_type, auth_level, pad, context_id), raw[start + SEC_TRAILER.size :])


class PduStream:
    """Split a byte stream into PDUs (some servers treat the pipe as a stream)."""

    def __init__(self, max_frag: int = MAX_FRAG) -> None:
        self._buffer = bytearray()
        self._max_frag = max_frag

    def feed(self, data: bytes) -> list[Pdu]:
        self._buffer += data
        pdus: list[Pdu] = []
        while len(self._buffer) >= HEADER_SIZE:
            (frag_length,) = struct.unpack_from("<H", self._buffer, 8)
            if self._buffer[0] != 5:
                # Fail fast: do not wait for the bytes a garbage length claims.
                raise ProtocolError(f"not a DCE/RPC PDU (version byte {self._buffer[0]})")
            if frag_length < HEADER_SIZE or frag_length > self._max_frag:
                raise ProtocolError(f"impossible frag_length {frag_length}")
            if len(self._buffer) < frag_length:
                break
            pdus.append(parse_pdu(bytes(self._buffer[:frag_length])))
            del self._buffer[:frag_length]
        return pdus

    @property
    def pending(self) -> int:
        """Bytes of an incomplete PDU held back."""
        return len(self._buffer)


def _need(body: bytes, size: int, what: str) -> None:
    if len(body) < size:
        raise ProtocolError(f"truncated {what}: {len(body)} bytes, {size} needed")


def decode_bind(body: bytes) -> Bind:
    _need(body, _BIND.size, "bind")
    max_xmit, max_recv, assoc, count, _, _ = _BIND.unpack_from(body)
    offset = _BIND.size
    contexts = []
    for _ in range(count):
        _need(body, offset + _CONTEXT.size + _SYNTAX.size, "bind context")
        context_id, n_transfer, _ = _CONTEXT.unpack_from(body, offset)
        offset += _CONTEXT.size
        abstract = SyntaxId.unpack_from(body, offset)
        offset += _SYNTAX.size
        _need(body, offset + n_transfer * _SYNTAX.size, "bind transfer syntaxes")
        transfer = tuple(SyntaxId.unpack_from(body, offset + i * _SYNTAX.size) for i in range(n_transfer))
        offset += n_transfer * _SYNTAX.size
        contexts.append(ContextElement(context_id, abstract, transfer))
    return Bind(max_xmit, max_recv, assoc, tuple(contexts))


def encode_bind(bind: Bind) -> bytes:
    parts = [
        _BIND.pack(bind.max_xmit_frag, bind.max_recv_frag, bind.assoc_group, len(bind.contexts), 0, 0)
    ]
    for ctx in bind.contexts:
        parts.append(_CONTEXT.pack(ctx.context_id, len(ctx.transfer), 0) + ctx.abstract.pack())
        parts.extend(t.pack() for t in ctx.transfer)
    return b"".join(parts)


def encode_bind_ack(ack: BindAck) -> bytes:
    address = ack.secondary_address.encode("ascii") + b"\0" if ack.secondary_address else b""
    head = struct.pack("<HHIH", ack.max_xmit_frag, ack.max_recv_frag, ack.assoc_group, len(address))
    head += address
    # The result list is 4-byte aligned relative to the PDU start (header is 16).
    head += b"\0" * (-(HEADER_SIZE + len(head)) % 4)
    parts = [head, struct.pack("<BBH", len(ack.results), 0, 0)]
    parts.extend(_RESULT.pack(r.result, r.reason) + r.transfer.pack() for r in ack.results)
    return b"".join(parts)


def decode_bind_ack(body: bytes) -> BindAck:
    _need(body, 10, "bind_ack")
    max_xmit, max_recv, assoc, address_length = struct.unpack_from("<HHIH", body)
    offset = 10
    _need(body, offset + address_length, "bind_ack secondary address")
    address = body[offset : offset + address_length].rstrip(b"\0").decode("ascii", "replace")
    offset += address_length
    offset += -(HEADER_SIZE + offset) % 4
    _need(body, offset + 4, "bind_ack result list")
    count = body[offset]
    offset += 4
    _need(body, offset + count * (_RESULT.size + _SYNTAX.size), "bind_ack results")
    results = []
    for _ in range(count):
        result, reason = _RESULT.unpack_from(body, offset)
        results.append(ContextResult(result, reason, SyntaxId.unpack_from(body, offset + _RESULT.size)))
        offset += _RESULT.size + _SYNTAX.size
    return BindAck(max_xmit, max_recv, assoc, address, tuple(results))


def decode_request(pdu: Pdu) -> Request:
    _need(pdu.body, _REQUEST.size, "request")
    alloc_hint, context_id, opnum = _REQUEST.unpack_from(pdu.body)
    offset = _REQUEST.size + (16 if pdu.flags & PFC_OBJECT_UUID else 0)
    _need(pdu.body, offset, "request object UUID")
    return Request(alloc_hint, context_id, opnum, pdu.body[offset:])


def decode_response(pdu: Pdu) -> Response:
    _need(pdu.body, _RESPONSE.size, "response")
    alloc_hint, context_id, _, _ = _RESPONSE.unpack_from(pdu.body)
    return Response(alloc_hint, context_id, pdu.body[_RESPONSE.size :])


def decode_fault(pdu: Pdu) -> Fault:
    _need(pdu.body, 12, "fault")
    _, context_id, _, _, status = struct.unpack_from("<IHBBI", pdu.body)
    return Fault(context_id, status)


def fragment(
    ptype: int, call_id: int, context_id: int, stub: bytes, max_frag: int, opnum: int = 0
) -> list[bytes]:
    """Split ``stub`` into request or response PDUs of at most ``max_frag`` bytes.

    Every fragment but the last carries a multiple of 8 stub bytes, so NDR
    alignment survives reassembly on any receiver.
    """
    head_size = HEADER_SIZE + 8
    room = (min(max_frag, MAX_FRAG) - head_size) & ~7
    if room <= 0:
        raise ValueError(f"max_frag {max_frag} leaves no room for stub data")
    pdus = []
    offset = 0
    total = len(stub)
    while True:
        chunk = stub[offset : offset + room]
        flags = (PFC_FIRST_FRAG if offset == 0 else 0) | (PFC_LAST_FRAG if offset + room >= total else 0)
        if ptype == PType.REQUEST:
            body = _REQUEST.pack(total - offset, context_id, opnum) + chunk
        else:
            body = _RESPONSE.pack(total - offset, context_id, 0, 0) + chunk
        pdus.append(_pdu(ptype, flags, call_id, body))
        offset += room
        if flags & PFC_LAST_FRAG:
            return pdus


class PacketSecurity(Protocol):
    """Per-message signing and sealing of an established security context (NTLM, MS-NLMP 3.4).

    ``verify`` and ``unseal`` raise (any exception) when the message was altered.
    Calls must follow the order of the messages on the wire (sequence numbers).
    """

    def sign(self, message: bytes) -> bytes: ...

    def verify(self, message: bytes, signature: bytes) -> None: ...

    def seal(
        self, message: bytes, *, sign_prefix: bytes = b"", sign_suffix: bytes = b""
    ) -> tuple[bytes, bytes]: ...

    def unseal(
        self, ciphertext: bytes, signature: bytes, *, sign_prefix: bytes = b"", sign_suffix: bytes = b""
    ) -> bytes: ...


class RpcAuthError(ProtocolError):
    """An authentication token or a verifier was refused."""


def auth_fragments(
    ptype: int, call_id: int, context_id: int, stub: bytes, max_frag: int, opnum: int,
    trailer: SecTrailer, security: PacketSecurity,
) -> list[bytes]:
    """Request or response PDUs carrying a verifier: signed, and sealed at PKT_PRIVACY.

    Each fragment's stub is padded to a multiple of 16 bytes before its
    sec_trailer (only the last one needs padding: the others carry multiples of 16).
    """
    head_size = HEADER_SIZE + 8
    overhead = head_size + SEC_TRAILER.size + NTLM_SIGNATURE_SIZE
    room = (min(max_frag, MAX_FRAG) - overhead) & ~(AUTH_PAD_ALIGNMENT - 1)
    if room <= 0:
        raise ValueError(f"max_frag {max_frag} leaves no room for stub data")
    seal = trailer.auth_level == AuthLevel.PKT_PRIVACY
    pdus = []
    offset = 0
    total = len(stub)
    while True:
        chunk = stub[offset : offset + room]
        flags = (PFC_FIRST_FRAG if offset == 0 else 0) | (PFC_LAST_FRAG if offset + room >= total else 0)
        pad = -len(chunk) % AUTH_PAD_ALIGNMENT
        payload = chunk + b"\0" * pad
        sec = dataclasses.replace(trailer, pad_length=pad).pack()
        length = head_size + len(payload) + len(sec) + NTLM_SIGNATURE_SIZE
        head = HEADER.pack(5, 0, ptype, flags, _LITTLE_ENDIAN_ASCII_IEEE, length, NTLM_SIGNATURE_SIZE,
                           call_id)
        if ptype == PType.REQUEST:
            head += _REQUEST.pack(total - offset, context_id, opnum)
        else:
            head += _RESPONSE.pack(total - offset, context_id, 0, 0)
        if seal:
            payload, signature = security.seal(payload, sign_prefix=head, sign_suffix=sec)
        else:
            signature = security.sign(head + payload + sec)
        if len(signature) != NTLM_SIGNATURE_SIZE:
            raise ValueError(f"a {len(signature)}-byte signature where {NTLM_SIGNATURE_SIZE} were expected")
        pdus.append(head + payload + sec + signature)
        offset += room
        if flags & PFC_LAST_FRAG:
            return pdus


def check_verifier(pdu: Pdu, expected: SecTrailer, security: PacketSecurity) -> Pdu:
    """Verify (and at PKT_PRIVACY unseal) a request or response PDU; the PDU with its clear body.

    Raises ``RpcAuthError`` when the verifier is missing, its sec_trailer does not
    match the one the association was authenticated with, or the signature fails.
    """
    trailer = pdu.trailer
    if trailer is None or not pdu.raw:
        raise RpcAuthError("a PDU without its verifier on an authenticated association")
    if (trailer.auth_type, trailer.auth_level, trailer.context_id) != (
        expected.auth_type, expected.auth_level, expected.context_id
    ):
        raise RpcAuthError("the verifier's sec_trailer does not match the association's")
    raw = pdu.raw
    start = pdu.frag_length - pdu.auth_length - SEC_TRAILER.size
    signed_end = start + SEC_TRAILER.size
    if pdu.ptype == PType.REQUEST:
        payload_offset = HEADER_SIZE + _REQUEST.size + (16 if pdu.flags & PFC_OBJECT_UUID else 0)
    else:
        payload_offset = HEADER_SIZE + _RESPONSE.size
    if start < payload_offset or trailer.pad_length > start - payload_offset:
        raise RpcAuthError("the verifier leaves no room for the PDU header")
    try:
        if trailer.auth_level == AuthLevel.PKT_PRIVACY:
            clear = security.unseal(raw[payload_offset:start], pdu.auth_value,
                                    sign_prefix=raw[:payload_offset], sign_suffix=raw[start:signed_end])
            body = raw[HEADER_SIZE:payload_offset] + clear[: len(clear) - trailer.pad_length]
            return dataclasses.replace(pdu, body=body)
        security.verify(raw[:signed_end], pdu.auth_value)
    except Exception as exc:  # the security package's own error type, whatever it is
        raise RpcAuthError(f"the PDU's verifier does not check: {exc}") from None
    return pdu


# MS-RPCE 2.2.2.13: the rpc_sec_verification_trailer a client may append to a request stub
# (Windows and Samba do at PKT_INTEGRITY and above): magic, then commands up to SEC_VT_COMMAND_END.
VERIFICATION_TRAILER_MAGIC = bytes((0x8A, 0xE3, 0x13, 0x71, 0x02, 0xF4, 0x36, 0x71))
_SEC_VT_COMMAND_END = 0x4000
_SEC_VT_COMMAND = struct.Struct("<HH")


def strip_verification_trailer(stub: bytes) -> bytes:
    """The request stub without its verification trailer (unchanged if it has none).

    The trailer starts 4-byte aligned at the last occurrence of the magic, and its
    commands must run exactly to the end of the stub; anything else is stub data.
    Its contents (bitmask, presentation context, header copy) only restate what the
    signed header and the bind already establish, so they are not checked further.
    """
    position = stub.rfind(VERIFICATION_TRAILER_MAGIC)
    if position < 0 or position % 4:
        return stub
    offset = position + len(VERIFICATION_TRAILER_MAGIC)
    while offset + _SEC_VT_COMMAND.size <= len(stub):
        command, length = _SEC_VT_COMMAND.unpack_from(stub, offset)
        offset += _SEC_VT_COMMAND.size + length
        if command & _SEC_VT_COMMAND_END:
            return stub[:position] if offset == len(stub) else stub
    return stub


def fault_pdu(call_id: int, status: int, context_id: int = 0) -> bytes:
    """A complete fault PDU (did-not-execute is implied for our refusals)."""
    return _pdu(PType.FAULT, PFC_FIRST_FRAG | PFC_LAST_FRAG | 0x20, call_id,
                _FAULT.pack(0, context_id, 0, 0, status, 0))


# --------------------------------------------------------------------------- client


class AuthInitiator(Protocol):
    """Client side of one security exchange (NTLM): tokens out, tokens in, then packet security."""

    auth_type: int

    def step(self, token: bytes | None) -> bytes | None:
        """The next token to send (``token`` None for the first); None when nothing is left to send."""

    def packet_security(self) -> PacketSecurity:
        """Signing/sealing once the exchange is complete."""


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
        self.bound = False
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

    def _next_call_id(self) -> int:
        self._call_id += 1
        return self._call_id

    def bind(self) -> bytes:
        """The bind PDU offering NDR20 for the interface."""
        body = encode_bind(
            Bind(self.max_xmit_frag, self.max_recv_frag, 0,
                 (ContextElement(self._context_id, self.abstract, (NDR20,)),))
        )
        call_id = self._next_call_id()
        self._pending = call_id
        if self.auth is not None and self._trailer is not None:
            token = self.auth.step(None) or b""
            return _pdu_with_auth(PType.BIND, PFC_FIRST_FRAG | PFC_LAST_FRAG, call_id, body, self._trailer,
                                  token)
        return _pdu(PType.BIND, PFC_FIRST_FRAG | PFC_LAST_FRAG, call_id, body)

    def auth3(self) -> bytes | None:
        """The rpc_auth3 PDU to write after the bind_ack (no answer comes), or None."""
        token, self._auth3_token = self._auth3_token, None
        if token is None or self._trailer is None:
            return None
        return _pdu_with_auth(PType.AUTH3, PFC_FIRST_FRAG | PFC_LAST_FRAG, self._next_call_id(), b"\0" * 4,
                              self._trailer, token)

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
        self.bound = True
        self._pending = None
        return ack

    def request(self, opnum: int, stub: bytes) -> list[bytes]:
        """Request PDUs for one call; feed the answer to ``receive``.

        At a signed level the PDUs are signed as they are built (sequence numbers
        advance): send every one of them, in order.
        """
        if not self.bound:
            raise ProtocolError("request before a successful bind")
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
        stub = b"".join(self._parts)
        self._parts = []
        return stub


# --------------------------------------------------------------------------- server


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


class AuthAcceptor(Protocol):
    """Server side of one security exchange carried by bind / alter_context / auth3 tokens."""

    def step(self, token: bytes) -> tuple[bytes, bool]:
        """The reply token and whether the exchange is complete; raises ``RpcAuthError``."""

    def packet_security(self) -> PacketSecurity | None:
        """Once complete: signing/sealing, or None when the logon has no key (anonymous)."""


AcceptorFactory = Callable[[int], AuthAcceptor | None]
"""auth_type -> a fresh acceptor, or None when that auth_type is not recognized."""


@dataclass
class _ServerAuth:
    trailer: SecTrailer
    acceptor: AuthAcceptor
    complete: bool = False
    failed: bool = False
    security: PacketSecurity | None = None


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
        self._bound = False
        self.broken = False
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

    def _break(self, status: int = RpcFaultStatus.nca_s_proto_error) -> None:
        # The byte stream is unsalvageable: tell the client once, then go quiet.
        self.broken = True
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
            auth.failed = True
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
        if pdu.ptype == PType.BIND and self._bound:
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
            self._bound = True
            # A client may not ask for less than MIN_FRAG; we never send more than max_frag.
            self.xmit_frag = min(self.max_frag, max(MIN_FRAG, bind.max_recv_frag))
        results = [self._negotiate(ctx) for ctx in bind.contexts]
        ack = BindAck(self.xmit_frag, self.max_frag, self.assoc_group,
                      self.secondary_address if reply_type == PType.BIND_ACK else "", tuple(results))
        flags = PFC_FIRST_FRAG | PFC_LAST_FRAG | (pdu.flags & PFC_SUPPORT_HEADER_SIGN)
        if reply_token and self._auth is not None:  # an empty final token travels as no verifier
            self._queue(_pdu_with_auth(reply_type, flags, pdu.call_id, encode_bind_ack(ack),
                                       self._auth.trailer, reply_token))
        else:
            self._queue(_pdu(reply_type, flags, pdu.call_id, encode_bind_ack(ack)))

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
            auth.failed = True
            return NAK_REASON_NOT_SPECIFIED
        if done:
            self._finish_auth(auth)
        return reply

    def _finish_auth(self, auth: _ServerAuth) -> None:
        auth.complete = True
        if auth.trailer.auth_level in SIGNED_LEVELS:
            auth.security = auth.acceptor.packet_security()
            # An anonymous logon has no key: nothing to sign with, so no signed level.
            auth.failed = auth.security is None

    def _auth3(self, pdu: Pdu) -> None:
        """The third leg (no answer is sent; a failure refuses every later call)."""
        auth = self._auth
        if auth is None or auth.complete or pdu.trailer is None:
            return
        expected = (auth.trailer.auth_type, auth.trailer.context_id)
        if (pdu.trailer.auth_type, pdu.trailer.context_id) != expected:
            auth.failed = True
            return
        self._auth_step(auth, pdu.auth_value)
        if not auth.complete:
            auth.failed = True

    def _negotiate(self, ctx: ContextElement) -> ContextResult:
        if any(t.uuid.bytes_le[:8] == _BIND_TIME_FEATURE_PREFIX for t in ctx.transfer):
            # Acknowledge bind-time feature negotiation, supporting no optional feature.
            return ContextResult(RESULT_NEGOTIATE_ACK, 0, _NULL_SYNTAX)
        if ctx.abstract not in self.interfaces:
            return ContextResult(RESULT_PROVIDER_REJECTION, REASON_ABSTRACT_SYNTAX_NOT_SUPPORTED,
                                 _NULL_SYNTAX)
        if NDR20 not in ctx.transfer:
            return ContextResult(RESULT_PROVIDER_REJECTION, REASON_TRANSFER_SYNTAXES_NOT_SUPPORTED,
                                 _NULL_SYNTAX)
        if ctx.context_id not in self.contexts and len(self.contexts) >= MAX_CONTEXTS:
            return ContextResult(RESULT_PROVIDER_REJECTION, REASON_LOCAL_LIMIT_EXCEEDED, _NULL_SYNTAX)
        self.contexts[ctx.context_id] = ctx.abstract
        return ContextResult(RESULT_ACCEPTANCE, 0, NDR20)

    def _bind_nak(self, call_id: int, reason: int) -> bytes:
        return _pdu(PType.BIND_NAK, PFC_FIRST_FRAG | PFC_LAST_FRAG, call_id,
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
        self.broken = True

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
