"""What a sweep shows while it runs: the output writers and the progress line.

``JsonWriter`` (JSON Lines or one array), ``CsvWriter`` (one row per session)
and ``TableWriter`` (one line per host) each take a ``HostRecord`` as it
finishes; ``Progress`` redraws one status line on a terminal.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from typing import IO

from ..output import RecordWriter, printable
from .pool import SweepStats
from .records import CSV_COLUMNS, HostRecord, csv_rows
from .statuses import ANSWERED, UNREACHABLE_STATUSES, SweepStatus


class TableWriter:
    """One fixed-width line per host, as it finishes (``only_sessions``: hosts with sessions only)."""

    HEADER = ("HOST", "STATUS", "LEVEL", "SESSIONS", "USERS / DETAIL")

    def __init__(self, stream: IO[str], only_sessions: bool = False) -> None:
        self.stream = stream
        self.only_sessions = only_sessions
        self.stream.write(self._line(*self.HEADER) + "\n")
        self.stream.flush()

    @staticmethod
    def _line(host: str, status: str, level: str, count: str, rest: str) -> str:
        return f"{host:<28} {status:<13} {level:<5} {count:<8} {rest}".rstrip()

    def write(self, record: HostRecord) -> None:
        if self.only_sessions and not record.session_count:
            return
        users = ",".join(record.users)
        rest = printable(users if record.status == SweepStatus.OK else (record.note or record.detail or ""))
        level = "-" if record.level is None else str(record.level)
        self.stream.write(
            self._line(printable(record.key), record.status, level, str(record.session_count), rest) + "\n"
        )
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class CsvWriter:
    """The sweep's CSV: one row per session, one row for a host without (``CSV_COLUMNS``)."""

    def __init__(self, stream: IO[str], header: bool) -> None:
        self._writer = RecordWriter(stream, "csv", CSV_COLUMNS, header=header)

    def write(self, record: HostRecord) -> None:
        for row in csv_rows(record):
            self._writer.write(row)

    def close(self) -> None:
        self._writer.close()


class JsonWriter:
    """The sweep's JSON Lines (or one JSON array): a record's ``to_dict`` per host."""

    def __init__(self, stream: IO[str], fmt: str) -> None:
        self._writer = RecordWriter(stream, fmt)

    def write(self, record: HostRecord) -> None:
        self._writer.write(record.to_dict())

    def close(self) -> None:
        self._writer.close()


class OutputWriteError(Exception):
    """The output file cannot be written (disk full, I/O error): the sweep stops."""

    def __init__(self, exc: OSError) -> None:
        self.reason = exc.strerror or str(exc)
        super().__init__(self.reason)


class Progress:
    """A progress line on stderr, redrawn in place at most every 0.1 s; silent when not a TTY.

    It fits the terminal's width, and shows elapsed time, an ETA, the hosts in flight,
    and unreachable hosts (normal in a range) apart from real failures.
    """

    def __init__(self, err: IO[str], total: int | None, stats: SweepStats, enabled: bool,
                 width: Callable[[], int] | None = None) -> None:
        self.err = err
        self.total = total
        self.stats = stats
        self.enabled = enabled
        self.in_flight: Callable[[], int] = lambda: 0
        self._width = width or (lambda: shutil.get_terminal_size((80, 24)).columns)
        self._last = 0.0
        self._shown = False
        self._lock = threading.Lock()

    def line(self) -> str:
        """The progress text, cut to the terminal width."""
        stats = self.stats
        by = stats.by_status
        answered = sum(by.get(s, 0) for s in ANSWERED)
        unreachable = sum(by.get(s, 0) for s in UNREACHABLE_STATUSES)
        denied = by.get(SweepStatus.DENIED, 0)
        failed = stats.done - answered - unreachable - denied
        elapsed = stats.elapsed
        rate = stats.done / elapsed if elapsed > 0 else 0.0
        total = "?" if self.total is None else str(self.total)
        eta = ""
        if self.total is not None and rate > 0 and stats.done < self.total:
            eta = f"  ETA {clock((self.total - stats.done) / rate)}"
        parts = [
            f"{stats.done}/{total} hosts",
            f"{clock(elapsed)}{eta}",
            f"in flight {self.in_flight()}",
            f"ok {answered}",
            f"denied {denied}",
            f"unreachable {unreachable}",
            f"failed {failed}",
            f"{rate:.1f}/s",
        ]
        width = max(10, self._width() - 1)
        text = ""
        for part in parts:
            candidate = f"{text}  {part}" if text else part
            if len(candidate) > width:
                break
            text = candidate
        return text[:width]

    def tick(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        with self._lock:
            self.err.write("\r\x1b[K" + self.line())
            self.err.flush()
            self._shown = True

    def clear(self) -> None:
        with self._lock:
            if self._shown:
                self.err.write("\r\x1b[K")
                self.err.flush()
                self._shown = False


def clock(seconds: float) -> str:
    """``M:SS``, or ``H:MM:SS`` from an hour on."""
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
