"""Sweep targets: host names, IPv4/IPv6 addresses, CIDR ranges, ``host:port``,
``[v6]:port`` and files of them.

Ranges are expanded lazily and de-duplicated with a set of address
*intervals*, so memory grows with the number of entries, never with the
number of hosts a range holds. Pure: no I/O beyond reading target files.
"""

from __future__ import annotations

import bisect
import ipaddress
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NamedTuple

from ..addresses import SMB_PORT, format_host_port, parse_host_port, parse_port

DEFAULT_PORT = SMB_PORT
STDIN = "-"
"""The targets-file name that means standard input."""
DEFAULT_MAX_RANGE = 65536
"""Largest CIDR range (in addresses) accepted without raising ``max_range``: a /16."""


@dataclass(frozen=True, slots=True)
class Target:
    """One host to sweep."""

    host: str
    port: int

    @property
    def key(self) -> str:
        """``host:port`` (``[v6]:port``): the identity used for de-duplication and resume."""
        return record_key(self.host, self.port)


record_key = format_host_port
"""The key a host's record is known by (``--resume`` compares these)."""


class NameSpec(NamedTuple):
    """A host name (lower-cased), swept as given; resolved when connecting."""

    name: str
    port: int


class RangeSpec(NamedTuple):
    """Addresses ``first..last`` (integers, inclusive) of one IP version."""

    version: int
    first: int
    last: int
    port: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1


Spec = NameSpec | RangeSpec


class BadEntry(NamedTuple):
    """A target that could not be used: where it came from, what it said, why."""

    source: str
    line: int | None
    text: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        return f"{where}: {self.text!r}: {self.reason}"


_HOSTNAME_RE = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*\.?")


def parse_spec(text: str, default_port: int = DEFAULT_PORT, max_range: int = DEFAULT_MAX_RANGE) -> Spec:
    """One target entry as a ``NameSpec`` or ``RangeSpec``; ``ValueError`` says what is wrong.

    Forms: ``host``, ``host:port``, ``1.2.3.4``, ``1.2.3.4:port``, ``::1``,
    ``[::1]:port``, ``10.0.0.0/24``, ``10.0.0.0/24:port``, ``fd00::/120``,
    ``[fd00::/120]:port``. A range leaves out the IPv4 network and broadcast
    addresses (IPv6: the subnet-router anycast address), as
    ``ipaddress.ip_network(...).hosts()`` does; ``/31``, ``/32``, ``/127`` and
    ``/128`` keep every address. Ranges of more than ``max_range`` addresses
    are refused.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty target")
    if "@" in text:
        raise ValueError("credentials do not belong in a target (use -U)")
    if "/" in text:
        return _parse_range(text, default_port, max_range)
    host, port = parse_host_port(text)
    port = port or default_port
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if len(host) > 253 or not _HOSTNAME_RE.fullmatch(host):
            raise ValueError("not a host name, IP address or CIDR range") from None
        return NameSpec(host.lower().rstrip("."), port)
    return RangeSpec(address.version, int(address), int(address), port)


def _parse_range(text: str, default_port: int, max_range: int) -> RangeSpec:
    port_text = ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError("unclosed '['")
        net_text, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError("unexpected text after ']'")
            port_text = rest[1:] or "?"
    elif text.count(":") > 1:
        net_text = text
    else:
        net_text, colon, port_text = text.partition(":")
        if colon and not port_text:
            port_text = "?"
    try:
        network = ipaddress.ip_network(net_text, strict=False)
    except ValueError:
        raise ValueError("not a valid CIDR range") from None
    port = parse_port(port_text) if port_text else default_port
    first, last = int(network.network_address), int(network.broadcast_address)
    full = network.max_prefixlen
    if network.version == 4 and network.prefixlen < full - 1:
        first, last = first + 1, last - 1
    elif network.version == 6 and network.prefixlen < full - 1:
        first += 1
    size = last - first + 1
    if size > max_range:
        raise ValueError(
            f"range {network} has {size:,} addresses, more than the limit of {max_range:,}; "
            "raise --max-range to sweep it"
        )
    return RangeSpec(network.version, first, last, port)


class TargetSource:
    """Targets from the command line and from files, parsed lazily each time ``specs`` runs.

    Files: one entry per line, ``#`` starts a comment, blank lines are ignored.
    Bad entries are handed to ``on_bad`` (``file:line``) and skipped.
    """

    def __init__(
        self,
        entries: Iterable[str] = (),
        files: Iterable[str | os.PathLike[str]] = (),
        *,
        default_port: int = DEFAULT_PORT,
        max_range: int = DEFAULT_MAX_RANGE,
        stdin: IO[str] | None = None,
    ) -> None:
        """A file named ``-`` is ``stdin`` (read once, kept for the second pass)."""
        self.entries = list(entries)
        self.files = [Path(f) for f in files if str(f) != STDIN]
        self.reads_stdin = any(str(f) == STDIN for f in files)
        self.default_port = default_port
        self.max_range = max_range
        self._stdin = stdin
        self._stdin_lines: list[str] | None = None

    def _stdin_text(self) -> list[str]:
        if self._stdin_lines is None:
            stream = self._stdin if self._stdin is not None else sys.stdin
            self._stdin_lines = stream.readlines() if self.reads_stdin else []
        return self._stdin_lines

    def check_entries(self) -> list[BadEntry]:
        """The command-line entries that cannot be parsed (callers treat these as usage errors)."""
        bad = []
        for text in self.entries:
            try:
                parse_spec(text, self.default_port, self.max_range)
            except ValueError as exc:
                bad.append(BadEntry("command line", None, text, str(exc)))
        return bad

    def specs(self, on_bad: Callable[[BadEntry], None] | None = None) -> Iterator[Spec]:
        for text in self.entries:
            try:
                yield parse_spec(text, self.default_port, self.max_range)
            except ValueError as exc:
                if on_bad is not None:
                    on_bad(BadEntry("command line", None, text, str(exc)))
        for path in self.files:
            with open(path, encoding="utf-8", errors="replace") as stream:
                yield from self._lines(str(path), stream, on_bad)
        if self.reads_stdin:
            yield from self._lines("<stdin>", self._stdin_text(), on_bad)

    def _lines(
        self, source: str, lines: Iterable[str], on_bad: Callable[[BadEntry], None] | None
    ) -> Iterator[Spec]:
        for number, raw in enumerate(lines, 1):
            text = raw.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                yield parse_spec(text, self.default_port, self.max_range)
            except ValueError as exc:
                if on_bad is not None:
                    on_bad(BadEntry(source, number, text, str(exc)))


class Exclusions:
    """Hosts never to contact (``--exclude``): names, addresses and CIDR ranges, any port.

    ``entries`` are comma-separated lists or ``@FILE`` (one entry per line, ``#``
    comments). A range has no size limit here: excluding a /8 costs one interval.
    """

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.names: set[str] = set()
        self._ranges: dict[int, _Intervals] = {4: _Intervals(), 6: _Intervals()}
        for entry in entries:
            for text in self._expand(entry):
                self._add(text)

    @staticmethod
    def _expand(entry: str) -> list[str]:
        if entry.startswith("@"):
            with open(entry[1:], encoding="utf-8", errors="replace") as stream:
                return [line.split("#", 1)[0].strip() for line in stream]
        return [part.strip() for part in entry.split(",")]

    def _add(self, text: str) -> None:
        if not text:
            return
        spec = parse_spec(text, max_range=1 << 128)
        if isinstance(spec, NameSpec):
            self.names.add(spec.name)
        else:
            self._ranges[spec.version].add_new(spec.first, spec.last)

    def __contains__(self, target: Target) -> bool:
        if target.host.lower() in self.names:
            return True
        try:
            address = ipaddress.ip_address(target.host)
        except ValueError:
            return False
        return self._ranges[address.version].contains(int(address))

    def __bool__(self) -> bool:
        return bool(self.names) or any(len(r) for r in self._ranges.values())


class _Intervals:
    """Disjoint, merged, sorted integer intervals: the addresses already emitted."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def add_new(self, first: int, last: int) -> list[tuple[int, int]]:
        """Add ``[first, last]``; return its parts that were not already present."""
        starts, ends = self._starts, self._ends
        i = bisect.bisect_right(ends, first - 1)  # first interval that could overlap/touch
        fresh: list[tuple[int, int]] = []
        cursor = first
        j = i
        while j < len(starts) and starts[j] <= last:
            if starts[j] > cursor:
                fresh.append((cursor, starts[j] - 1))
            cursor = max(cursor, ends[j] + 1)
            j += 1
        if cursor <= last:
            fresh.append((cursor, last))
        # Merge [first, last] with every interval it overlaps or touches.
        lo = bisect.bisect_left(ends, first - 1)
        hi = bisect.bisect_right(starts, last + 1)
        new_start, new_end = first, last
        if lo < hi:
            new_start = min(new_start, starts[lo])
            new_end = max(new_end, ends[hi - 1])
        starts[lo:hi] = [new_start]
        ends[lo:hi] = [new_end]
        return fresh

    def __len__(self) -> int:
        return len(self._starts)

    def contains(self, value: int) -> bool:
        i = bisect.bisect_right(self._starts, value) - 1
        return i >= 0 and self._ends[i] >= value


class _Dedup:
    def __init__(self) -> None:
        self.names: set[tuple[str, int]] = set()
        self.ranges: dict[tuple[int, int], _Intervals] = {}

    def fresh_parts(self, spec: RangeSpec) -> list[tuple[int, int]]:
        intervals = self.ranges.setdefault((spec.version, spec.port), _Intervals())
        return intervals.add_new(spec.first, spec.last)


def expand(specs: Iterable[Spec]) -> Iterator[Target]:
    """Every target the specs name, in order, each once; lazy (a /16 is never a list)."""
    seen = _Dedup()
    for spec in specs:
        if isinstance(spec, NameSpec):
            if spec in seen.names:
                continue
            seen.names.add((spec.name, spec.port))
            yield Target(spec.name, spec.port)
            continue
        make = ipaddress.IPv4Address if spec.version == 4 else ipaddress.IPv6Address
        for first, last in seen.fresh_parts(spec):
            for value in range(first, last + 1):
                yield Target(str(make(value)), spec.port)


def count_targets(specs: Iterable[Spec]) -> int:
    """How many targets ``expand`` would yield, without generating them."""
    seen = _Dedup()
    total = 0
    for spec in specs:
        if isinstance(spec, NameSpec):
            if spec not in seen.names:
                seen.names.add((spec.name, spec.port))
                total += 1
        else:
            total += sum(last - first + 1 for first, last in seen.fresh_parts(spec))
    return total
