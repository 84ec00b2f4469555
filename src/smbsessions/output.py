"""Output formats: a readable table, JSON, JSON Lines and CSV.

Records are plain dicts (``Session.to_dict()`` for sessions; the sweep's
per-host records likewise). JSON Lines and CSV stream one record at a time
and flush, so an interrupted run keeps everything already written.
"""

from __future__ import annotations

import csv
import functools
import json
from collections.abc import Callable, Iterable, Sequence
from typing import IO, TYPE_CHECKING, Any

from .levels import FIELD_BY_WIN32_KEY, U32_MAX, columns, user_flag_names

if TYPE_CHECKING:
    from .client import Session

FORMATS = ("table", "json", "jsonl", "csv")


def format_duration(seconds: int | None) -> str:
    """``1d 02:03:04``-style duration; 0xFFFFFFFF (Samba's "under a second") as ``<1s``."""
    if seconds is None:
        return "-"
    if seconds == U32_MAX:
        return "<1s"
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}d {clock}" if days else clock


@functools.lru_cache(maxsize=256)
def format_flags(flags: int | None) -> str:
    if flags is None:
        return "-"
    return ",".join(user_flag_names(flags)) or "-"


_CELL_FORMATTERS: dict[str, Callable[[Any], str]] = {
    "active_time": format_duration,
    "idle_time": format_duration,
    "user_flags": format_flags,
}


def printable(text: str) -> str:
    """``text`` safe for a terminal: every character Python does not count as printable escaped.

    Names come from the server; a hostile one must not drive the terminal. C0
    and C1 controls (ESC, BEL, U+009B CSI), bidi overrides (U+202E), line
    separators and lone surrogates (``\\udcxx``) appear as Python escapes;
    the result always encodes as UTF-8.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _json_escape(char: str) -> str:
    code = ord(char)
    if code > 0xFFFF:  # a JSON \u escape holds 16 bits: a surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


# json.dumps(value, ensure_ascii=False) builds a new encoder per call: one, reused.
_JSON = json.JSONEncoder(ensure_ascii=False)


def json_text(value: Any) -> str:
    """``value`` as compact JSON, non-ASCII kept readable, every unprintable character as ``\\uXXXX``.

    Lossless (``json.loads`` gives back the same strings, lone surrogates
    included), always valid UTF-8, and nothing in it can drive a terminal:
    json itself escapes C0 controls, this escapes DEL, C1, bidi controls,
    U+2028/2029, lone surrogates and the rest of what ``str.isprintable`` rejects.
    """
    text = _JSON.encode(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _json_escape(c) for c in text)


def _cell(key: str, value: Any) -> str:
    formatter = _CELL_FORMATTERS.get(key)
    if formatter is not None:
        return formatter(value)
    if value is None:
        return "-"
    return printable(str(value))


def render_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces, with a rule under the headers."""
    body = [list(row) for row in rows]
    widths = [len(h) for h in headers]
    for row in body:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in body)
    return "\n".join(lines)


OWN_MARK = " *"
"""Appended to the client cell of the command's own session in a table."""


def session_table(records: Sequence[dict[str, Any]], level: int) -> str:
    """The session records of one level as a table (durations and flag names spelled out).

    The command's own session (``own_session``) gets ``OWN_MARK`` after its client name.
    """
    keys = columns(level)
    headers = [FIELD_BY_WIN32_KEY[k].title for k in keys]
    cell_formats = [(k, _CELL_FORMATTERS.get(k, _plain_cell)) for k in keys]

    def row(record: dict[str, Any]) -> list[str]:
        get = record.get
        cells = [format_cell(get(k)) for k, format_cell in cell_formats]
        if get("own_session"):
            cells[0] += OWN_MARK
        return cells

    return render_table(headers, (row(r) for r in records))


def _plain_cell(value: Any) -> str:
    if value is None:
        return "-"
    return printable(value if type(value) is str else str(value))


TIME_KEYS = ("active_time", "idle_time")


def session_records(
    sessions: Iterable[Session],
    host: str,
    port: int,
    *,
    timestamp: str | None = None,
    normalise_times: bool = True,
) -> list[dict[str, Any]]:
    """Output records of enumerated sessions: ``host``, ``port``, the level's pywin32 keys,
    ``client_name_raw``, ``level``, ``own_session`` and (if given) ``timestamp``.

    ``normalise_times`` writes a time of 0xFFFFFFFF (Samba's "under a second
    ago") as 0, so JSON and CSV carry no sentinel; the table spells it ``<1s``.
    """
    records: list[dict[str, Any]] = []
    append = records.append
    for session in sessions:
        record: dict[str, Any] = {"host": host, "port": port}
        record.update(session.to_dict())
        if normalise_times:
            if record.get("active_time") == U32_MAX:
                record["active_time"] = 0
            if record.get("idle_time") == U32_MAX:
                record["idle_time"] = 0
        record["own_session"] = bool(getattr(session, "own_session", False))
        if timestamp is not None:
            record["timestamp"] = timestamp
        append(record)
    return records


def _csv_value(value: Any) -> Any:
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, list | dict):
        return json_text(value)
    return "" if value is None else value


class RecordWriter:
    """Write records as ``json`` (one array), ``jsonl`` or ``csv``, flushing after each."""

    def __init__(
        self, stream: IO[str], fmt: str, columns: Sequence[str] | None = None, header: bool = True
    ) -> None:
        """``header=False`` appends CSV rows to a file that already has its header."""
        if fmt not in ("json", "jsonl", "csv"):
            raise ValueError(f"RecordWriter cannot write {fmt!r}")
        self.stream = stream
        self.fmt = fmt
        self.count = 0
        self._csv: csv.DictWriter[str] | None = None
        if fmt == "csv":
            if not columns:
                raise ValueError("CSV output needs its columns up front")
            self._csv = csv.DictWriter(stream, fieldnames=list(columns), extrasaction="ignore")
            if header:
                self._csv.writeheader()
                stream.flush()
        elif fmt == "json":
            stream.write("[")

    def write(self, record: dict[str, Any]) -> None:
        if self._csv is not None:
            self._csv.writerow({k: _csv_value(v) for k, v in record.items()})
        elif self.fmt == "jsonl":
            self.stream.write(json_text(record) + "\n")
        else:
            self.stream.write(("," if self.count else "") + "\n  " + json_text(record))
        self.count += 1
        self.stream.flush()

    def write_many(self, records: Sequence[dict[str, Any]]) -> None:
        """Write every record, flushing once at the end (a listing already in memory)."""
        if self._csv is None:
            for record in records:
                self.write(record)
            return
        # csv.writer with rows in column order: what DictWriter does, without its per-row checks.
        fields = self._csv.fieldnames
        rows = [[_csv_value(record.get(key)) for key in fields] for record in records]
        self._csv.writer.writerows(rows)
        self.count += len(rows)
        self.stream.flush()

    def close(self) -> None:
        if self.fmt == "json":
            self.stream.write("\n]\n" if self.count else "]\n")
        self.stream.flush()


def session_columns(level: int) -> list[str]:
    """CSV columns for sessions of ``level``."""
    return ["host", "port", *columns(level), "client_name_raw", "level", "own_session"]


def write_sessions(records: Iterable[dict[str, Any]], level: int, fmt: str, stream: IO[str]) -> int:
    """Write session records in ``fmt``; returns how many were written."""
    rows = records if isinstance(records, list) else list(records)
    if fmt == "table":
        if rows:
            stream.write(session_table(rows, level) + "\n")
    elif fmt == "json":  # one write: the same bytes RecordWriter streams
        stream.write("[" + ",".join(["\n  " + json_text(r) for r in rows]) + ("\n]\n" if rows else "]\n"))
    elif fmt == "jsonl":
        stream.write("".join([json_text(r) + "\n" for r in rows]))
    else:
        writer = RecordWriter(stream, fmt, session_columns(level))
        writer.write_many(rows)
        writer.close()
    stream.flush()
    return len(rows)
