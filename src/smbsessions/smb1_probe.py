"""Is a host SMB1-only? One SMB1 NEGOTIATE on a fresh connection, bounded by a deadline.

``transport.SmbPipe`` asks only after its SMB2 NEGOTIATE failed with a closed
connection: some SMB1-only servers hang up on SMB2 instead of answering in SMB1, and
only an SMB1 answer makes a server "SMB1-only" (MS-CIFS 2.2.4.52).
"""

from __future__ import annotations

import socket
import struct
import time

__all__ = ["smb1_negotiate_request", "speaks_only_smb1"]

_SMB1_MAGIC = b"\xffSMB"
_SMB_COM_NEGOTIATE = 0x72
_MAX_REPLY_READS = 64  # a few segments at most; each recv is time-bounded


def smb1_negotiate_request() -> bytes:
    """An SMB1 NEGOTIATE offering only "NT LM 0.12", framed for direct TCP."""
    dialects = b"\x02NT LM 0.12\x00"
    header = (
        _SMB1_MAGIC
        + struct.pack("<BIBH", _SMB_COM_NEGOTIATE, 0, 0x18, 0xC801)
        + bytes(12)  # PIDHigh, SecurityFeatures, Reserved
        + struct.pack("<HHHH", 0xFFFF, 0xFEFF, 0, 0)  # TID, PIDLow, UID, MID
    )
    body = b"\x00" + struct.pack("<H", len(dialects)) + dialects
    smb = header + body
    return struct.pack(">I", len(smb)) + smb


def speaks_only_smb1(host: str, port: int, deadline: float) -> bool:
    """After an SMB2 NEGOTIATE failed: does the host answer an SMB1 NEGOTIATE before
    ``deadline`` (``time.monotonic()``)? Never raises; False when in doubt."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    try:
        with socket.create_connection((host, port), timeout=remaining) as sock:
            sock.sendall(smb1_negotiate_request())
            reply = b""
            for _ in range(_MAX_REPLY_READS):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or len(reply) >= 9:
                    break
                sock.settimeout(remaining)
                chunk = sock.recv(64)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return False
    return reply[4:8] == _SMB1_MAGIC and reply[8:9] == bytes([_SMB_COM_NEGOTIATE])
