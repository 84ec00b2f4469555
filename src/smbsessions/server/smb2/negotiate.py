"""NEGOTIATE: the SMB1 upgrade, dialect choice, 3.1.1 contexts, FSCTL_VALIDATE_NEGOTIATE_INFO.

Pure functions of the client's offer; the connection keeps the outcome.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from smbsessions.server.smb2.codec import Smb2DecodeError, u16_list
from smbsessions.server.smb2.constants import (
    HASH_SHA512,
    SMB1_MAGIC,
    SUPPORTED_DIALECTS,
    Capabilities,
    Cipher,
    ContextType,
    Dialect,
    SigningAlgorithm,
)
from smbsessions.server.smb2.messages import NegotiateRequest
from smbsessions.status import NtStatus

SMB1_COM_NEGOTIATE = 0x72
SMB1_HEADER_SIZE = 32
PREAUTH_SALT_SIZE = 32
# Our preference when the client offers several (MS-SMB2 leaves the order to the server).
CIPHER_PREFERENCE = (Cipher.AES_128_GCM, Cipher.AES_128_CCM, Cipher.AES_256_GCM, Cipher.AES_256_CCM)
SIGNING_PREFERENCE = (SigningAlgorithm.AES_GMAC, SigningAlgorithm.AES_CMAC, SigningAlgorithm.HMAC_SHA256)


class NegotiateRefused(Exception):
    """The offer has nothing we speak; ``status`` is the answer (or None: close silently)."""

    def __init__(self, reason: str, status: NtStatus | None = NtStatus.STATUS_NOT_SUPPORTED) -> None:
        super().__init__(reason)
        self.status = status


def smb1_dialects(frame: bytes) -> list[bytes]:
    """Dialect names of an SMB1 NEGOTIATE (``b"SMB 2.???"``...); raises Smb2DecodeError otherwise."""
    if len(frame) < SMB1_HEADER_SIZE + 3 or frame[:4] != SMB1_MAGIC or frame[4] != SMB1_COM_NEGOTIATE:
        raise Smb2DecodeError("not an SMB1 NEGOTIATE")
    (byte_count,) = struct.unpack_from("<H", frame, SMB1_HEADER_SIZE + 1)
    data = frame[SMB1_HEADER_SIZE + 3:SMB1_HEADER_SIZE + 3 + byte_count]
    return [part[1:] for part in data.split(b"\0") if part.startswith(b"\x02")]


def smb1_upgrade_dialect(names: list[bytes]) -> Dialect | None:
    """MS-SMB2 3.3.5.3.1: ``SMB 2.???`` -> 0x02FF, else ``SMB 2.002`` -> 0x0202, else None."""
    if b"SMB 2.???" in names:
        return Dialect.SMB_2_WILDCARD
    if b"SMB 2.002" in names:
        return Dialect.SMB_2_0_2
    return None


@dataclass(frozen=True)
class Negotiated:
    dialect: Dialect
    capabilities: int  # what the server announced
    cipher: Cipher | None  # None: no encryption on this connection
    signing: SigningAlgorithm
    contexts: list[tuple[int, bytes]]  # response contexts (3.1.1)


def choose(request: NegotiateRequest, *, encryption_allowed: bool = True) -> Negotiated:
    """Pick the dialect, cipher and signing algorithm for a client's SMB2 NEGOTIATE."""
    offered = [d for d in SUPPORTED_DIALECTS if d in request.dialects]
    if not offered:
        raise NegotiateRefused("no common dialect")
    dialect = max(offered)
    if dialect < Dialect.SMB_3_0:
        return Negotiated(dialect, 0, None, SigningAlgorithm.HMAC_SHA256, [])
    if dialect < Dialect.SMB_3_1_1:
        wants = bool(request.capabilities & Capabilities.ENCRYPTION) and encryption_allowed
        return Negotiated(dialect, Capabilities.ENCRYPTION if wants else 0,
                          Cipher.AES_128_CCM if wants else None, SigningAlgorithm.AES_CMAC, [])
    return _choose_311(request, encryption_allowed)


def _choose_311(request: NegotiateRequest, encryption_allowed: bool) -> Negotiated:
    by_type: dict[int, bytes] = {}
    for context in request.contexts:
        if context.context_type in by_type and context.context_type in (
                ContextType.PREAUTH_INTEGRITY_CAPABILITIES, ContextType.ENCRYPTION_CAPABILITIES,
                ContextType.SIGNING_CAPABILITIES):
            raise NegotiateRefused("negotiate context sent twice", NtStatus.STATUS_INVALID_PARAMETER)
        by_type.setdefault(context.context_type, context.data)
    preauth = by_type.get(ContextType.PREAUTH_INTEGRITY_CAPABILITIES)
    if preauth is None:
        raise NegotiateRefused("3.1.1 without PREAUTH_INTEGRITY_CAPABILITIES",
                               NtStatus.STATUS_INVALID_PARAMETER)
    if HASH_SHA512 not in u16_list(preauth, items_offset=4):  # count, salt length, algorithms
        raise NegotiateRefused("no common preauth hash",
                               NtStatus.STATUS_SMB_NO_PREAUTH_INTEGRITY_HASH_OVERLAP)
    salt = os.urandom(PREAUTH_SALT_SIZE)
    contexts = [(int(ContextType.PREAUTH_INTEGRITY_CAPABILITIES),
                 struct.pack("<HHH", 1, len(salt), HASH_SHA512) + salt)]
    cipher: Cipher | None = None
    if ContextType.ENCRYPTION_CAPABILITIES in by_type:
        offered = u16_list(by_type[ContextType.ENCRYPTION_CAPABILITIES])
        if encryption_allowed:
            cipher = next((c for c in CIPHER_PREFERENCE if c in offered), None)
        contexts.append((int(ContextType.ENCRYPTION_CAPABILITIES), struct.pack("<HH", 1, cipher or 0)))
    signing = SigningAlgorithm.AES_CMAC
    if ContextType.SIGNING_CAPABILITIES in by_type:
        offered = u16_list(by_type[ContextType.SIGNING_CAPABILITIES])
        signing = next((s for s in SIGNING_PREFERENCE if s in offered), SigningAlgorithm.AES_CMAC)
        contexts.append((int(ContextType.SIGNING_CAPABILITIES), struct.pack("<HH", 1, signing)))
    return Negotiated(Dialect.SMB_3_1_1, 0, cipher, signing, contexts)


_VALIDATE_IN = struct.Struct("<I16sHH")


def validate_negotiate_matches(data: bytes, request: NegotiateRequest) -> bool:
    """FSCTL_VALIDATE_NEGOTIATE_INFO input equals what the client's NEGOTIATE said (3.3.5.15.12)."""
    if len(data) < _VALIDATE_IN.size:
        return False
    caps, guid, mode, count = _VALIDATE_IN.unpack_from(data)
    if len(data) < _VALIDATE_IN.size + 2 * count:
        return False
    dialects = struct.unpack_from(f"<{count}H", data, _VALIDATE_IN.size)
    return (caps == request.capabilities and guid == request.client_guid
            and mode == request.security_mode and tuple(dialects) == request.dialects)


def validate_negotiate_output(capabilities: int, server_guid: bytes, security_mode: int,
                              dialect: int) -> bytes:
    return struct.pack("<I16sHH", capabilities, server_guid, security_mode, dialect)
