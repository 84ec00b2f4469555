"""RFC 1002 session-service framing, as SMB uses it over TCP (port 445 and 139).

Each SMB message travels as a 4-byte header (type, 24-bit big-endian length)
followed by the message. Our connection loop reads and writes these itself so
that it controls timeouts, TCP_NODELAY and closing; impacket only sees SMB
messages.
"""

from __future__ import annotations

import socket
import time

SESSION_MESSAGE = 0x00
SESSION_REQUEST = 0x81
POSITIVE_SESSION_RESPONSE = 0x82
SESSION_KEEP_ALIVE = 0x85

# impacket's NEGOTIATE advertises 64 KiB as MaxTransactSize/MaxReadSize/MaxWriteSize
# (SMB2) and MaxBufferSize 64000 without large read/write capabilities (SMB1), so no
# conforming request is larger than 64 KiB of payload plus its headers; 4 KiB covers
# those (and a small compound around a full-sized WRITE). A larger frame costs
# parsing time and memory for nothing.
MAX_MESSAGE = (64 + 4) * 1024


class FramingError(Exception):
    """The peer sent something that is not a session-service frame we accept."""


def _recv_exact(sock: socket.socket, size: int, deadline: float) -> bytes | None:
    parts: list[bytes] = []
    remaining = size
    while remaining:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("frame not received in time")
        sock.settimeout(left)
        chunk = sock.recv(min(remaining, 1 << 16))
        if not chunk:
            return None
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def recv_frame(
    sock: socket.socket, wait_timeout: float, frame_timeout: float, deadline: float | None = None
) -> tuple[int, bytes] | None:
    """Next (type, payload), or None when the peer closed the connection.

    The first byte must arrive within ``wait_timeout`` seconds, the whole
    frame within ``frame_timeout`` seconds after that (a deadline for the
    frame, not per ``recv``: a peer trickling a byte at a time is cut off),
    and everything by ``deadline`` (``time.monotonic()``) if given.
    Socket timeouts and errors propagate (``TimeoutError``, ``OSError``).
    """
    limit = float("inf") if deadline is None else deadline
    first = _recv_exact(sock, 1, min(time.monotonic() + wait_timeout, limit))
    if first is None:
        return None
    frame_deadline = min(time.monotonic() + frame_timeout, limit)
    rest = _recv_exact(sock, 3, frame_deadline)
    if rest is None:
        return None
    length = int.from_bytes(rest, "big")
    if length > MAX_MESSAGE:
        raise FramingError(f"frame of {length} bytes exceeds {MAX_MESSAGE}")
    payload = _recv_exact(sock, length, frame_deadline) if length else b""
    if payload is None:
        return None
    return first[0], payload


def frame(payload: bytes, kind: int = SESSION_MESSAGE) -> bytes:
    """One frame carrying ``payload``."""
    if len(payload) >= 1 << 24:
        raise FramingError("message too large for one frame")
    return bytes([kind]) + len(payload).to_bytes(3, "big") + payload
