"""NTLM messages (MS-NLMP 2.2): flags, AV pairs and the NEGOTIATE / CHALLENGE /
AUTHENTICATE codecs. Pure bytes, no state.

Every parse is bounded: offsets and lengths are checked against the token, nothing
is allocated from a claimed length, and every failure is an ``NtlmError`` carrying
an NTSTATUS (malformed messages: STATUS_INVALID_PARAMETER; failed logons:
STATUS_LOGON_FAILURE, whether the user is unknown or the password wrong).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from smbsessions.status import NtStatus, NtStatusError, TransportError

SIGNATURE = b"NTLMSSP\x00"


class MessageType(IntEnum):
    NEGOTIATE = 1
    CHALLENGE = 2
    AUTHENTICATE = 3


class NegotiateFlags(IntEnum):
    """NegotiateFlags bits (MS-NLMP 2.2.2.5).

    An IntEnum of single bits rather than an IntFlag: combining them gives plain
    ints, and IntFlag arithmetic costs ~30x more on the logon path.
    """

    UNICODE = 0x00000001
    OEM = 0x00000002
    REQUEST_TARGET = 0x00000004
    SIGN = 0x00000010
    SEAL = 0x00000020
    DATAGRAM = 0x00000040
    LM_KEY = 0x00000080
    NTLM = 0x00000200
    ANONYMOUS = 0x00000800
    OEM_DOMAIN_SUPPLIED = 0x00001000
    OEM_WORKSTATION_SUPPLIED = 0x00002000
    ALWAYS_SIGN = 0x00008000
    TARGET_TYPE_DOMAIN = 0x00010000
    TARGET_TYPE_SERVER = 0x00020000
    EXTENDED_SESSIONSECURITY = 0x00080000
    IDENTIFY = 0x00100000
    REQUEST_NON_NT_SESSION_KEY = 0x00400000
    TARGET_INFO = 0x00800000
    VERSION = 0x02000000
    KEY_128 = 0x20000000
    KEY_EXCH = 0x40000000
    KEY_56 = 0x80000000


class AvId(IntEnum):
    """AV_PAIR identifiers (MS-NLMP 2.2.2.1)."""

    MsvAvEOL = 0
    MsvAvNbComputerName = 1
    MsvAvNbDomainName = 2
    MsvAvDnsComputerName = 3
    MsvAvDnsDomainName = 4
    MsvAvDnsTreeName = 5
    MsvAvFlags = 6
    MsvAvTimestamp = 7
    MsvAvSingleHost = 8
    MsvAvTargetName = 9
    MsvAvChannelBindings = 10


MSV_AV_FLAG_MIC_PRESENT = 0x00000002

# Flags the server echoes when the client asks for them (MS-NLMP 3.2.5.1.1).
ECHOED_FLAGS = (
    NegotiateFlags.SIGN
    | NegotiateFlags.SEAL
    | NegotiateFlags.ALWAYS_SIGN
    | NegotiateFlags.EXTENDED_SESSIONSECURITY
    | NegotiateFlags.IDENTIFY
    | NegotiateFlags.VERSION
    | NegotiateFlags.KEY_128
    | NegotiateFlags.KEY_EXCH
    | NegotiateFlags.KEY_56
)

# What we put in the CHALLENGE's Version field: Windows Server 2022, NTLMSSP_REVISION_W2K3.
SERVER_VERSION = struct.pack("<BBH3xB", 10, 0, 20348, 15)

# A NTLMv2 response: NTProofStr (16) + the fixed part of NTLMv2_CLIENT_CHALLENGE (28).
NTLMV2_MIN_RESPONSE = 16 + 28
AUTHENTICATE_MIC_OFFSET = 72
AUTHENTICATE_MIC_END = 88
# No legitimate NTLM token comes close; a bigger one is refused before parsing.
MAX_TOKEN_SIZE = 64 * 1024


class NtlmError(NtStatusError):
    """An NTLM message was malformed or the logon failed; ``ntstatus`` says which."""


def malformed(detail: str) -> NtlmError:
    return NtlmError(NtStatus.STATUS_INVALID_PARAMETER, detail)


def logon_failure(detail: str) -> NtlmError:
    return NtlmError(NtStatus.STATUS_LOGON_FAILURE, detail)


# --- AV pairs -----------------------------------------------------------------------


def encode_av_pairs(pairs: Iterable[tuple[int, bytes]]) -> bytes:
    """AV_PAIR list (MS-NLMP 2.2.2.1) terminated by MsvAvEOL."""
    out = bytearray()
    for av_id, value in pairs:
        if len(value) > 0xFFFF:
            raise ValueError("AV_PAIR value longer than 65535 bytes")
        out += struct.pack("<HH", av_id, len(value)) + value
    out += struct.pack("<HH", AvId.MsvAvEOL, 0)
    return bytes(out)


def decode_av_pairs(data: bytes) -> list[tuple[int, bytes]]:
    """Parse an AV_PAIR list up to MsvAvEOL (bytes after it are ignored, as padding)."""
    pairs: list[tuple[int, bytes]] = []
    offset = 0
    while True:
        if offset + 4 > len(data):
            raise malformed("AV_PAIR list without MsvAvEOL")
        av_id, av_len = struct.unpack_from("<HH", data, offset)
        offset += 4
        if av_id == AvId.MsvAvEOL:
            return pairs
        if offset + av_len > len(data):
            raise malformed("AV_PAIR value runs past the end of its buffer")
        pairs.append((av_id, data[offset : offset + av_len]))
        offset += av_len


# --- message codecs -----------------------------------------------------------------


def _field(token: bytes, at: int, what: str) -> bytes:
    """The payload a (Len, MaxLen, BufferOffset) field at ``at`` points to, bounds-checked."""
    if at + 8 > len(token):
        raise malformed(f"{what} field past the end of the message")
    length, _max_length, offset = struct.unpack_from("<HHI", token, at)
    if length == 0:
        return b""
    if offset > len(token) or length > len(token) - offset:
        raise malformed(f"{what} points outside the message")
    return token[offset : offset + length]


def _header(token: bytes, expected: MessageType) -> None:
    if not isinstance(token, bytes | bytearray | memoryview):
        raise malformed("token is not bytes")
    if len(token) > MAX_TOKEN_SIZE:
        raise malformed("NTLM message too large")
    if len(token) < 12 or token[:8] != SIGNATURE:
        raise malformed("not an NTLMSSP message")
    (message_type,) = struct.unpack_from("<I", token, 8)
    if message_type != expected:
        raise malformed(f"expected NTLM message type {int(expected)}, got {message_type}")


def message_type(token: bytes) -> int | None:
    """The MessageType of an NTLMSSP token, or None if it does not start like one."""
    if len(token) < 12 or token[:8] != SIGNATURE:
        return None
    (value,) = struct.unpack_from("<I", token, 8)
    return int(value)


def decode_text(raw: bytes, unicode: bool, what: str) -> str:
    if unicode:
        if len(raw) % 2:
            raise malformed(f"{what} has an odd length for UTF-16")
        return raw.decode("utf-16-le", errors="replace")
    return raw.decode("latin-1")


@dataclass(frozen=True)
class NegotiateMessage:
    """NEGOTIATE_MESSAGE (MS-NLMP 2.2.1.1)."""

    flags: int
    domain: str
    workstation: str
    version: bytes | None


def parse_negotiate(token: bytes) -> NegotiateMessage:
    _header(token, MessageType.NEGOTIATE)
    if len(token) < 16:
        raise malformed("NEGOTIATE_MESSAGE too short")
    token = bytes(token)
    (flags,) = struct.unpack_from("<I", token, 12)
    domain = workstation = b""
    # Old clients stop after NegotiateFlags; the supplied-flags say whether the fields mean anything.
    if len(token) >= 32:
        if flags & NegotiateFlags.OEM_DOMAIN_SUPPLIED:
            domain = _field(token, 16, "DomainName")
        if flags & NegotiateFlags.OEM_WORKSTATION_SUPPLIED:
            workstation = _field(token, 24, "Workstation")
    version = token[32:40] if flags & NegotiateFlags.VERSION and len(token) >= 40 else None
    return NegotiateMessage(
        flags=flags,
        domain=decode_text(domain, False, "DomainName"),
        workstation=decode_text(workstation, False, "Workstation"),
        version=version,
    )


def build_negotiate(flags: int, version: bytes | None = None) -> bytes:
    """A NEGOTIATE_MESSAGE with no domain or workstation (what modern clients send)."""
    if version is not None:
        flags |= NegotiateFlags.VERSION
    body = SIGNATURE + struct.pack("<II", MessageType.NEGOTIATE, flags)
    body += struct.pack("<HHI", 0, 0, 40) * 2
    return body + (version or bytes(8))


@dataclass(frozen=True)
class ChallengeMessage:
    """CHALLENGE_MESSAGE (MS-NLMP 2.2.1.2)."""

    flags: int
    server_challenge: bytes
    target_name: bytes
    target_info: bytes
    version: bytes | None


def build_challenge(
    flags: int, server_challenge: bytes, target_name: bytes, target_info: bytes, version: bytes | None
) -> bytes:
    """Encode a CHALLENGE_MESSAGE; the strings are already encoded per ``flags``."""
    if len(server_challenge) != 8:
        raise ValueError("server challenge must be 8 bytes")
    header_size = 56
    target_name_offset = header_size
    target_info_offset = target_name_offset + len(target_name)
    out = SIGNATURE + struct.pack("<I", MessageType.CHALLENGE)
    out += struct.pack("<HHI", len(target_name), len(target_name), target_name_offset)
    out += struct.pack("<I", flags) + server_challenge + bytes(8)
    out += struct.pack("<HHI", len(target_info), len(target_info), target_info_offset)
    out += version if version is not None else bytes(8)
    return out + target_name + target_info


def parse_challenge(token: bytes) -> ChallengeMessage:
    _header(token, MessageType.CHALLENGE)
    token = bytes(token)
    if len(token) < 48:
        raise malformed("CHALLENGE_MESSAGE too short")
    (flags,) = struct.unpack_from("<I", token, 20)
    version = token[48:56] if flags & NegotiateFlags.VERSION and len(token) >= 56 else None
    return ChallengeMessage(
        flags=flags,
        server_challenge=token[24:32],
        target_name=_field(token, 12, "TargetName"),
        target_info=_field(token, 40, "TargetInfo"),
        version=version,
    )


@dataclass(frozen=True)
class AuthenticateMessage:
    """AUTHENTICATE_MESSAGE (MS-NLMP 2.2.1.3); strings undecoded (their bytes are hashed)."""

    flags: int
    lm_response: bytes
    nt_response: bytes
    domain: bytes
    user: bytes
    workstation: bytes
    encrypted_random_session_key: bytes
    mic: bytes | None  # the 16 bytes at offset 72, when the payload leaves room for them


def parse_authenticate(token: bytes) -> AuthenticateMessage:
    _header(token, MessageType.AUTHENTICATE)
    token = bytes(token)
    if len(token) < 64:
        raise malformed("AUTHENTICATE_MESSAGE too short")
    (flags,) = struct.unpack_from("<I", token, 60)
    fields = {
        "lm": _field(token, 12, "LmChallengeResponse"),
        "nt": _field(token, 20, "NtChallengeResponse"),
        "domain": _field(token, 28, "DomainName"),
        "user": _field(token, 36, "UserName"),
        "workstation": _field(token, 44, "Workstation"),
        "key": _field(token, 52, "EncryptedRandomSessionKey"),
    }
    # The MIC exists only if no payload starts before its end (older clients have none).
    payload_starts = [
        struct.unpack_from("<I", token, at)[0]
        for at in (16, 24, 32, 40, 48, 56)
        if struct.unpack_from("<H", token, at - 4)[0]
    ]
    has_mic = len(token) >= AUTHENTICATE_MIC_END and all(o >= AUTHENTICATE_MIC_END for o in payload_starts)
    return AuthenticateMessage(
        flags=flags,
        lm_response=fields["lm"],
        nt_response=fields["nt"],
        domain=fields["domain"],
        user=fields["user"],
        workstation=fields["workstation"],
        encrypted_random_session_key=fields["key"],
        mic=token[AUTHENTICATE_MIC_OFFSET:AUTHENTICATE_MIC_END] if has_mic else None,
    )


def build_authenticate(
    flags: int,
    *,
    lm_response: bytes,
    nt_response: bytes,
    domain: bytes,
    user: bytes,
    workstation: bytes,
    encrypted_random_session_key: bytes,
    version: bytes | None = None,
    mic: bytes | None = None,
) -> bytes:
    """Encode an AUTHENTICATE_MESSAGE (with Version and MIC slots: an 88-byte header)."""
    header_size = AUTHENTICATE_MIC_END
    payloads = [lm_response, nt_response, domain, user, workstation, encrypted_random_session_key]
    fields = b""
    offset = header_size
    for payload in payloads:
        fields += struct.pack("<HHI", len(payload), len(payload), offset)
        offset += len(payload)
    out = SIGNATURE + struct.pack("<I", MessageType.AUTHENTICATE) + fields + struct.pack("<I", flags)
    out += (version or bytes(8)) + (mic or bytes(16))
    return out + b"".join(payloads)


# -- the client side of an anonymous (null session) logon -----------------------------

_ANONYMOUS_NEGOTIATE_FLAGS = (
    NegotiateFlags.UNICODE
    | NegotiateFlags.OEM
    | NegotiateFlags.REQUEST_TARGET
    | NegotiateFlags.NTLM
    | NegotiateFlags.ALWAYS_SIGN
    | NegotiateFlags.EXTENDED_SESSIONSECURITY
    | NegotiateFlags.KEY_128
    | NegotiateFlags.KEY_56
)
# What the AUTHENTICATE keeps of the server's CHALLENGE flags.
_ANONYMOUS_ACCEPTED_FLAGS = (
    NegotiateFlags.UNICODE
    | NegotiateFlags.EXTENDED_SESSIONSECURITY
    | NegotiateFlags.KEY_128
    | NegotiateFlags.KEY_56
)


def ntlm_anonymous_negotiate() -> bytes:
    """NTLMSSP NEGOTIATE_MESSAGE (MS-NLMP 2.2.1.1) without domain or workstation."""
    return SIGNATURE + struct.pack("<II8x8x", MessageType.NEGOTIATE, _ANONYMOUS_NEGOTIATE_FLAGS)


def ntlm_anonymous_authenticate(challenge: bytes) -> bytes:
    """NTLMSSP AUTHENTICATE_MESSAGE for an anonymous logon (MS-NLMP 3.1.5.1.2).

    Anonymous means an empty user, an empty NtChallengeResponse and a one-byte zero
    LmChallengeResponse; there is no session key. A ``challenge`` that is not an NTLM
    CHALLENGE_MESSAGE raises ``TransportError`` (the SMB client's logon failed).
    """
    if len(challenge) < 24 or challenge[:8] != SIGNATURE:
        raise TransportError("the server's NTLM CHALLENGE message is malformed")
    (kind,) = struct.unpack_from("<I", challenge, 8)
    if kind != MessageType.CHALLENGE:
        raise TransportError("the server did not answer with an NTLM CHALLENGE message")
    server_flags = struct.unpack_from("<I", challenge, 20)[0]
    flags = (
        NegotiateFlags.ANONYMOUS
        | NegotiateFlags.NTLM
        | NegotiateFlags.REQUEST_TARGET
        | (server_flags & _ANONYMOUS_ACCEPTED_FLAGS)
    )
    if not flags & NegotiateFlags.UNICODE:
        flags |= NegotiateFlags.OEM
    header_len = 64
    lm_response = b"\x00"
    # Fields: LmChallengeResponse, NtChallengeResponse, DomainName, UserName,
    # Workstation, EncryptedRandomSessionKey; only the first is non-empty.
    fields = struct.pack("<HHI", len(lm_response), len(lm_response), header_len)
    for _ in range(5):
        fields += struct.pack("<HHI", 0, 0, header_len + len(lm_response))
    head = SIGNATURE + struct.pack("<I", MessageType.AUTHENTICATE)
    return head + fields + struct.pack("<I", flags) + lm_response
