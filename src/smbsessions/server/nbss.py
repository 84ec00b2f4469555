"""RFC 1002 session-service framing, as SMB uses it over TCP (ports 445 and 139).

Each SMB message travels behind a 4-byte header: a type byte and a 24-bit
big-endian length (Windows and Samba use all 24 bits on 445). Pure functions;
the shell does the reading.
"""

from __future__ import annotations

SESSION_MESSAGE = 0x00
SESSION_REQUEST = 0x81
POSITIVE_SESSION_RESPONSE = 0x82
SESSION_KEEP_ALIVE = 0x85
HEADER_SIZE = 4
MAX_SESSION_REQUEST = 1024  # two encoded NetBIOS names: well under this

# The server negotiates 64 KiB MaxTransact/Read/WriteSize without LARGE_MTU, so no
# conforming request is larger than 64 KiB of payload plus its headers (SMB2 header,
# command body, TRANSFORM_HEADER, a small compound around a full-sized WRITE): 4 KiB
# covers those. A larger frame is refused before anything is allocated for it.
MAX_MESSAGE = (64 + 4) * 1024


class FramingError(Exception):
    """The peer sent something that is not a session-service frame we accept."""


def parse_header(header: bytes) -> tuple[int, int]:
    """(type, length) of a frame header; raises ``FramingError`` for an unknown type or a length
    over the cap for that type."""
    if len(header) != HEADER_SIZE:
        raise FramingError("truncated frame header")
    kind = header[0]
    length = int.from_bytes(header[1:], "big")
    if kind == SESSION_MESSAGE:
        limit = MAX_MESSAGE
    elif kind == SESSION_REQUEST:
        limit = MAX_SESSION_REQUEST
    elif kind == SESSION_KEEP_ALIVE:
        limit = 0
    else:
        raise FramingError(f"frame type {kind:#04x} not accepted")
    if length > limit:
        raise FramingError(f"frame of {length} bytes exceeds {limit}")
    return kind, length


def frame(payload: bytes, kind: int = SESSION_MESSAGE) -> bytes:
    """One frame carrying ``payload``."""
    if len(payload) >= 1 << 24:
        raise FramingError("message too large for one frame")
    return bytes([kind]) + len(payload).to_bytes(3, "big") + payload
