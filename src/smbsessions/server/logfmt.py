"""Server logs an operator (or a SIEM) can trust: text or JSON, user text escaped.

Client-controlled strings (user, domain, workstation names, pipe names,
qualifiers) can hold control characters, newlines or ANSI escapes. Every
such value goes through ``escape`` before it reaches a log line, so one log
record is always one line and cannot be forged by a client.
"""

from __future__ import annotations

import json
import logging
import time

_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: object) -> str:
    """``text`` with backslashes, control characters and non-printables written as escapes."""
    out = []
    for ch in str(text):
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000
                       else f"\\U{code:08x}")
    return "".join(out)


class TextFormatter(logging.Formatter):
    """``2026-11-30T18:00:00Z INFO message``; the whole line escaped again as a last guard."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        line = f"{stamp} {record.levelname} {escape(record.getMessage())}"
        if record.exc_info:
            line += " | " + escape(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (json escapes control characters)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                    + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=True)


def formatter(kind: str) -> logging.Formatter:
    """``text`` or ``json``."""
    if kind == "json":
        return JsonFormatter()
    if kind == "text":
        return TextFormatter()
    raise ValueError(f"unknown log format {kind!r}")
