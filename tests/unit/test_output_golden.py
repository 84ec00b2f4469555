"""Issue 13: every output format is byte-identical on a fixed listing, whatever the fast paths.

The listing goes the whole way after decode: raw SESSION_INFO_502 records (as
the NDR decoder yields them) -> client conversion (client-name canonicalisation,
projection to the level) -> output records -> table / json / jsonl / csv.
Regenerate the golden files only for an intended change of output:
``SMBSESSIONS_REGEN_GOLDEN=1 pytest tests/unit/test_output_golden.py``.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from smbsessions.client import _as_session
from smbsessions.levels import VALID_LEVELS, SessionInfo
from smbsessions.output import FORMATS, session_records, write_sessions

GOLDEN = Path(__file__).parent / "golden"
U32 = 0xFFFFFFFF

RAW: list[SessionInfo] = [
    SessionInfo("10.0.0.7", "bob", 2, 3725, 90061, 0, "SMB 3.1.1", "tcp:10.0.0.1:445"),
    SessionInfo("\\\\WS1", "CORP\\alice", 0, U32, 0, 1, "", None),
    SessionInfo("ws-two", "Jürgen", 5, 59, 1, 2, "Windows 10", "TCP"),
    SessionInfo("::1", "carol", 1, 86400, 86399, 3, None, "TCP"),
    SessionInfo("0:0::1", "carol", 1, 0, 0, 0x10, "x", "y"),
    SessionInfo("::ffff:10.1.2.3", "dave", 0, 1, 2, 0, "SMB 2.1", "TCP"),
    SessionInfo("[fe80::1%eth0]", "erin", 0, 4, 5, 0, None, None),
    SessionInfo("127.0.0.300", "mallory", 0, 6, 7, 0, None, None),
    SessionInfo("010.000.000.001", "mallory", 0, 6, 7, 0, None, None),
    SessionInfo("1.2.3.4\x00evil", "mallory", 0, 8, 9, 0, None, None),
    SessionInfo("1.2.3.4%x", "mallory", 0, 8, 9, 0, None, None),
    SessionInfo("192.168.1.255", "frank", 12, 123456, 654321, 1, "SMB 3.0.2", "tcp:[::1]:445"),
    SessionInfo("ws\udcff\x1b[31m", "bob\u202eexe.txt\x9b", 0, 0, U32, 0, "\x07", "\u2028"),
    SessionInfo(None, None, None, None, None, None, None, None),
    SessionInfo("", "", 0, 0, 0, 0, "", ""),
]


@dataclass(frozen=True)
class OwnSession:
    """A converted session with the own-session flag set (as client.Session carries it)."""

    session: Any
    own_session: bool = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = self.session.to_dict()
        record["own_session"] = True
        return record


def render(level: int, fmt: str) -> str:
    sessions: list[Any] = [_as_session(info, level) for info in RAW]
    sessions[1] = OwnSession(sessions[1])
    records = session_records(sessions, "fs.example", 4455,
                              timestamp="2026-11-30T12:00:00Z" if fmt in ("json", "jsonl") else None,
                              normalise_times=fmt != "table")
    out = io.StringIO()
    write_sessions(records, level, fmt, out)
    return out.getvalue()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("level", VALID_LEVELS)
def test_output_is_byte_identical(level: int, fmt: str) -> None:
    path = GOLDEN / f"level{level}.{fmt}"
    text = render(level, fmt)
    if os.environ.get("SMBSESSIONS_REGEN_GOLDEN"):
        path.write_bytes(text.encode("utf-8"))
    assert text.encode("utf-8") == path.read_bytes()
