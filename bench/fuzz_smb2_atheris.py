"""Coverage-guided fuzzing of the SMB2 server core with atheris (by hand, not part of the tests).

    .venv/bin/pip install atheris
    .venv/bin/python bench/fuzz_smb2_atheris.py -max_total_time=300 -max_len=2048

Each input is split into frames (2-byte big-endian length, then the frame) and fed to
a fresh ``ServerConnection`` after a valid SMB 2.1 NEGOTIATE and a null-session logon,
so the fuzzer starts deep inside the state machine. The property is the one
tests/unit/test_smb2_fuzz.py checks with hypothesis: ``receive_frame`` never raises
(malformed input closes the connection or gets an error status), whatever the bytes.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

with atheris.instrument_imports():
    from smbsessions.server.smb2.connection import CoreConfig, ServerConnection
    from smbsessions.transport import ntlm_anonymous_authenticate, ntlm_anonymous_negotiate


def _header(command: int, message_id: int, session_id: int = 0) -> bytes:
    return b"\xfeSMB" + struct.pack("<HHIHHIIQIIQ", 64, 1, 0, command, 8, 0, 0, message_id, 0, 0,
                                    session_id) + bytes(16)


def _setup(token: bytes) -> bytes:
    return struct.pack("<HBBIIHHQ", 25, 0, 1, 0, 0, 88, len(token), 0) + token


def logged_on() -> ServerConnection:
    conn = ServerConnection(CoreConfig("SRV", "WG", lambda u: None, lambda u: False))
    conn.receive_frame(_header(0, 0) + struct.pack("<HHHHI16sIHH", 36, 1, 1, 0, 0, bytes(16), 0, 0, 0)
                       + struct.pack("<H", 0x0210))
    [reply] = conn.receive_frame(_header(1, 1) + _setup(ntlm_anonymous_negotiate()))
    session_id = struct.unpack_from("<Q", reply, 40)[0]
    offset, length = struct.unpack_from("<HH", reply, 68)
    conn.receive_frame(_header(1, 2, session_id) + _setup(ntlm_anonymous_authenticate(reply[offset:offset + length])))
    assert conn.logged_on
    return conn


def test_one(data: bytes) -> None:
    conn = logged_on()
    while len(data) >= 2 and not conn.closed:
        length = int.from_bytes(data[:2], "big")
        frame, data = data[2:2 + length], data[2 + length:]
        out = conn.receive_frame(frame)
        assert isinstance(out, list)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()
