"""NTLM session security (MS-NLMP 3.4): signing and sealing with extended session
security, as DCE/RPC packet integrity and privacy use it.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from smbsessions.status import NtStatus

from .crypto import Rc4, hmac_md5
from .messages import NegotiateFlags, NtlmError

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
        checksum = hmac_md5(key, seq_bytes + message)[:8]
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
