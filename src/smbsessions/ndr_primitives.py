"""NDR20 primitives shared by the srvsvc codecs (``ndr`` for sessions, ``srvsvc_ndr`` for
shares, server info and time of day): DWORDs, ``[string] wchar_t*`` and unique
pointers, the resume handle, and a bounds-checked reader. Pure bytes.

Decoding raises ``DecodeError`` on any inconsistency (never another exception
type) and checks every length against the bytes present before using it.
"""

from __future__ import annotations

import codecs
import struct

from .status import DecodeError

# Referent ids as Windows numbers them; any non-zero value means "present".
FIRST_REFERENT = 0x00020000

# The codec functions themselves: str.encode/bytes.decode spend most of
# their time looking the codec up by name (measured: ~5x slower per string).
_utf16_encode = codecs.utf_16_le_encode
_utf16_decode = codecs.utf_16_le_decode

U32 = struct.Struct("<I")
U32x2 = struct.Struct("<II")
U32x3 = struct.Struct("<III")
U32x4 = struct.Struct("<IIII")


def encode_string(value: str) -> bytes:
    """Conformant-varying string body with NUL, padded to a multiple of 4."""
    raw = _utf16_encode(value, "surrogatepass")[0]
    count = len(raw) // 2 + 1
    # 12-byte header + 2*count bytes: odd count leaves 2 bytes to pad.
    return U32x3.pack(count, 0, count) + raw + (b"\0\0\0\0" if count & 1 else b"\0\0")


def encode_unique_string(value: str | None, referent: int) -> bytes:
    """A top-level ``[in, string, unique] wchar_t*`` parameter: referent id and string."""
    if value is None:
        return b"\0\0\0\0"
    return U32.pack(referent) + encode_string(value)


def check_u32(name: str, value: int) -> None:
    """``ValueError`` unless ``value`` fits an NDR DWORD (a caller's mistake, before any byte is written)."""
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{name} must fit in 32 bits, not {value}")


def encode_resume_handle(value: int | None, referent: int) -> bytes:
    """A ``[in, out, unique] DWORD* ResumeHandle``: NULL, or ``referent`` then the value."""
    if value is None:
        return b"\0\0\0\0"
    check_u32("resume_handle", value)
    return U32x2.pack(referent, value)


class StubReader:
    """Cursor over a stub; every read is bounds-checked."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def need(self, size: int, what: str) -> None:
        if self.pos + size > len(self.buf):
            raise DecodeError(
                f"truncated stub: {what} needs {size} bytes at offset {self.pos},"
                f" {len(self.buf) - self.pos} left"
            )

    def u32(self, what: str) -> int:
        self.need(4, what)
        (value,) = U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return int(value)

    def string(self, what: str) -> str:
        value, self.pos = read_string(self.buf, self.pos, what)
        return value

    def unique_string(self, what: str) -> str | None:
        return self.string(what) if self.u32(what + " pointer") else None

    def unique_u32(self, what: str) -> int | None:
        """A ``[unique] DWORD*`` (a resume handle): None for NULL."""
        return self.u32(what) if self.u32(what + " pointer") else None

    def finish(self, what: str) -> None:
        # Tolerate alignment padding a sender may leave at the end, nothing more.
        left = len(self.buf) - self.pos
        if left > 7 or any(self.buf[self.pos :]):
            raise DecodeError(f"{left} unexpected bytes after the {what} at offset {self.pos}")


def read_string(buf: bytes, pos: int, what: str) -> tuple[str, int]:
    """Decode a conformant-varying string at ``pos``; return it and the next aligned offset."""
    if pos + 12 > len(buf):
        raise DecodeError(f"truncated stub: {what} string header at offset {pos}")
    max_count, offset, actual = U32x3.unpack_from(buf, pos)
    if offset != 0:
        raise DecodeError(f"{what}: string offset {offset} at {pos} (must be 0)")
    if actual > max_count:
        raise DecodeError(f"{what}: actual_count {actual} exceeds max_count {max_count} at {pos}")
    if actual == 0:
        raise DecodeError(f"{what}: empty string without terminator at {pos}")
    start = pos + 12
    end = start + 2 * actual
    if end > len(buf):
        raise DecodeError(
            f"truncated stub: {what} claims {actual} characters at {pos}, {len(buf) - start} bytes left"
        )
    if buf[end - 2] or buf[end - 1]:
        raise DecodeError(f"{what}: string at {pos} lacks its NUL terminator")
    try:
        value = _utf16_decode(buf[start : end - 2], "surrogatepass", True)[0]
    except UnicodeDecodeError as exc:  # pragma: no cover - surrogatepass accepts all pairs
        raise DecodeError(f"{what}: undecodable string at {pos}: {exc}") from None
    return value, end + (-end & 3)
