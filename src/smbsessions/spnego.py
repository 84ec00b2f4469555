"""SPNEGO (RFC 4178, MS-SPNG) acceptor around our NTLM acceptor, sans-I/O.

Only what an NTLM-only server needs: the NegTokenInit2 hint for the SMB2 NEGOTIATE
response, NegTokenInit/NegTokenResp parsing, NegTokenResp building, and the
mechListMIC (MS-SPNG 3.1.5.1 / RFC 4178 section 5). Raw NTLMSSP tokens without the
SPNEGO wrapping are accepted too and answered raw.

The DER reader is bounded: one-byte tags only, definite lengths of at most four
bytes, every length checked against its enclosing buffer, a fixed nesting depth
(the grammar is walked by hand, never recursively over input), and a cap on the
number of mechTypes. Errors are ``SpnegoError`` (a ``NtlmError`` subclass, so
one ``except NtlmError`` covers a whole SESSION_SETUP) with an NTSTATUS.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from smbsessions.ntlm import (
    MAX_TOKEN_SIZE,
    SIGNATURE,
    NtlmAcceptor,
    NtlmError,
    NtlmIdentity,
    NtlmSessionSecurity,
)
from smbsessions.status import NtStatus

# DER contents of the OIDs we meet (without tag and length).
OID_SPNEGO = bytes.fromhex("2b0601050502")  # 1.3.6.1.5.5.2
OID_NTLMSSP = bytes.fromhex("2b06010401823702020a")  # 1.3.6.1.4.1.311.2.2.10
OID_KERBEROS = bytes.fromhex("2a864886f712010202")  # 1.2.840.113554.1.2.2
OID_MS_KERBEROS = bytes.fromhex("2a864882f712010202")  # 1.2.840.48018.1.2.2

# MS-SPNG 2.2.1: what Windows puts in NegHints.hintName.
HINT_NAME = b"not_defined_in_RFC4178@please_ignore"

MAX_MECH_TYPES = 32

_TAG_SEQUENCE = 0x30
_TAG_OID = 0x06
_TAG_OCTET_STRING = 0x04
_TAG_ENUMERATED = 0x0A
_TAG_GENERAL_STRING = 0x1B
_TAG_APPLICATION_0 = 0x60


def _ctx(n: int) -> int:
    """Tag of a constructed context-specific [n]."""
    return 0xA0 | n


class NegState(IntEnum):
    """NegTokenResp.negState (RFC 4178 4.2.2)."""

    ACCEPT_COMPLETED = 0
    ACCEPT_INCOMPLETE = 1
    REJECT = 2
    REQUEST_MIC = 3


class SpnegoError(NtlmError):
    """A SPNEGO token was malformed or unacceptable.

    ``reject_token`` is a NegTokenResp with negState reject that a server may send
    back in the security buffer along with the error status.
    """

    def __init__(self, ntstatus: int, detail: str) -> None:
        super().__init__(ntstatus, detail)
        self.reject_token = encode_neg_token_resp(NegState.REJECT)


def _malformed(detail: str) -> SpnegoError:
    return SpnegoError(NtStatus.STATUS_INVALID_PARAMETER, detail)


# --- DER -------------------------------------------------------------------------


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


def _read_tlv(data: bytes, offset: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the TLV at ``offset``, inside ``[offset, end)``."""
    if offset + 2 > end:
        raise _malformed("DER element truncated")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise _malformed("multi-byte DER tags are not used by SPNEGO")
    first = data[offset + 1]
    position = offset + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4:
            raise _malformed("indefinite or oversized DER length")
        if position + count > end:
            raise _malformed("DER length truncated")
        length = int.from_bytes(data[position : position + count], "big")
        position += count
    if length > end - position:
        raise _malformed("DER element runs past its container")
    return tag, position, position + length


def _children(data: bytes, start: int, end: int, limit: int) -> list[tuple[int, int, int]]:
    """The TLVs directly inside ``[start, end)``; at most ``limit`` of them."""
    items: list[tuple[int, int, int]] = []
    offset = start
    while offset < end:
        if len(items) >= limit:
            raise _malformed("too many DER elements")
        tag, content_start, content_end = _read_tlv(data, offset, end)
        items.append((tag, content_start, content_end))
        offset = content_end
    return items


def _expect(data: bytes, offset: int, end: int, tag: int, what: str) -> tuple[int, int]:
    found, start, stop = _read_tlv(data, offset, end)
    if found != tag:
        raise _malformed(f"{what}: expected tag 0x{tag:02X}, got 0x{found:02X}")
    return start, stop


# --- tokens ----------------------------------------------------------------------------


@dataclass(frozen=True)
class NegTokenInit:
    """The fields of a NegTokenInit (RFC 4178 4.2.1) that an acceptor uses."""

    mech_types: tuple[bytes, ...]  # OID contents, in the initiator's order of preference
    mech_types_der: bytes  # the MechTypeList exactly as sent (the mechListMIC covers it)
    mech_token: bytes | None
    mech_list_mic: bytes | None


@dataclass(frozen=True)
class NegTokenResp:
    """A NegTokenResp (RFC 4178 4.2.2)."""

    neg_state: int | None
    supported_mech: bytes | None
    response_token: bytes | None
    mech_list_mic: bytes | None


def _parse_mech_types(data: bytes, start: int, end: int) -> tuple[tuple[bytes, ...], bytes]:
    seq_start, seq_end = _expect(data, start, end, _TAG_SEQUENCE, "MechTypeList")
    oids = []
    for tag, content_start, content_end in _children(data, seq_start, seq_end, MAX_MECH_TYPES):
        if tag != _TAG_OID:
            raise _malformed("MechTypeList holds something other than OIDs")
        oids.append(data[content_start:content_end])
    return tuple(oids), data[start:seq_end]


def _octet_string(data: bytes, start: int, end: int, what: str) -> bytes:
    content_start, content_end = _expect(data, start, end, _TAG_OCTET_STRING, what)
    return data[content_start:content_end]


def _parse_neg_token_init(data: bytes, start: int, end: int) -> NegTokenInit:
    seq_start, seq_end = _expect(data, start, end, _TAG_SEQUENCE, "NegTokenInit")
    mech_types: tuple[bytes, ...] | None = None
    mech_types_der = b""
    mech_token = mech_list_mic = None
    for tag, content_start, content_end in _children(data, seq_start, seq_end, 8):
        if tag == _ctx(0):
            mech_types, mech_types_der = _parse_mech_types(data, content_start, content_end)
        elif tag == _ctx(2):
            mech_token = _octet_string(data, content_start, content_end, "mechToken")
        elif tag == _ctx(3):
            # NegTokenInit has mechListMIC here; NegTokenInit2 has negHints here (ignored).
            inner_tag = data[content_start] if content_start < content_end else None
            if inner_tag == _TAG_OCTET_STRING:
                mech_list_mic = _octet_string(data, content_start, content_end, "mechListMIC")
        elif tag == _ctx(4):
            mech_list_mic = _octet_string(data, content_start, content_end, "mechListMIC")
        # [1] reqFlags and unknown fields: ignored.
    if mech_types is None:
        raise _malformed("NegTokenInit without mechTypes")
    return NegTokenInit(mech_types, mech_types_der, mech_token, mech_list_mic)


def _parse_neg_token_resp(data: bytes, start: int, end: int) -> NegTokenResp:
    seq_start, seq_end = _expect(data, start, end, _TAG_SEQUENCE, "NegTokenResp")
    neg_state: int | None = None
    supported_mech = response_token = mech_list_mic = None
    for tag, content_start, content_end in _children(data, seq_start, seq_end, 8):
        if tag == _ctx(0):
            value_start, value_end = _expect(data, content_start, content_end, _TAG_ENUMERATED, "negState")
            if value_end - value_start != 1:
                raise _malformed("negState is not one byte")
            neg_state = data[value_start]
        elif tag == _ctx(1):
            value_start, value_end = _expect(data, content_start, content_end, _TAG_OID, "supportedMech")
            supported_mech = data[value_start:value_end]
        elif tag == _ctx(2):
            response_token = _octet_string(data, content_start, content_end, "responseToken")
        elif tag == _ctx(3):
            mech_list_mic = _octet_string(data, content_start, content_end, "mechListMIC")
    return NegTokenResp(neg_state, supported_mech, response_token, mech_list_mic)


def parse_token(token: bytes) -> NegTokenInit | NegTokenResp:
    """Parse a GSS InitialContextToken/NegTokenInit or a NegTokenResp."""
    data = bytes(token)
    if len(data) > MAX_TOKEN_SIZE:
        raise _malformed("SPNEGO token too large")
    tag, start, end = _read_tlv(data, 0, len(data))
    if tag == _TAG_APPLICATION_0:
        oid_start, oid_end = _expect(data, start, end, _TAG_OID, "thisMech")
        if data[oid_start:oid_end] != OID_SPNEGO:
            raise SpnegoError(NtStatus.STATUS_LOGON_FAILURE, "the initial token is not SPNEGO")
        inner_tag, inner_start, inner_end = _read_tlv(data, oid_end, end)
        if inner_tag != _ctx(0):
            raise _malformed("InitialContextToken without a NegTokenInit")
        return _parse_neg_token_init(data, inner_start, inner_end)
    if tag == _ctx(0):
        return _parse_neg_token_init(data, start, end)
    if tag == _ctx(1):
        return _parse_neg_token_resp(data, start, end)
    raise _malformed(f"not a SPNEGO token (tag 0x{tag:02X})")


def encode_mech_type_list(oids: tuple[bytes, ...]) -> bytes:
    """DER MechTypeList (SEQUENCE OF OID)."""
    return _tlv(_TAG_SEQUENCE, b"".join(_tlv(_TAG_OID, oid) for oid in oids))


def encode_neg_token_resp(
    neg_state: int | None,
    *,
    supported_mech: bytes | None = None,
    response_token: bytes | None = None,
    mech_list_mic: bytes | None = None,
) -> bytes:
    """DER NegTokenResp wrapped in its [1] choice tag."""
    fields = b""
    if neg_state is not None:
        fields += _tlv(_ctx(0), _tlv(_TAG_ENUMERATED, bytes([neg_state])))
    if supported_mech is not None:
        fields += _tlv(_ctx(1), _tlv(_TAG_OID, supported_mech))
    if response_token is not None:
        fields += _tlv(_ctx(2), _tlv(_TAG_OCTET_STRING, response_token))
    if mech_list_mic is not None:
        fields += _tlv(_ctx(3), _tlv(_TAG_OCTET_STRING, mech_list_mic))
    return _tlv(_ctx(1), _tlv(_TAG_SEQUENCE, fields))


def encode_neg_token_init(
    mech_types: tuple[bytes, ...], *, mech_token: bytes | None = None, mech_list_mic: bytes | None = None
) -> bytes:
    """GSS InitialContextToken carrying a NegTokenInit (what a client sends first)."""
    fields = _tlv(_ctx(0), encode_mech_type_list(mech_types))
    if mech_token is not None:
        fields += _tlv(_ctx(2), _tlv(_TAG_OCTET_STRING, mech_token))
    if mech_list_mic is not None:
        fields += _tlv(_ctx(3), _tlv(_TAG_OCTET_STRING, mech_list_mic))
    body = _tlv(_TAG_OID, OID_SPNEGO) + _tlv(_ctx(0), _tlv(_TAG_SEQUENCE, fields))
    return _tlv(_TAG_APPLICATION_0, body)


def neg_token_init_hint() -> bytes:
    """NegTokenInit2 (MS-SPNG 2.2.1) for the SMB2 NEGOTIATE response: NTLMSSP only."""
    hints = _tlv(_ctx(3), _tlv(_TAG_SEQUENCE, _tlv(_ctx(0), _tlv(_TAG_GENERAL_STRING, HINT_NAME))))
    fields = _tlv(_ctx(0), encode_mech_type_list((OID_NTLMSSP,))) + hints
    body = _tlv(_TAG_OID, OID_SPNEGO) + _tlv(_ctx(0), _tlv(_TAG_SEQUENCE, fields))
    return _tlv(_TAG_APPLICATION_0, body)


# --- the acceptor ------------------------------------------------------------------


class _State(IntEnum):
    INITIAL = 0
    AWAIT_NTLM_NEGOTIATE = 1  # NTLM chosen, but the client's optimistic token was for another mech
    AWAIT_NTLM_AUTHENTICATE = 2
    COMPLETE = 3
    FAILED = 4


class SpnegoAcceptor:
    """SPNEGO server side for NTLM: ``step(token) -> (reply, done)``.

    Replies are NegTokenResp bytes (raw NTLMSSP when the client sent raw NTLMSSP;
    then the final reply is b""). Failures raise ``NtlmError`` (``SpnegoError`` for
    SPNEGO-level ones) and end the exchange.
    """

    def __init__(self, ntlm: NtlmAcceptor) -> None:
        self.ntlm = ntlm
        self._state = _State.INITIAL
        self._raw = False
        self._mech_types_der = b""
        self._mic_required = False
        self._hint_sent = False
        self._security: NtlmSessionSecurity | None = None

    @property
    def complete(self) -> bool:
        return self._state is _State.COMPLETE

    @property
    def identity(self) -> NtlmIdentity:
        return self.ntlm.identity

    def session_security(self) -> NtlmSessionSecurity:
        """NTLM signing/sealing after this exchange (continuing after the mechListMIC)."""
        if self._security is not None:
            return self._security
        return self.ntlm.session_security()

    def step(self, token: bytes) -> tuple[bytes, bool]:
        try:
            return self._step(bytes(token))
        except NtlmError:
            self._state = _State.FAILED
            raise

    def _step(self, token: bytes) -> tuple[bytes, bool]:
        if self._state is _State.INITIAL:
            if not token:
                # The client asks the server to start (RFC 4178 5): offer our mechanisms, once.
                if self._hint_sent:
                    raise _malformed("empty SPNEGO token again")
                self._hint_sent = True
                return neg_token_init_hint(), False
            if token.startswith(SIGNATURE):
                self._raw = True
                challenge = self.ntlm.step(token)
                if challenge is None:
                    raise _malformed("the first NTLM message must be NEGOTIATE")
                self._state = _State.AWAIT_NTLM_AUTHENTICATE
                return challenge, False
            return self._on_init(parse_token(token))
        if self._state in (_State.COMPLETE, _State.FAILED):
            raise _malformed("the SPNEGO exchange is already over")
        if self._raw:
            if self.ntlm.step(token) is not None:
                raise _malformed("unexpected NTLM message")
            self._state = _State.COMPLETE
            return b"", True
        message = parse_token(token)
        if not isinstance(message, NegTokenResp):
            raise _malformed("expected a NegTokenResp")
        if message.neg_state == NegState.REJECT:
            raise SpnegoError(NtStatus.STATUS_LOGON_FAILURE, "the client rejected the exchange")
        if not message.response_token:
            raise _malformed("NegTokenResp without a responseToken")
        if self._state is _State.AWAIT_NTLM_NEGOTIATE:
            challenge = self.ntlm.step(message.response_token)
            if challenge is None:
                raise _malformed("expected an NTLM NEGOTIATE")
            self._state = _State.AWAIT_NTLM_AUTHENTICATE
            return encode_neg_token_resp(NegState.ACCEPT_INCOMPLETE, response_token=challenge), False
        if self.ntlm.step(message.response_token) is not None:
            raise _malformed("expected an NTLM AUTHENTICATE")
        our_mic = self._check_mech_list_mic(message.mech_list_mic)
        self._state = _State.COMPLETE
        return encode_neg_token_resp(NegState.ACCEPT_COMPLETED, mech_list_mic=our_mic), True

    def _on_init(self, message: NegTokenInit | NegTokenResp) -> tuple[bytes, bool]:
        if not isinstance(message, NegTokenInit):
            raise _malformed("the first SPNEGO token must be a NegTokenInit")
        if OID_NTLMSSP not in message.mech_types:
            raise SpnegoError(NtStatus.STATUS_LOGON_FAILURE, "the client offers no NTLMSSP mechanism")
        self._mech_types_der = message.mech_types_der
        # RFC 4178 5: a mechanism other than the initiator's first choice needs the MIC exchange.
        self._mic_required = message.mech_types[0] != OID_NTLMSSP
        if message.mech_token is not None and not self._mic_required:
            challenge = self.ntlm.step(message.mech_token)
            if challenge is None:
                raise _malformed("the mechToken must be an NTLM NEGOTIATE")
            self._state = _State.AWAIT_NTLM_AUTHENTICATE
            reply = encode_neg_token_resp(
                NegState.ACCEPT_INCOMPLETE, supported_mech=OID_NTLMSSP, response_token=challenge
            )
            return reply, False
        # No token, or an optimistic token for a mechanism we do not run: ask for NTLM.
        self._state = _State.AWAIT_NTLM_NEGOTIATE
        state = NegState.REQUEST_MIC if self._mic_required else NegState.ACCEPT_INCOMPLETE
        return encode_neg_token_resp(state, supported_mech=OID_NTLMSSP), False

    def _check_mech_list_mic(self, their_mic: bytes | None) -> bytes | None:
        """Verify the initiator's mechListMIC; return ours (or None when none is due)."""
        identity = self.ntlm.identity
        if not identity.session_key:
            # Anonymous and guest logons have no key to sign with.
            return None
        if their_mic is None:
            if self._mic_required:
                raise SpnegoError(NtStatus.STATUS_LOGON_FAILURE, "mechListMIC required but missing")
            return None
        try:
            security = self.ntlm.session_security()
            security.verify(self._mech_types_der, their_mic)
        except NtlmError as exc:
            raise SpnegoError(NtStatus.STATUS_LOGON_FAILURE, f"bad mechListMIC: {exc.detail}") from exc
        # As Windows, Samba and pyspnego do when the NTLM AUTHENTICATE carried a MIC:
        # restart the RC4 handles after the mechListMIC, keep the sequence numbers.
        if self.ntlm.ntlm_mic_present:
            security.reset_rc4(outgoing=False)
        our_mic = security.sign(self._mech_types_der)
        if self.ntlm.ntlm_mic_present:
            security.reset_rc4(outgoing=True)
        self._security = security
        return our_mic
