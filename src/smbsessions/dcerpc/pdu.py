"""PDU codec (C706 chapter 12, MS-RPCE 2.2.2): headers, bind/bind_ack/bind_nak, request,
response, fault, the sec_trailer, fragmentation, and a stream splitter. Pure bytes."""

from __future__ import annotations

import dataclasses
import struct
import uuid
from dataclasses import dataclass
from enum import IntEnum

from ..status import ProtocolError


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
LITTLE_ENDIAN_ASCII_IEEE = 0x00000010
REQUEST_HEAD = struct.Struct("<IHH")
RESPONSE_HEAD = struct.Struct("<IHBB")
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
BIND_TIME_FEATURE_PREFIX = uuid.UUID("6cb71c2c-9812-4540-0000-000000000000").bytes_le[:8]
NULL_SYNTAX = SyntaxId(uuid.UUID(int=0), 0, 0)


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


def encode_pdu(ptype: int, flags: int, call_id: int, body: bytes) -> bytes:
    """One whole PDU: the common header (NDR20 little-endian data representation) and ``body``."""
    length = HEADER_SIZE + len(body)
    if length > MAX_FRAG:
        raise ValueError(f"PDU of {length} bytes exceeds a fragment's 16-bit length")
    return HEADER.pack(5, 0, ptype, flags, LITTLE_ENDIAN_ASCII_IEEE, length, 0, call_id) + body


def encode_pdu_with_auth(
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
    return HEADER.pack(5, 0, ptype, flags, LITTLE_ENDIAN_ASCII_IEEE, length, len(token), call_id) + rest


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
    _need(pdu.body, REQUEST_HEAD.size, "request")
    alloc_hint, context_id, opnum = REQUEST_HEAD.unpack_from(pdu.body)
    offset = REQUEST_HEAD.size + (16 if pdu.flags & PFC_OBJECT_UUID else 0)
    _need(pdu.body, offset, "request object UUID")
    return Request(alloc_hint, context_id, opnum, pdu.body[offset:])


def decode_response(pdu: Pdu) -> Response:
    _need(pdu.body, RESPONSE_HEAD.size, "response")
    alloc_hint, context_id, _, _ = RESPONSE_HEAD.unpack_from(pdu.body)
    return Response(alloc_hint, context_id, pdu.body[RESPONSE_HEAD.size :])


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
            body = REQUEST_HEAD.pack(total - offset, context_id, opnum) + chunk
        else:
            body = RESPONSE_HEAD.pack(total - offset, context_id, 0, 0) + chunk
        pdus.append(encode_pdu(ptype, flags, call_id, body))
        offset += room
        if flags & PFC_LAST_FRAG:
            return pdus


def fault_pdu(call_id: int, status: int, context_id: int = 0) -> bytes:
    """A complete fault PDU (did-not-execute is implied for our refusals)."""
    return encode_pdu(PType.FAULT, PFC_FIRST_FRAG | PFC_LAST_FRAG | 0x20, call_id,
                      _FAULT.pack(0, context_id, 0, 0, status, 0))
