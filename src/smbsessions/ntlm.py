"""NTLM (MS-NLMP), sans-I/O: message codecs, the NTLMv2 acceptor and session security.

Shared by the server's SMB logons, DCE/RPC authentication and (later) the client.
Bytes in, bytes out; no sockets, no clocks unless the caller leaves them to us.

* ``nt_hash(password)``: NTOWFv1, the one NT hash of this project (pure-Python MD4,
  since OpenSSL 3 may lack it).
* ``NtlmAcceptor``: NEGOTIATE -> CHALLENGE, AUTHENTICATE -> verified ``NtlmIdentity``.
  NTLMv2 only; NTLMv1/LM responses are refused like a wrong password.
* ``NtlmSessionSecurity``: MS-NLMP 3.4 signing and sealing with extended session
  security (what DCE/RPC packet integrity/privacy uses).

Every parse is bounded: offsets and lengths are checked against the token, nothing
is allocated from a claimed length, and every failure is an ``NtlmError`` carrying
an NTSTATUS (malformed messages: STATUS_INVALID_PARAMETER; failed logons:
STATUS_LOGON_FAILURE, whether the user is unknown or the password wrong).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum

from smbsessions.status import NtStatus, SmbSessionsError, ntstatus_name

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
_ECHOED_FLAGS = (
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
_NTLMV2_MIN_RESPONSE = 16 + 28
_AUTHENTICATE_MIC_OFFSET = 72
_AUTHENTICATE_MIC_END = 88
# No legitimate NTLM token comes close; a bigger one is refused before parsing.
MAX_TOKEN_SIZE = 64 * 1024
_FILETIME_UNIX_EPOCH = 116444736000000000


class NtlmError(SmbSessionsError):
    """An NTLM message was malformed or the logon failed; ``ntstatus`` says which."""

    def __init__(self, ntstatus: int, detail: str) -> None:
        self.ntstatus = int(ntstatus)
        self.ntstatus_name = ntstatus_name(self.ntstatus)
        self.detail = detail
        super().__init__(f"{self.ntstatus_name} (0x{self.ntstatus:08X}): {detail}")


def _malformed(detail: str) -> NtlmError:
    return NtlmError(NtStatus.STATUS_INVALID_PARAMETER, detail)


def _logon_failure(detail: str) -> NtlmError:
    return NtlmError(NtStatus.STATUS_LOGON_FAILURE, detail)


# --- primitives -------------------------------------------------------------------


def _md4(message: bytes) -> bytes:
    # RFC 1320; hashlib's md4 is absent when OpenSSL 3 runs without its legacy provider.
    mask = 0xFFFFFFFF

    def rotl(x: int, n: int) -> int:
        x &= mask
        return ((x << n) | (x >> (32 - n))) & mask

    length_bits = (8 * len(message)) & 0xFFFFFFFFFFFFFFFF
    padded = message + b"\x80" + bytes((55 - len(message)) % 64) + struct.pack("<Q", length_bits)
    a, b, c, d = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476
    for offset in range(0, len(padded), 64):
        x = struct.unpack_from("<16I", padded, offset)
        aa, bb, cc, dd = a, b, c, d
        for i in (0, 4, 8, 12):  # round 1: F = (b & c) | (~b & d)
            a = rotl(a + ((b & c) | (~b & d)) + x[i], 3)
            d = rotl(d + ((a & b) | (~a & c)) + x[i + 1], 7)
            c = rotl(c + ((d & a) | (~d & b)) + x[i + 2], 11)
            b = rotl(b + ((c & d) | (~c & a)) + x[i + 3], 19)
        for i in (0, 1, 2, 3):  # round 2: G = majority, constant sqrt(2)
            a = rotl(a + ((b & c) | (b & d) | (c & d)) + x[i] + 0x5A827999, 3)
            d = rotl(d + ((a & b) | (a & c) | (b & c)) + x[i + 4] + 0x5A827999, 5)
            c = rotl(c + ((d & a) | (d & b) | (a & b)) + x[i + 8] + 0x5A827999, 9)
            b = rotl(b + ((c & d) | (c & a) | (d & a)) + x[i + 12] + 0x5A827999, 13)
        for i in (0, 2, 1, 3):  # round 3: H = parity, constant sqrt(3)
            a = rotl(a + (b ^ c ^ d) + x[i] + 0x6ED9EBA1, 3)
            d = rotl(d + (a ^ b ^ c) + x[i + 8] + 0x6ED9EBA1, 9)
            c = rotl(c + (d ^ a ^ b) + x[i + 4] + 0x6ED9EBA1, 11)
            b = rotl(b + (c ^ d ^ a) + x[i + 12] + 0x6ED9EBA1, 15)
        a, b, c, d = (a + aa) & mask, (b + bb) & mask, (c + cc) & mask, (d + dd) & mask
    return struct.pack("<4I", a, b, c, d)


def md4(message: bytes) -> bytes:
    """MD4 (RFC 1320) of ``message``."""
    return _md4(message)


def nt_hash(password: str) -> bytes:
    """NTOWFv1 (MS-NLMP 3.3.1): MD4 of the UTF-16LE password, 16 bytes."""
    return _md4(password.encode("utf-16-le", errors="surrogatepass"))


def _hmac_md5(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, "md5")


class _PureRc4:
    """RC4 keystream state, for a ``cryptography`` without the ARC4 cipher."""

    def __init__(self, key: bytes) -> None:
        s = list(range(256))
        j = 0
        for i in range(256):
            j = (j + s[i] + key[i % len(key)]) & 0xFF
            s[i], s[j] = s[j], s[i]
        self._s = s
        self._i = 0
        self._j = 0

    def update(self, data: bytes) -> bytes:
        s, i, j = self._s, self._i, self._j
        out = bytearray(len(data))
        for n, byte in enumerate(data):
            i = (i + 1) & 0xFF
            j = (j + s[i]) & 0xFF
            s[i], s[j] = s[j], s[i]
            out[n] = byte ^ s[(s[i] + s[j]) & 0xFF]
        self._i, self._j = i, j
        return bytes(out)


def _cryptography_rc4(key: bytes) -> Callable[[bytes], bytes] | None:
    try:
        from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4
        from cryptography.hazmat.primitives.ciphers import Cipher
    except ImportError:  # cryptography < 43
        return None
    encryptor = Cipher(ARC4(key), mode=None).encryptor()
    return encryptor.update


class Rc4:
    """An RC4 handle whose keystream continues across calls (MS-NLMP RC4Init/RC4)."""

    def __init__(self, key: bytes) -> None:
        if not 1 <= len(key) <= 256:
            raise ValueError("RC4 key must be 1 to 256 bytes")
        update = _cryptography_rc4(key)
        self._update: Callable[[bytes], bytes] = update if update is not None else _PureRc4(key).update

    def update(self, data: bytes) -> bytes:
        return self._update(data)


def rc4k(key: bytes, data: bytes) -> bytes:
    """RC4K (MS-NLMP 6): a fresh RC4 handle on ``key`` applied to ``data``."""
    return Rc4(key).update(data)


def ntowfv2(nt_hash_value: bytes, user: str, domain: str) -> bytes:
    """NTOWFv2 (MS-NLMP 3.3.2): HMAC_MD5(NT hash, UNICODE(Uppercase(User) + UserDom))."""
    return _ntowfv2_raw(nt_hash_value, _windows_upper(user), domain.encode("utf-16-le", "surrogatepass"))


def _windows_upper(text: str) -> bytes:
    # Windows upcases one UTF-16 unit at a time and never changes the length (so
    # "ß" stays "ß", where Python's upper() would give "SS").
    return "".join(c.upper() if len(c.upper()) == 1 else c for c in text).encode("utf-16-le", "surrogatepass")


def _ntowfv2_raw(nt_hash_value: bytes, user_upper_utf16: bytes, domain_utf16: bytes) -> bytes:
    return _hmac_md5(nt_hash_value, user_upper_utf16 + domain_utf16)


def filetime_now() -> int:
    """The current time as a FILETIME (100 ns units since 1601-01-01 UTC)."""
    return _FILETIME_UNIX_EPOCH + time.time_ns() // 100


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
            raise _malformed("AV_PAIR list without MsvAvEOL")
        av_id, av_len = struct.unpack_from("<HH", data, offset)
        offset += 4
        if av_id == AvId.MsvAvEOL:
            return pairs
        if offset + av_len > len(data):
            raise _malformed("AV_PAIR value runs past the end of its buffer")
        pairs.append((av_id, data[offset : offset + av_len]))
        offset += av_len


# --- message codecs -----------------------------------------------------------------


def _field(token: bytes, at: int, what: str) -> bytes:
    """The payload a (Len, MaxLen, BufferOffset) field at ``at`` points to, bounds-checked."""
    if at + 8 > len(token):
        raise _malformed(f"{what} field past the end of the message")
    length, _max_length, offset = struct.unpack_from("<HHI", token, at)
    if length == 0:
        return b""
    if offset > len(token) or length > len(token) - offset:
        raise _malformed(f"{what} points outside the message")
    return token[offset : offset + length]


def _header(token: bytes, expected: MessageType) -> None:
    if not isinstance(token, bytes | bytearray | memoryview):
        raise _malformed("token is not bytes")
    if len(token) > MAX_TOKEN_SIZE:
        raise _malformed("NTLM message too large")
    if len(token) < 12 or token[:8] != SIGNATURE:
        raise _malformed("not an NTLMSSP message")
    (message_type,) = struct.unpack_from("<I", token, 8)
    if message_type != expected:
        raise _malformed(f"expected NTLM message type {int(expected)}, got {message_type}")


def message_type(token: bytes) -> int | None:
    """The MessageType of an NTLMSSP token, or None if it does not start like one."""
    if len(token) < 12 or token[:8] != SIGNATURE:
        return None
    (value,) = struct.unpack_from("<I", token, 8)
    return int(value)


def _decode_text(raw: bytes, unicode: bool, what: str) -> str:
    if unicode:
        if len(raw) % 2:
            raise _malformed(f"{what} has an odd length for UTF-16")
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
        raise _malformed("NEGOTIATE_MESSAGE too short")
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
        domain=_decode_text(domain, False, "DomainName"),
        workstation=_decode_text(workstation, False, "Workstation"),
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
        raise _malformed("CHALLENGE_MESSAGE too short")
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
        raise _malformed("AUTHENTICATE_MESSAGE too short")
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
    has_mic = len(token) >= _AUTHENTICATE_MIC_END and all(o >= _AUTHENTICATE_MIC_END for o in payload_starts)
    return AuthenticateMessage(
        flags=flags,
        lm_response=fields["lm"],
        nt_response=fields["nt"],
        domain=fields["domain"],
        user=fields["user"],
        workstation=fields["workstation"],
        encrypted_random_session_key=fields["key"],
        mic=token[_AUTHENTICATE_MIC_OFFSET:_AUTHENTICATE_MIC_END] if has_mic else None,
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
    header_size = _AUTHENTICATE_MIC_END
    payloads = [lm_response, nt_response, domain, user, workstation, encrypted_random_session_key]
    fields = b""
    offset = header_size
    for payload in payloads:
        fields += struct.pack("<HHI", len(payload), len(payload), offset)
        offset += len(payload)
    out = SIGNATURE + struct.pack("<I", MessageType.AUTHENTICATE) + fields + struct.pack("<I", flags)
    out += (version or bytes(8)) + (mic or bytes(16))
    return out + b"".join(payloads)


# --- identity and the acceptor ------------------------------------------------------


@dataclass(frozen=True)
class NtlmIdentity:
    """Who logged on. ``session_key`` is the 16-byte ExportedSessionKey (b"" if none).

    ``anonymous``: a null session (empty user, empty NT response). ``guest``: an unknown
    user let in because the acceptor was told to (no password was checked, no key).
    """

    user: str
    domain: str
    workstation: str
    anonymous: bool
    session_key: bytes
    guest: bool = False


class _State(IntEnum):
    INITIAL = 0
    CHALLENGE_SENT = 1
    COMPLETE = 2
    FAILED = 3


class NtlmAcceptor:
    """Server side of one NTLM exchange.

    ``lookup_nt_hash(user)`` returns the 16-byte NT hash of that account or None
    (case-insensitive matching, if wanted, is the callable's job). ``step`` takes
    NEGOTIATE and returns the CHALLENGE, then takes AUTHENTICATE and returns None
    with ``complete`` set; any failure raises ``NtlmError`` and ends the exchange.
    ``timestamp`` is a FILETIME for MsvAvTimestamp (default: now).
    """

    def __init__(
        self,
        lookup_nt_hash: Callable[[str], bytes | None],
        *,
        server_name: str,
        domain_name: str,
        allow_anonymous: bool = True,
        challenge: bytes | None = None,
        timestamp: int | None = None,
        dns_computer_name: str | None = None,
        dns_domain_name: str | None = None,
        guest_unknown_users: bool = False,
    ) -> None:
        if challenge is not None and len(challenge) != 8:
            raise ValueError("challenge must be 8 bytes")
        self._lookup = lookup_nt_hash
        self.server_name = server_name
        self.domain_name = domain_name
        self.dns_computer_name = dns_computer_name if dns_computer_name is not None else server_name.lower()
        self.dns_domain_name = dns_domain_name if dns_domain_name is not None else domain_name.lower()
        self.allow_anonymous = allow_anonymous
        self.guest_unknown_users = guest_unknown_users
        self.server_challenge = challenge if challenge is not None else secrets.token_bytes(8)
        self._timestamp = timestamp
        self._state = _State.INITIAL
        self.negotiate_flags = 0
        self.negotiate_message = b""
        self.challenge_message = b""
        self.authenticate_message = b""
        # The AUTHENTICATE carried a verified MIC (SPNEGO then restarts RC4 after its mechListMIC).
        self.ntlm_mic_present = False
        self._identity: NtlmIdentity | None = None

    @property
    def complete(self) -> bool:
        return self._state is _State.COMPLETE

    @property
    def identity(self) -> NtlmIdentity:
        if self._identity is None:
            raise NtlmError(NtStatus.STATUS_INVALID_PARAMETER, "the NTLM exchange is not complete")
        return self._identity

    def step(self, token: bytes) -> bytes | None:
        """Feed the client's next NTLM message; returns the CHALLENGE or None when done."""
        try:
            if self._state is _State.INITIAL:
                return self._on_negotiate(bytes(token))
            if self._state is _State.CHALLENGE_SENT:
                self._on_authenticate(bytes(token))
                return None
            raise _malformed("the NTLM exchange is already over")
        except NtlmError:
            self._state = _State.FAILED
            raise

    def session_security(self) -> NtlmSessionSecurity:
        """A fresh server-side signing/sealing context for this logon (MS-NLMP 3.4)."""
        identity = self.identity
        if not identity.session_key:
            raise NtlmError(NtStatus.STATUS_NOT_SUPPORTED, "no session key (anonymous or guest logon)")
        return NtlmSessionSecurity(identity.session_key, self.negotiate_flags, initiator=False)

    # NEGOTIATE -> CHALLENGE (MS-NLMP 3.2.5.1.1)
    def _on_negotiate(self, token: bytes) -> bytes:
        negotiate = parse_negotiate(token)
        client = negotiate.flags
        flags = (
            NegotiateFlags.REQUEST_TARGET
            | NegotiateFlags.NTLM
            | NegotiateFlags.TARGET_INFO
            | NegotiateFlags.TARGET_TYPE_DOMAIN
            | (client & _ECHOED_FLAGS)
        )
        unicode = bool(client & NegotiateFlags.UNICODE) or not client & NegotiateFlags.OEM
        flags |= NegotiateFlags.UNICODE if unicode else NegotiateFlags.OEM
        target_name = self.domain_name.upper()
        encoded_target = (
            target_name.encode("utf-16-le", "surrogatepass")
            if unicode
            else target_name.encode("latin-1", "replace")
        )
        timestamp = self._timestamp if self._timestamp is not None else filetime_now()
        target_info = encode_av_pairs(
            [
                (AvId.MsvAvNbDomainName, _utf16(self.domain_name.upper())),
                (AvId.MsvAvNbComputerName, _utf16(self.server_name.upper())),
                (AvId.MsvAvDnsDomainName, _utf16(self.dns_domain_name)),
                (AvId.MsvAvDnsComputerName, _utf16(self.dns_computer_name)),
                (AvId.MsvAvTimestamp, struct.pack("<Q", timestamp)),
            ]
        )
        version = SERVER_VERSION if flags & NegotiateFlags.VERSION else None
        challenge = build_challenge(int(flags), self.server_challenge, encoded_target, target_info, version)
        self.negotiate_flags = int(flags)
        self.negotiate_message = token
        self.challenge_message = challenge
        self._state = _State.CHALLENGE_SENT
        return challenge

    # AUTHENTICATE -> identity (MS-NLMP 3.2.5.1.2, 3.3.2)
    def _on_authenticate(self, token: bytes) -> None:
        message = parse_authenticate(token)
        flags = message.flags & self.negotiate_flags
        # The client encoded its strings per its own flags.
        unicode = bool(message.flags & NegotiateFlags.UNICODE)
        user = _decode_text(message.user, unicode, "UserName")
        domain = _decode_text(message.domain, unicode, "DomainName")
        workstation = _decode_text(message.workstation, unicode, "Workstation")
        self.authenticate_message = token
        self.negotiate_flags = flags

        if not user and not message.nt_response and message.lm_response in (b"", b"\x00"):
            if not self.allow_anonymous:
                raise _logon_failure("anonymous logons are not allowed")
            self._finish(NtlmIdentity(user, domain, workstation, anonymous=True, session_key=b""))
            return
        if len(message.nt_response) < _NTLMV2_MIN_RESPONSE:
            # 24 bytes is NTLMv1 (or NTLMv1 with ESS); LM alone is no better.
            raise _logon_failure("only NTLMv2 responses are accepted")

        stored_hash = self._lookup(user) if user else None
        if stored_hash is None:
            # The same work as a real check, so timing does not tell unknown users apart.
            self._verify_ntlmv2(_UNKNOWN_USER_HASH, message, unicode)
            if user and self.guest_unknown_users:
                self._finish(
                    NtlmIdentity(user, domain, workstation, anonymous=False, session_key=b"", guest=True)
                )
                return
            # Same status as a wrong password: no user enumeration.
            raise _logon_failure("unknown user or wrong password")
        if len(stored_hash) != 16:
            raise ValueError("lookup_nt_hash must return a 16-byte NT hash")

        session_base_key = self._verify_ntlmv2(stored_hash, message, unicode)
        if session_base_key is None:
            raise _logon_failure("unknown user or wrong password")

        # NTLMv2: KeyExchangeKey = SessionBaseKey (MS-NLMP 3.4.5.1).
        exported_session_key = session_base_key
        if flags & NegotiateFlags.KEY_EXCH:
            if len(message.encrypted_random_session_key) != 16:
                raise _malformed("KEY_EXCH negotiated without a 16-byte EncryptedRandomSessionKey")
            exported_session_key = rc4k(session_base_key, message.encrypted_random_session_key)

        av_pairs = decode_av_pairs(message.nt_response[_NTLMV2_MIN_RESPONSE:])
        av_flags = 0
        for av_id, value in av_pairs:
            if av_id == AvId.MsvAvFlags and len(value) == 4:
                (av_flags,) = struct.unpack("<I", value)
        if av_flags & MSV_AV_FLAG_MIC_PRESENT:
            if message.mic is None:
                raise _logon_failure("MsvAvFlags announces a MIC the message has no room for")
            zeroed = token[:_AUTHENTICATE_MIC_OFFSET] + bytes(16) + token[_AUTHENTICATE_MIC_END:]
            expected = _hmac_md5(
                exported_session_key, self.negotiate_message + self.challenge_message + zeroed
            )
            if not hmac.compare_digest(expected, message.mic):
                raise _logon_failure("the MIC does not match (messages altered)")
            self.ntlm_mic_present = True

        self._finish(
            NtlmIdentity(user, domain, workstation, anonymous=False, session_key=exported_session_key)
        )

    def _verify_ntlmv2(self, stored_hash: bytes, message: AuthenticateMessage, unicode: bool) -> bytes | None:
        """SessionBaseKey if NTProofStr matches for some accepted spelling, else None."""
        nt_proof = message.nt_response[:16]
        blob = message.nt_response[16:]
        user = _decode_strict(message.user, unicode)
        user_spellings = {_windows_upper(user), user.upper().encode("utf-16-le", "surrogatepass")}
        domain_raw = message.domain if unicode else message.domain.decode("latin-1").encode("utf-16-le")
        # The domain as the client sent it; Windows and Samba also accept an empty one.
        domains = [domain_raw] if not domain_raw else [domain_raw, b""]
        for domain_utf16 in domains:
            for user_upper in user_spellings:
                response_key = _ntowfv2_raw(stored_hash, user_upper, domain_utf16)
                expected = _hmac_md5(response_key, self.server_challenge + blob)
                if hmac.compare_digest(expected, nt_proof):
                    return _hmac_md5(response_key, nt_proof)
        return None

    def _finish(self, identity: NtlmIdentity) -> None:
        self._identity = identity
        self._state = _State.COMPLETE


_UNKNOWN_USER_HASH = secrets.token_bytes(16)


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-le", "surrogatepass")


def _decode_strict(raw: bytes, unicode: bool) -> str:
    return raw.decode("utf-16-le", "surrogatepass") if unicode else raw.decode("latin-1")


# --- session security (MS-NLMP 3.4) -------------------------------------------------

_CLIENT_SIGN_MAGIC = b"session key to client-to-server signing key magic constant\x00"
_SERVER_SIGN_MAGIC = b"session key to server-to-client signing key magic constant\x00"
_CLIENT_SEAL_MAGIC = b"session key to client-to-server sealing key magic constant\x00"
_SERVER_SEAL_MAGIC = b"session key to server-to-client sealing key magic constant\x00"


def sign_key(exported_session_key: bytes, *, client_to_server: bool) -> bytes:
    """SIGNKEY with extended session security (MS-NLMP 3.4.5.2)."""
    magic = _CLIENT_SIGN_MAGIC if client_to_server else _SERVER_SIGN_MAGIC
    return hashlib.md5(exported_session_key + magic).digest()


def seal_key(exported_session_key: bytes, flags: int, *, client_to_server: bool) -> bytes:
    """SEALKEY with extended session security (MS-NLMP 3.4.5.3)."""
    if flags & NegotiateFlags.KEY_128:
        key = exported_session_key
    elif flags & NegotiateFlags.KEY_56:
        key = exported_session_key[:7]
    else:
        key = exported_session_key[:5]
    magic = _CLIENT_SEAL_MAGIC if client_to_server else _SERVER_SEAL_MAGIC
    return hashlib.md5(key + magic).digest()


class NtlmSessionSecurity:
    """Signing and sealing for one NTLM security context (MS-NLMP 3.4, ESS only).

    Each direction has its own sequence number and RC4 handle, kept across messages
    (connection-oriented mode). ``initiator=False`` is the server side. The
    ``sign_prefix``/``sign_suffix`` arguments of ``seal``/``unseal`` extend the signed
    data beyond the encrypted part, as DCE/RPC needs (header and sec_trailer are
    signed in clear, only the stub is encrypted).
    """

    def __init__(self, exported_session_key: bytes, flags: int, *, initiator: bool = False) -> None:
        if len(exported_session_key) != 16:
            raise ValueError("the exported session key must be 16 bytes")
        if not flags & NegotiateFlags.EXTENDED_SESSIONSECURITY:
            raise NtlmError(NtStatus.STATUS_NOT_SUPPORTED, "session security needs extended session security")
        if not flags & (NegotiateFlags.SIGN | NegotiateFlags.SEAL):
            raise NtlmError(NtStatus.STATUS_NOT_SUPPORTED, "neither signing nor sealing was negotiated")
        self.flags = flags
        outgoing_is_c2s = initiator
        self._out_sign_key = sign_key(exported_session_key, client_to_server=outgoing_is_c2s)
        self._in_sign_key = sign_key(exported_session_key, client_to_server=not outgoing_is_c2s)
        self._out_seal_key = seal_key(exported_session_key, flags, client_to_server=outgoing_is_c2s)
        self._in_seal_key = seal_key(exported_session_key, flags, client_to_server=not outgoing_is_c2s)
        # RC4 handles are made on first use (an SMB logon may never need one).
        self._out_rc4_handle: Rc4 | None = None
        self._in_rc4_handle: Rc4 | None = None
        self._out_seq = 0
        self._in_seq = 0

    def reset_rc4(self, *, outgoing: bool) -> None:
        """Restart one direction's RC4 handle, keeping its sequence number.

        SPNEGO does this after the mechListMIC when the NTLM AUTHENTICATE had a MIC
        (Samba's gensec_ntlmssp_may_reset_crypto, pyspnego's _reset_ntlm_crypto_state).
        """
        if outgoing:
            self._out_rc4_handle = None
        else:
            self._in_rc4_handle = None

    @property
    def _out_rc4(self) -> Rc4:
        if self._out_rc4_handle is None:
            self._out_rc4_handle = Rc4(self._out_seal_key)
        return self._out_rc4_handle

    @property
    def _in_rc4(self) -> Rc4:
        if self._in_rc4_handle is None:
            self._in_rc4_handle = Rc4(self._in_seal_key)
        return self._in_rc4_handle

    def _mac(self, key: bytes, outgoing: bool, seq: int, message: bytes) -> bytes:
        seq_bytes = struct.pack("<I", seq & 0xFFFFFFFF)
        checksum = _hmac_md5(key, seq_bytes + message)[:8]
        if self.flags & NegotiateFlags.KEY_EXCH:
            checksum = (self._out_rc4 if outgoing else self._in_rc4).update(checksum)
        return struct.pack("<I", 1) + checksum + seq_bytes

    def sign(self, message: bytes) -> bytes:
        """The 16-byte NTLMSSP_MESSAGE_SIGNATURE of an outgoing message."""
        signature = self._mac(self._out_sign_key, True, self._out_seq, message)
        self._out_seq += 1
        return signature

    def verify(self, message: bytes, signature: bytes) -> None:
        """Check an incoming message's signature; raises NtlmError if it does not match."""
        expected = self._mac(self._in_sign_key, False, self._in_seq, message)
        self._in_seq += 1
        if len(signature) != 16 or not hmac.compare_digest(expected, bytes(signature)):
            raise NtlmError(NtStatus.STATUS_INVALID_SIGNATURE, "NTLM message signature does not match")

    def seal(
        self, message: bytes, *, sign_prefix: bytes = b"", sign_suffix: bytes = b""
    ) -> tuple[bytes, bytes]:
        """Encrypt ``message``; returns (ciphertext, signature over prefix+message+suffix)."""
        if not self.flags & NegotiateFlags.SEAL:
            raise NtlmError(NtStatus.STATUS_NOT_SUPPORTED, "sealing was not negotiated")
        ciphertext = self._out_rc4.update(message)
        return ciphertext, self.sign(sign_prefix + message + sign_suffix)

    def unseal(
        self, ciphertext: bytes, signature: bytes, *, sign_prefix: bytes = b"", sign_suffix: bytes = b""
    ) -> bytes:
        """Decrypt and verify an incoming sealed message; raises NtlmError if altered."""
        if not self.flags & NegotiateFlags.SEAL:
            raise NtlmError(NtStatus.STATUS_NOT_SUPPORTED, "sealing was not negotiated")
        plaintext = self._in_rc4.update(ciphertext)
        self.verify(sign_prefix + plaintext + sign_suffix, signature)
        return plaintext
