"""``--sessions-file``: static sessions served beside the live ones.

The file is what ``smbsessions enum --format json`` prints: a JSON array of
objects with pywin32's key names (``client_name``, ``user_name``,
``num_opens``, ``active_time``, ``idle_time``, ``user_flags``,
``client_type``, ``transport``); other keys (``level``, ``client_name_raw``)
are ignored. Missing numbers are 0. A bad file is refused with the line of
the offending entry and the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

from smbsessions.levels import FIELDS, SessionInfo

_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\r\n"


class SessionsFileError(ValueError):
    """The sessions file cannot be used; the message names the line and the reason."""


def _skip(text: str, index: int) -> int:
    while index < len(text) and text[index] in _WHITESPACE:
        index += 1
    return index


def parse_sessions(text: str, source: str = "<sessions>") -> list[SessionInfo]:
    """Parse a sessions file's text; raises ``SessionsFileError`` with ``source:line``."""

    def fail(index: int, reason: str) -> SessionsFileError:
        return SessionsFileError(f"{source}:{text.count(chr(10), 0, index) + 1}: {reason}")

    index = _skip(text, 0)
    if index >= len(text) or text[index] != "[":
        raise fail(index, "expected a JSON array of session objects")
    index = _skip(text, index + 1)
    sessions: list[SessionInfo] = []
    if index < len(text) and text[index] == "]":
        return sessions
    while True:
        try:
            record, end = _DECODER.raw_decode(text, index)
        except json.JSONDecodeError as exc:
            raise fail(exc.pos, f"invalid JSON: {exc.msg}") from None
        if not isinstance(record, dict):
            raise fail(index, f"entry {len(sessions) + 1} is not an object")
        try:
            info = SessionInfo.from_win32(record)
        except ValueError as exc:
            raise fail(index, f"entry {len(sessions) + 1}: {exc}") from None
        if info.cname is None:
            raise fail(index, f"entry {len(sessions) + 1}: 'client_name' is required")
        # Numbers a capture at a lower level did not carry are served as 0.
        sessions.append(SessionInfo._make(0 if v is None and f.kind == "u32" else v
                                          for v, f in zip(info, FIELDS, strict=True)))
        index = _skip(text, end)
        if index < len(text) and text[index] == ",":
            index = _skip(text, index + 1)
            continue
        if index < len(text) and text[index] == "]":
            break
        raise fail(index, "expected ',' or ']' after an entry")
    if _skip(text, index + 1) != len(text):
        raise fail(index + 1, "unexpected text after the array")
    return sessions


def load_sessions_file(path: str | Path) -> list[SessionInfo]:
    """Read and parse a sessions file (see the module docstring)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SessionsFileError(f"{path}: cannot read: {exc}") from None
    return parse_sessions(text, str(path))
