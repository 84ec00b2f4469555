"""SMB2/3 cryptography, sans-I/O: key derivation, preauth integrity, signing, encryption.

Pure functions over bytes (MS-SMB2 3.1.4.1 signing, 3.1.4.2 / 3.3.5.5.3 key
derivation, 2.2.41 TRANSFORM_HEADER, 3.1.4.3 encryption), built on the
``cryptography`` primitives. The state machine decides *when* to sign or encrypt;
this module only knows *how*.

Errors on input from the wire are ``Smb2CryptoError`` (with an NTSTATUS); a
programming error (wrong key length, unknown algorithm) is a ``ValueError``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass
from enum import IntEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM
from cryptography.hazmat.primitives.cmac import CMAC

from smbsessions.status import NtStatus, NtStatusError

DIALECT_2_0_2 = 0x0202
DIALECT_2_1 = 0x0210
DIALECT_3_0 = 0x0300
DIALECT_3_0_2 = 0x0302
DIALECT_3_1_1 = 0x0311


class SigningAlgorithm(IntEnum):
    """SMB2_SIGNING_CAPABILITIES ids (MS-SMB2 2.2.3.1.7)."""

    HMAC_SHA256 = 0x0000
    AES_CMAC = 0x0001
    AES_GMAC = 0x0002


class Cipher(IntEnum):
    """SMB2_ENCRYPTION_CAPABILITIES cipher ids (MS-SMB2 2.2.3.1.2)."""

    AES_128_CCM = 0x0001
    AES_128_GCM = 0x0002
    AES_256_CCM = 0x0003
    AES_256_GCM = 0x0004


_CCM_CIPHERS = (Cipher.AES_128_CCM, Cipher.AES_256_CCM)
_AES_256_CIPHERS = (Cipher.AES_256_CCM, Cipher.AES_256_GCM)

SMB2_PROTOCOL_ID = b"\xfeSMB"
TRANSFORM_PROTOCOL_ID = b"\xfdSMB"
TRANSFORM_HEADER_SIZE = 52
SMB2_HEADER_SIZE = 64
_SIGNATURE_OFFSET = 48
_SIGNATURE_END = 64
_FLAGS_OFFSET = 16
_MESSAGE_ID_OFFSET = 24
SMB2_FLAGS_SIGNED = 0x00000008
TRANSFORM_FLAG_ENCRYPTED = 0x0001  # Flags (3.1.1) / EncryptionAlgorithm AES-128-CCM (3.0.x): both 1
PREAUTH_HASH_SIZE = 64


class Smb2CryptoError(NtStatusError):
    """An encrypted or signed message from the wire could not be accepted.

    MS-SMB2 3.3.5.2.1.1: after a decryption failure the server disconnects.
    """


# --- key derivation ----------------------------------------------------------------


def kdf_sp800_108(key: bytes, label: bytes, context: bytes, length_bits: int = 128) -> bytes:
    """SP800-108 KDF in counter mode with HMAC-SHA256 (MS-SMB2 3.1.4.2).

    K(1) = HMAC-SHA256(key, i=1 (4 bytes BE) || label || 0x00 || context || L (4 bytes BE));
    one round suffices for L = 128 or 256 bits (r = 32).
    """
    if length_bits not in (128, 256):
        raise ValueError("SMB key derivation produces 128- or 256-bit keys")
    data = struct.pack(">I", 1) + label + b"\x00" + context + struct.pack(">I", length_bits)
    return hmac.digest(key, data, "sha256")[: length_bits // 8]


def preauth_hash(previous: bytes, message: bytes) -> bytes:
    """One step of the 3.1.1 preauth integrity chain: SHA-512(previous || message)."""
    return hashlib.sha512(previous + message).digest()


class PreauthIntegrity:
    """The SHA-512 preauth integrity hash of a connection or session (MS-SMB2 3.3.5.4, 3.3.5.5).

    The connection's value starts at 64 zero bytes and takes the NEGOTIATE request
    and response; each session starts from the connection's value (``copy()``) and
    takes every SESSION_SETUP request and every response except the final success.
    """

    def __init__(self, value: bytes = bytes(PREAUTH_HASH_SIZE)) -> None:
        if len(value) != PREAUTH_HASH_SIZE:
            raise ValueError("a preauth integrity hash is 64 bytes")
        self._value = value

    @property
    def value(self) -> bytes:
        return self._value

    def update(self, message: bytes) -> bytes:
        self._value = preauth_hash(self._value, message)
        return self._value

    def copy(self) -> PreauthIntegrity:
        return PreauthIntegrity(self._value)


@dataclass(frozen=True)
class SessionKeys:
    """Server-side keys of one session (MS-SMB2 3.3.5.5.3).

    ``encryption_key`` encrypts what the server sends ("ServerOut"/S2C),
    ``decryption_key`` decrypts what the client sends ("ServerIn"/C2S). Both are
    b"" before dialect 3.0.
    """

    signing_key: bytes
    encryption_key: bytes
    decryption_key: bytes
    application_key: bytes


def derive_session_keys(
    dialect: int, session_key: bytes, preauth_hash: bytes | None, cipher: int | None
) -> SessionKeys:
    """The keys of a session for ``dialect``, from the GSS session key.

    Session.SessionKey is the first 16 bytes of the GSS key (zero-padded); for the
    AES-256 ciphers the encryption keys are 256-bit and derived from the full key
    (MS-SMB2 3.3.5.5.3). 3.1.1 needs the session's final preauth hash.
    """
    if not session_key:
        raise ValueError("no session key (anonymous and guest sessions are not signed)")
    short_key = session_key[:16].ljust(16, b"\x00")
    if dialect in (DIALECT_2_0_2, DIALECT_2_1):
        return SessionKeys(short_key, b"", b"", short_key)
    if dialect in (DIALECT_3_0, DIALECT_3_0_2):
        if cipher not in (None, Cipher.AES_128_CCM):
            raise ValueError("SMB 3.0.x encrypts with AES-128-CCM only")
        return SessionKeys(
            signing_key=kdf_sp800_108(short_key, b"SMB2AESCMAC\x00", b"SmbSign\x00"),
            encryption_key=kdf_sp800_108(short_key, b"SMB2AESCCM\x00", b"ServerOut\x00"),
            decryption_key=kdf_sp800_108(short_key, b"SMB2AESCCM\x00", b"ServerIn \x00"),
            application_key=kdf_sp800_108(short_key, b"SMB2APP\x00", b"SmbRpc\x00"),
        )
    if dialect == DIALECT_3_1_1:
        if preauth_hash is None or len(preauth_hash) != PREAUTH_HASH_SIZE:
            raise ValueError("SMB 3.1.1 key derivation needs the 64-byte preauth integrity hash")
        if cipher in _AES_256_CIPHERS:
            cipher_key, bits = session_key, 256
        else:
            cipher_key, bits = short_key, 128
        return SessionKeys(
            signing_key=kdf_sp800_108(short_key, b"SMBSigningKey\x00", preauth_hash),
            encryption_key=kdf_sp800_108(cipher_key, b"SMBS2CCipherKey\x00", preauth_hash, bits),
            decryption_key=kdf_sp800_108(cipher_key, b"SMBC2SCipherKey\x00", preauth_hash, bits),
            application_key=kdf_sp800_108(short_key, b"SMBAppKey\x00", preauth_hash),
        )
    raise ValueError(f"unknown SMB2 dialect 0x{dialect:04X}")


def default_signing_algorithm(dialect: int) -> SigningAlgorithm:
    """HMAC-SHA256 for 2.x, AES-CMAC for 3.x (3.1.1 may negotiate another)."""
    return SigningAlgorithm.HMAC_SHA256 if dialect < DIALECT_3_0 else SigningAlgorithm.AES_CMAC


# --- signing -------------------------------------------------------------------------


def _gmac_nonce(message_id: int, is_response: bool, is_cancel: bool) -> bytes:
    # MS-SMB2 3.1.4.1: MessageId, then bit 0 = role (server), bit 1 = CANCEL request.
    return struct.pack("<QI", message_id & 0xFFFFFFFFFFFFFFFF, int(is_response) | (int(is_cancel) << 1))


def sign(
    algorithm: int,
    key: bytes,
    message: bytes,
    *,
    message_id: int | None = None,
    is_response: bool,
    is_cancel: bool = False,
) -> bytes:
    """The 16-byte signature of one SMB2 message (its Signature field taken as zero).

    ``message`` is one message of a compound (header + body + padding up to the
    next one). ``message_id`` defaults to the header's (needed by AES-GMAC only).
    """
    if len(message) < SMB2_HEADER_SIZE:
        raise Smb2CryptoError(NtStatus.STATUS_INVALID_PARAMETER, "message shorter than an SMB2 header")
    data = bytes(message[:_SIGNATURE_OFFSET]) + bytes(16) + bytes(message[_SIGNATURE_END:])
    if algorithm == SigningAlgorithm.HMAC_SHA256:
        return hmac.digest(key, data, "sha256")[:16]
    if algorithm == SigningAlgorithm.AES_CMAC:
        mac = CMAC(algorithms.AES(key))
        mac.update(data)
        return mac.finalize()
    if algorithm == SigningAlgorithm.AES_GMAC:
        if message_id is None:
            (message_id,) = struct.unpack_from("<Q", data, _MESSAGE_ID_OFFSET)
        return AESGCM(key).encrypt(_gmac_nonce(message_id, is_response, is_cancel), b"", data)
    raise ValueError(f"unknown signing algorithm {algorithm}")


def verify(
    algorithm: int,
    key: bytes,
    message: bytes,
    *,
    message_id: int | None = None,
    is_response: bool,
    is_cancel: bool = False,
) -> bool:
    """Whether the message's Signature field is right (constant-time comparison)."""
    if len(message) < SMB2_HEADER_SIZE:
        return False
    expected = sign(
        algorithm, key, message, message_id=message_id, is_response=is_response, is_cancel=is_cancel
    )
    return hmac.compare_digest(expected, bytes(message[_SIGNATURE_OFFSET:_SIGNATURE_END]))


def write_signature(message: bytes, signature: bytes) -> bytes:
    """``message`` with SMB2_FLAGS_SIGNED set and ``signature`` in its Signature field.

    The flag is covered by the signature: compute it over ``with_signed_flag(message)``
    (``sign_message`` does both steps).
    """
    if len(signature) != 16:
        raise ValueError("an SMB2 signature is 16 bytes")
    flagged = with_signed_flag(message)
    return flagged[:_SIGNATURE_OFFSET] + signature + flagged[_SIGNATURE_END:]


def with_signed_flag(message: bytes) -> bytes:
    """``message`` with SMB2_FLAGS_SIGNED set in its header."""
    if len(message) < SMB2_HEADER_SIZE:
        raise ValueError("message shorter than an SMB2 header")
    (flags,) = struct.unpack_from("<I", message, _FLAGS_OFFSET)
    return (
        bytes(message[:_FLAGS_OFFSET])
        + struct.pack("<I", flags | SMB2_FLAGS_SIGNED)
        + bytes(message[_FLAGS_OFFSET + 4 :])
    )


def sign_message(
    algorithm: int,
    key: bytes,
    message: bytes,
    *,
    is_response: bool,
    is_cancel: bool = False,
) -> bytes:
    """Set SMB2_FLAGS_SIGNED, sign, and return the message with its signature written in."""
    flagged = with_signed_flag(message)
    signature = sign(algorithm, key, flagged, is_response=is_response, is_cancel=is_cancel)
    return flagged[:_SIGNATURE_OFFSET] + signature + flagged[_SIGNATURE_END:]


# --- encryption ---------------------------------------------------------------------


@dataclass(frozen=True)
class TransformHeader:
    """SMB2 TRANSFORM_HEADER (MS-SMB2 2.2.41)."""

    signature: bytes
    nonce: bytes  # the whole 16-byte field
    original_message_size: int
    flags: int
    session_id: int


def is_transform(data: bytes) -> bool:
    """Whether a frame starts like an SMB2 TRANSFORM_HEADER (0xFD 'S' 'M' 'B')."""
    return bytes(data[:4]) == TRANSFORM_PROTOCOL_ID


def parse_transform_header(data: bytes) -> TransformHeader:
    """Read the transform header (to find the session whose key decrypts the rest)."""
    if len(data) < TRANSFORM_HEADER_SIZE:
        raise Smb2CryptoError(NtStatus.STATUS_INVALID_PARAMETER, "frame shorter than a TRANSFORM_HEADER")
    if bytes(data[:4]) != TRANSFORM_PROTOCOL_ID:
        raise Smb2CryptoError(NtStatus.STATUS_INVALID_PARAMETER, "not an SMB2 TRANSFORM_HEADER")
    original_size, _reserved, flags, session_id = struct.unpack_from("<IHHQ", data, 36)
    return TransformHeader(
        signature=bytes(data[4:20]),
        nonce=bytes(data[20:36]),
        original_message_size=original_size,
        flags=flags,
        session_id=session_id,
    )


def _aead(cipher: int, key: bytes) -> AESCCM | AESGCM:
    expected = 32 if cipher in _AES_256_CIPHERS else 16
    if cipher not in tuple(Cipher):
        raise ValueError(f"unknown cipher {cipher}")
    if len(key) != expected:
        raise ValueError(f"cipher {Cipher(cipher).name} needs a {expected}-byte key")
    return AESCCM(key, tag_length=16) if cipher in _CCM_CIPHERS else AESGCM(key)


def _nonce_length(cipher: int) -> int:
    return 11 if cipher in _CCM_CIPHERS else 12


def encrypt(cipher: int, key: bytes, session_id: int, message: bytes, nonce: bytes | None = None) -> bytes:
    """TRANSFORM_HEADER + ciphertext of ``message`` (MS-SMB2 3.1.4.3).

    ``nonce``: 11 bytes (CCM) / 12 bytes (GCM), zero-padded into the 16-byte field,
    or a whole 16-byte field; random when omitted. The AAD is the header from the
    Nonce field on (32 bytes); the AEAD tag goes in the Signature field.
    """
    aead = _aead(cipher, key)
    length = _nonce_length(cipher)
    if nonce is None:
        nonce = os.urandom(length)
    if len(nonce) == length:
        nonce_field = nonce + bytes(16 - length)
    elif len(nonce) == 16:
        nonce_field = nonce
    else:
        raise ValueError(f"nonce must be {length} or 16 bytes")
    aad = nonce_field + struct.pack("<IHHQ", len(message), 0, TRANSFORM_FLAG_ENCRYPTED, session_id)
    sealed = aead.encrypt(nonce_field[:length], bytes(message), aad)
    ciphertext, tag = sealed[:-16], sealed[-16:]
    return TRANSFORM_PROTOCOL_ID + tag + aad + ciphertext


def decrypt(cipher: int, key: bytes, transform: bytes) -> tuple[int, bytes]:
    """(SessionId, plaintext) of one encrypted frame; ``Smb2CryptoError`` if it is not authentic."""
    header = parse_transform_header(transform)
    if header.flags != TRANSFORM_FLAG_ENCRYPTED:
        raise Smb2CryptoError(NtStatus.STATUS_INVALID_PARAMETER, "TRANSFORM_HEADER Flags is not Encrypted")
    ciphertext = bytes(transform[TRANSFORM_HEADER_SIZE:])
    if header.original_message_size != len(ciphertext):
        raise Smb2CryptoError(
            NtStatus.STATUS_INVALID_PARAMETER, "OriginalMessageSize does not match the encrypted payload"
        )
    if len(ciphertext) < SMB2_HEADER_SIZE:
        raise Smb2CryptoError(
            NtStatus.STATUS_INVALID_PARAMETER, "encrypted payload shorter than an SMB2 header"
        )
    aead = _aead(cipher, key)
    aad = bytes(transform[20:TRANSFORM_HEADER_SIZE])
    try:
        plaintext = aead.decrypt(header.nonce[: _nonce_length(cipher)], ciphertext + header.signature, aad)
    except InvalidTag:
        raise Smb2CryptoError(
            NtStatus.STATUS_ACCESS_DENIED, "decryption failed (bad key or altered message)"
        ) from None
    return header.session_id, plaintext
