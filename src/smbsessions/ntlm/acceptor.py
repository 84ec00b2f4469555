"""The server side of one NTLM exchange (MS-NLMP 3.2.5): NEGOTIATE -> CHALLENGE,
AUTHENTICATE -> a verified ``NtlmIdentity``.

NTLMv2 only; NTLMv1/LM responses are refused like a wrong password. Unknown users
cost the same work as a wrong password and get the same status.
"""

from __future__ import annotations

import hmac
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from smbsessions.status import NtStatus

from .crypto import filetime_now, hmac_md5, ntowfv2_raw, rc4k, windows_upper
from .messages import (
    AUTHENTICATE_MIC_END,
    AUTHENTICATE_MIC_OFFSET,
    ECHOED_FLAGS,
    MSV_AV_FLAG_MIC_PRESENT,
    NTLMV2_MIN_RESPONSE,
    SERVER_VERSION,
    AuthenticateMessage,
    AvId,
    NegotiateFlags,
    NtlmError,
    build_challenge,
    decode_av_pairs,
    decode_text,
    encode_av_pairs,
    logon_failure,
    malformed,
    parse_authenticate,
    parse_negotiate,
)
from .security import NtlmSessionSecurity


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


# The acceptor's whole life (MS-NLMP 3.2.5.1): NEGOTIATE moves INITIAL to CHALLENGE_SENT,
# a verified AUTHENTICATE moves that to COMPLETE, any error (including a message after the
# end) to FAILED. ``_move`` refuses every other step.
_TRANSITIONS: dict[_State, frozenset[_State]] = {
    _State.INITIAL: frozenset({_State.CHALLENGE_SENT, _State.FAILED}),
    _State.CHALLENGE_SENT: frozenset({_State.COMPLETE, _State.FAILED}),
    _State.COMPLETE: frozenset({_State.FAILED}),
    _State.FAILED: frozenset({_State.FAILED}),
}


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
            raise malformed("the NTLM exchange is already over")
        except NtlmError:
            self._move(_State.FAILED)
            raise

    def _move(self, to: _State) -> None:
        if to not in _TRANSITIONS[self._state]:
            raise RuntimeError(f"NTLM acceptor: no transition from {self._state.name} to {to.name}")
        self._state = to

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
            | (client & ECHOED_FLAGS)
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
        self._move(_State.CHALLENGE_SENT)
        return challenge

    # AUTHENTICATE -> identity (MS-NLMP 3.2.5.1.2, 3.3.2)
    def _on_authenticate(self, token: bytes) -> None:
        message = parse_authenticate(token)
        flags = message.flags & self.negotiate_flags
        # The client encoded its strings per its own flags.
        unicode = bool(message.flags & NegotiateFlags.UNICODE)
        user = decode_text(message.user, unicode, "UserName")
        domain = decode_text(message.domain, unicode, "DomainName")
        workstation = decode_text(message.workstation, unicode, "Workstation")
        self.authenticate_message = token
        self.negotiate_flags = flags

        if not user and not message.nt_response and message.lm_response in (b"", b"\x00"):
            if not self.allow_anonymous:
                raise logon_failure("anonymous logons are not allowed")
            self._finish(NtlmIdentity(user, domain, workstation, anonymous=True, session_key=b""))
            return
        if len(message.nt_response) < NTLMV2_MIN_RESPONSE:
            # 24 bytes is NTLMv1 (or NTLMv1 with ESS); LM alone is no better.
            raise logon_failure("only NTLMv2 responses are accepted")

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
            raise logon_failure("unknown user or wrong password")
        if len(stored_hash) != 16:
            raise ValueError("lookup_nt_hash must return a 16-byte NT hash")

        session_base_key = self._verify_ntlmv2(stored_hash, message, unicode)
        if session_base_key is None:
            raise logon_failure("unknown user or wrong password")

        # NTLMv2: KeyExchangeKey = SessionBaseKey (MS-NLMP 3.4.5.1).
        exported_session_key = session_base_key
        if flags & NegotiateFlags.KEY_EXCH:
            if len(message.encrypted_random_session_key) != 16:
                raise malformed("KEY_EXCH negotiated without a 16-byte EncryptedRandomSessionKey")
            exported_session_key = rc4k(session_base_key, message.encrypted_random_session_key)

        av_pairs = decode_av_pairs(message.nt_response[NTLMV2_MIN_RESPONSE:])
        av_flags = 0
        for av_id, value in av_pairs:
            if av_id == AvId.MsvAvFlags and len(value) == 4:
                (av_flags,) = struct.unpack("<I", value)
        if av_flags & MSV_AV_FLAG_MIC_PRESENT:
            if message.mic is None:
                raise logon_failure("MsvAvFlags announces a MIC the message has no room for")
            zeroed = token[:AUTHENTICATE_MIC_OFFSET] + bytes(16) + token[AUTHENTICATE_MIC_END:]
            expected = hmac_md5(
                exported_session_key, self.negotiate_message + self.challenge_message + zeroed
            )
            if not hmac.compare_digest(expected, message.mic):
                raise logon_failure("the MIC does not match (messages altered)")
            self.ntlm_mic_present = True

        self._finish(
            NtlmIdentity(user, domain, workstation, anonymous=False, session_key=exported_session_key)
        )

    def _verify_ntlmv2(self, stored_hash: bytes, message: AuthenticateMessage, unicode: bool) -> bytes | None:
        """SessionBaseKey if NTProofStr matches for some accepted spelling, else None."""
        nt_proof = message.nt_response[:16]
        blob = message.nt_response[16:]
        user = _decode_strict(message.user, unicode)
        user_spellings = {windows_upper(user), user.upper().encode("utf-16-le", "surrogatepass")}
        domain_raw = message.domain if unicode else message.domain.decode("latin-1").encode("utf-16-le")
        # The domain as the client sent it; Windows and Samba also accept an empty one.
        domains = [domain_raw] if not domain_raw else [domain_raw, b""]
        for domain_utf16 in domains:
            for user_upper in user_spellings:
                response_key = ntowfv2_raw(stored_hash, user_upper, domain_utf16)
                expected = hmac_md5(response_key, self.server_challenge + blob)
                if hmac.compare_digest(expected, nt_proof):
                    return hmac_md5(response_key, nt_proof)
        return None

    def _finish(self, identity: NtlmIdentity) -> None:
        self._identity = identity
        self._move(_State.COMPLETE)


_UNKNOWN_USER_HASH = secrets.token_bytes(16)


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-le", "surrogatepass")


def _decode_strict(raw: bytes, unicode: bool) -> str:
    return raw.decode("utf-16-le", "surrogatepass") if unicode else raw.decode("latin-1")
