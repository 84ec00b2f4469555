"""One SMB2 session: its logon state, identity, keys, trees and pipe opens.

``SessionSecurity`` applies the keys (``server.smb2_crypto``): signing
responses, verifying requests, encrypting and decrypting TRANSFORM messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from smbsessions.server.pipe import PipeHandle
from smbsessions.server.smb2.constants import HEADER_SIZE, Cipher, Dialect, HeaderFlags, SigningAlgorithm
from smbsessions.server.smb2.state import SessionEvent, SessionState, advance_session


class SessionSecurity:
    """The keys of a session (none for null and guest sessions)."""

    def __init__(self) -> None:
        self.signing_algorithm: SigningAlgorithm | None = None
        self.cipher: Cipher | None = None
        self._keys: Any = None

    @property
    def can_sign(self) -> bool:
        return self._keys is not None

    @property
    def can_encrypt(self) -> bool:
        return self._keys is not None and self.cipher is not None

    def establish(self, dialect: Dialect, session_key: bytes, preauth_hash: bytes,
                  signing: SigningAlgorithm, cipher: Cipher | None) -> None:
        from smbsessions.server import smb2_crypto

        self._keys = smb2_crypto.derive_session_keys(int(dialect), session_key, preauth_hash,
                                                     int(cipher) if cipher is not None else None)
        self.signing_algorithm = SigningAlgorithm.HMAC_SHA256 if dialect < Dialect.SMB_3_0 else signing
        self.cipher = cipher if dialect >= Dialect.SMB_3_0 else None

    def _signature(self, message: bytes, message_id: int, is_response: bool, is_cancel: bool) -> bytes:
        from smbsessions.server import smb2_crypto

        assert self.signing_algorithm is not None
        signature: bytes = smb2_crypto.sign(int(self.signing_algorithm), self._keys.signing_key, message,
                                            message_id=message_id, is_response=is_response,
                                            is_cancel=is_cancel)
        return signature

    def verify(self, message: bytes, message_id: int, is_cancel: bool = False) -> bool:
        from smbsessions.server import smb2_crypto

        assert self.signing_algorithm is not None
        return smb2_crypto.verify(int(self.signing_algorithm), self._keys.signing_key, message,
                                  message_id=message_id, is_response=False, is_cancel=is_cancel)

    def sign_response(self, message: bytes, message_id: int) -> bytes:
        flags = int.from_bytes(message[16:20], "little") | HeaderFlags.SIGNED
        message = message[:16] + flags.to_bytes(4, "little") + message[20:]
        return message[:48] + self._signature(message, message_id, True, False) + message[HEADER_SIZE:]

    def encrypt(self, message: bytes, session_id: int) -> bytes:
        from smbsessions.server import smb2_crypto

        assert self.cipher is not None
        sealed: bytes = smb2_crypto.encrypt(int(self.cipher), self._keys.encryption_key, session_id, message)
        return sealed

    def decrypt(self, transform: bytes) -> bytes | None:
        from smbsessions.server import smb2_crypto

        assert self.cipher is not None
        try:
            _, plain = smb2_crypto.decrypt(int(self.cipher), self._keys.decryption_key, transform)
        except Exception:  # any failure of authentication or format: the message is refused
            return None
        result: bytes = plain
        return result


@dataclass
class Tree:
    tree_id: int
    share: str


@dataclass
class PipeOpen:
    file_id: bytes
    tree_id: int
    pipe: PipeHandle
    name: str


@dataclass
class SmbSession:
    id: int
    preauth_hash: bytes
    acceptor: Any  # spnego.SpnegoAcceptor while IN_PROGRESS
    state: SessionState = SessionState.IN_PROGRESS
    user: str = ""
    domain: str = ""
    workstation: str = ""
    anonymous: bool = False
    is_admin: bool = False
    signing_required: bool = False
    encrypt_data: bool = False
    security: SessionSecurity = field(default_factory=SessionSecurity)
    trees: dict[int, Tree] = field(default_factory=dict)
    opens: dict[bytes, PipeOpen] = field(default_factory=dict)
    table_key: int | None = None
    next_tree_id: int = 1

    def advance(self, event: SessionEvent) -> None:
        self.state = advance_session(self.state, event)

    def end(self) -> None:
        if self.state is not SessionState.GONE:
            self.advance(SessionEvent.LOGOFF)
        self.acceptor = None
