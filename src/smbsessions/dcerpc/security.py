"""Authentication verifiers (MS-RPCE 2.2.2.11): signing and sealing of request/response
fragments, verifier checks, the verification trailer, and the initiator/acceptor protocols."""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from typing import Protocol

from ..status import ProtocolError
from .pdu import (
    AUTH_PAD_ALIGNMENT,
    HEADER,
    HEADER_SIZE,
    LITTLE_ENDIAN_ASCII_IEEE,
    MAX_FRAG,
    NTLM_SIGNATURE_SIZE,
    PFC_FIRST_FRAG,
    PFC_LAST_FRAG,
    PFC_OBJECT_UUID,
    REQUEST_HEAD,
    RESPONSE_HEAD,
    SEC_TRAILER,
    AuthLevel,
    Pdu,
    PType,
    SecTrailer,
)


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
        head = HEADER.pack(5, 0, ptype, flags, LITTLE_ENDIAN_ASCII_IEEE, length, NTLM_SIGNATURE_SIZE,
                           call_id)
        if ptype == PType.REQUEST:
            head += REQUEST_HEAD.pack(total - offset, context_id, opnum)
        else:
            head += RESPONSE_HEAD.pack(total - offset, context_id, 0, 0)
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
        payload_offset = HEADER_SIZE + REQUEST_HEAD.size + (16 if pdu.flags & PFC_OBJECT_UUID else 0)
    else:
        payload_offset = HEADER_SIZE + RESPONSE_HEAD.size
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


class AuthInitiator(Protocol):
    """Client side of one security exchange (NTLM): tokens out, tokens in, then packet security."""

    auth_type: int

    def step(self, token: bytes | None) -> bytes | None:
        """The next token to send (``token`` None for the first); None when nothing is left to send."""

    def packet_security(self) -> PacketSecurity:
        """Signing/sealing once the exchange is complete."""


class AuthAcceptor(Protocol):
    """Server side of one security exchange carried by bind / alter_context / auth3 tokens."""

    def step(self, token: bytes) -> tuple[bytes, bool]:
        """The reply token and whether the exchange is complete; raises ``RpcAuthError``."""

    def packet_security(self) -> PacketSecurity | None:
        """Once complete: signing/sealing, or None when the logon has no key (anonymous)."""


AcceptorFactory = Callable[[int], AuthAcceptor | None]
"""auth_type -> a fresh acceptor, or None when that auth_type is not recognized."""
