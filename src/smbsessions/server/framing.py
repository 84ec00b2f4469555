"""RFC 1002 session-service framing, as SMB uses it over TCP (port 445 and 139).

Each SMB message travels as a 4-byte header (type, 24-bit big-endian length)
followed by the message. Our connection loop reads and writes these itself so
that it controls timeouts, TCP_NODELAY and closing; impacket only sees SMB
messages.
"""

from __future__ import annotations

import socket

SESSION_MESSAGE = 0x00
SESSION_REQUEST = 0x81
POSITIVE_SESSION_RESPONSE = 0x82
SESSION_KEEP_ALIVE = 0x85

# Larger than any request impacket's negotiate allows (64 KiB transact/write).
MAX_MESSAGE = 1 << 20


class FramingError(Exception):
    """The peer sent something that is not a session-service frame we accept."""


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    parts: list[bytes] = []
    remaining = size
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 16))
        if not chunk:
            return None
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def recv_frame(sock: socket.socket) -> tuple[int, bytes] | None:
    """Next (type, payload), or None when the peer closed the connection.

    Socket timeouts and errors propagate (``TimeoutError``, ``OSError``).
    """
    header = _recv_exact(sock, 4)
    if header is None:
        return None
    length = int.from_bytes(header[1:4], "big")
    if length > MAX_MESSAGE:
        raise FramingError(f"frame of {length} bytes exceeds {MAX_MESSAGE}")
    payload = _recv_exact(sock, length) if length else b""
    if payload is None:
        return None
    return header[0], payload


def frame(payload: bytes, kind: int = SESSION_MESSAGE) -> bytes:
    """One frame carrying ``payload``."""
    if len(payload) >= 1 << 24:
        raise FramingError("message too large for one frame")
    return bytes([kind]) + len(payload).to_bytes(3, "big") + payload
