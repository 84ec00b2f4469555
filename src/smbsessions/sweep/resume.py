"""Sweep output files read back: ``--resume`` and the whole-file summary.

``trim_partial_line`` cuts a line left half-written by an interrupted run,
``read_results`` reads every host's last record (JSON Lines or CSV),
``read_resume`` says which hosts are done.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, NamedTuple

from .statuses import RETRIED_ON_RESUME, STATUSES, WORKER_DIED, SweepStatus
from .targets import record_key


class ResumeState(NamedTuple):
    """What an earlier run's output says: hosts done, and how many records of each status."""

    done: set[str]
    counts: dict[str, int]
    bad_lines: int


@dataclass
class ResultsFile:
    """Every host of an output file, as its last record says (the last one counts)."""

    statuses: dict[str, str] = field(default_factory=dict)
    users: dict[str, set[str]] = field(default_factory=dict)
    """Users with sessions per host (our own session left out)."""
    retried: set[str] = field(default_factory=set)
    """Hosts a resumed run tries again (last record skipped, not-attempted, worker lost)."""
    bad_lines: int = 0

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for status in self.statuses.values():
            counts[status] = counts.get(status, 0) + 1
        return counts

    def hosts_with_user(self, user: str) -> list[str]:
        """Hosts whose last record found ``user`` (case-insensitive), in file order."""
        wanted = user.casefold()
        return [key for key, names in self.users.items()
                if self.statuses.get(key) == SweepStatus.OK and any(n.casefold() == wanted for n in names)]


def read_results(path: str | os.PathLike[str], fmt: str = "jsonl") -> ResultsFile:
    """Read a sweep output file (``jsonl`` or ``csv``; the CSV as ``CSV_COLUMNS`` or the
    older one-row-per-host form with a JSON ``users`` cell). Unreadable lines and records
    with an unknown status are counted in ``bad_lines``. A missing file is empty."""
    results = ResultsFile()
    if not os.path.exists(path):
        return results
    retried = results.retried
    last_key: str | None = None
    # CSV: a record is several rows; one cut short by a failed write (disk full) has
    # fewer session rows than its session_count and is tried again.
    rows_seen: dict[str, int] = {}
    rows_expected: dict[str, int] = {}
    with open(path, encoding="utf-8", errors="replace", newline="") as stream:
        rows: Iterable[Any] = csv.DictReader(stream) if fmt == "csv" else _json_lines(stream)
        for row in rows:
            try:
                host, port, status = str(row["host"]), int(row["port"]), str(row["status"])
            except (KeyError, TypeError, ValueError):
                results.bad_lines += 1
                continue
            if status not in STATUSES or not host:
                results.bad_lines += 1
                continue
            key = record_key(host, port)
            names = _row_users(row, fmt)
            continued = fmt == "csv" and key == last_key and results.statuses.get(key) == status
            if continued:
                results.users[key].update(names)  # another session row of the same record
            else:
                results.statuses.pop(key, None)  # re-insert: file order of the last record
                results.users.pop(key, None)
                results.statuses[key] = status
                results.users[key] = set(names)
            if fmt == "csv":
                counted = bool(row.get("client_name") or row.get("user_name")) and not _is_own(row)
                rows_seen[key] = (rows_seen.get(key, 0) if continued else 0) + counted
                rows_expected[key] = _int_or_zero(row.get("session_count"))
            if status in RETRIED_ON_RESUME or row.get("error") == WORKER_DIED:
                retried.add(key)
            else:
                retried.discard(key)
            last_key = key
    for key, expected in rows_expected.items():
        if rows_seen.get(key, 0) < expected:
            retried.add(key)
    return results


def _is_own(row: dict[str, Any]) -> bool:
    return str(row.get("own_session", "")).lower() in ("true", "1")


def _int_or_zero(text: Any) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return 0


def _json_lines(stream: IO[str]) -> Iterator[Any]:
    for line in stream:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            yield None
            continue
        yield record if isinstance(record, dict) else None


def _row_users(row: dict[str, Any], fmt: str) -> list[str]:
    if fmt != "csv":
        users = row.get("users")
        return [u for u in users if isinstance(u, str)] if isinstance(users, list) else []
    if row.get("user_name"):
        return [] if _is_own(row) else [str(row["user_name"])]
    cell = row.get("users")
    if cell:
        try:
            users = json.loads(cell)
        except ValueError:
            return []
        return [u for u in users if isinstance(u, str)] if isinstance(users, list) else []
    return []


def read_resume(path: str | os.PathLike[str], fmt: str = "jsonl") -> ResumeState:
    """Hosts already finished in an earlier run's output (``jsonl`` or ``csv``).

    A truncated or unreadable line is ignored (trim the file first: see
    ``trim_partial_line``), as are records with an unknown status; hosts whose last
    record is ``skipped``/``not-attempted`` (or lost with a crashed worker) are not
    done (the resumed run tries them). A missing file means nothing is done.
    """
    results = read_results(path, fmt)
    done = {key for key in results.statuses if key not in results.retried}
    counts: dict[str, int] = {}
    for key in done:
        status = results.statuses[key]
        counts[status] = counts.get(status, 0) + 1
    return ResumeState(done, counts, results.bad_lines)


def trim_partial_line(path: str | os.PathLike[str]) -> int:
    """Cut a last line that has no newline (an interrupted write) so appends start clean.

    Returns the number of bytes removed.
    """
    try:
        with open(path, "rb+") as stream:
            size = stream.seek(0, os.SEEK_END)
            if size == 0:
                return 0
            stream.seek(size - 1)
            if stream.read(1) == b"\n":
                return 0
            keep = 0
            block = 65536
            position = size
            while position > 0:
                start = max(0, position - block)
                stream.seek(start)
                chunk = stream.read(position - start)
                index = chunk.rfind(b"\n")
                if index >= 0:
                    keep = start + index + 1
                    break
                position = start
            stream.truncate(keep)
            return size - keep
    except FileNotFoundError:
        return 0
