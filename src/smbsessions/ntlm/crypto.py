"""NTLM cryptographic primitives (MS-NLMP 3.3, 6): MD4, the NT hash, RC4, NTOWFv2.

Pure functions of bytes; ``nt_hash`` is the one NT hash of this project (pure-Python
MD4, since OpenSSL 3 may lack it).
"""

from __future__ import annotations

import hmac
import struct
import time
from collections.abc import Callable

_FILETIME_UNIX_EPOCH = 116444736000000000


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


def hmac_md5(key: bytes, message: bytes) -> bytes:
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
    return ntowfv2_raw(nt_hash_value, windows_upper(user), domain.encode("utf-16-le", "surrogatepass"))


def windows_upper(text: str) -> bytes:
    # Windows upcases one UTF-16 unit at a time and never changes the length (so
    # "ß" stays "ß", where Python's upper() would give "SS").
    return "".join(c.upper() if len(c.upper()) == 1 else c for c in text).encode("utf-16-le", "surrogatepass")


def ntowfv2_raw(nt_hash_value: bytes, user_upper_utf16: bytes, domain_utf16: bytes) -> bytes:
    return hmac_md5(nt_hash_value, user_upper_utf16 + domain_utf16)


def filetime_now() -> int:
    """The current time as a FILETIME (100 ns units since 1601-01-01 UTC)."""
    return _FILETIME_UNIX_EPOCH + time.time_ns() // 100

