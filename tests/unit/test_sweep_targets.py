"""Sweep targets (``smbsessions.sweep.targets``): parsing, lazy expansion, de-duplication, files."""

from __future__ import annotations

import ipaddress
import itertools
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smbsessions.auth import Credentials
from smbsessions.sweep.targets import (
    DEFAULT_PORT,
    NameSpec,
    RangeSpec,
    TargetSource,
    count_targets,
    expand,
    parse_spec,
)

CREDS = Credentials(username="alice", password="pw")


def targets_of(*entries: str, max_range: int = 65536) -> list[str]:
    return [t.key for t in expand(parse_spec(e, max_range=max_range) for e in entries)]


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("fileserver", NameSpec("fileserver", DEFAULT_PORT)),
        ("FileServer.Corp.Example:4455", NameSpec("fileserver.corp.example", 4455)),
        ("10.1.2.3", RangeSpec(4, int(ipaddress.ip_address("10.1.2.3")), int(ipaddress.ip_address("10.1.2.3")), 445)),
        ("10.1.2.3:139", RangeSpec(4, 0x0A010203, 0x0A010203, 139)),
        ("::1", RangeSpec(6, 1, 1, 445)),
        ("[::1]:4455", RangeSpec(6, 1, 1, 4455)),
        ("[fe80::1]", RangeSpec(6, int(ipaddress.ip_address("fe80::1")), int(ipaddress.ip_address("fe80::1")), 445)),
        ("10.0.0.0/30", RangeSpec(4, 0x0A000001, 0x0A000002, 445)),
        ("10.0.0.0/30:4455", RangeSpec(4, 0x0A000001, 0x0A000002, 4455)),
        ("10.0.0.7/31", RangeSpec(4, 0x0A000006, 0x0A000007, 445)),
        ("10.0.0.7/32", RangeSpec(4, 0x0A000007, 0x0A000007, 445)),
        ("fd00::/126", RangeSpec(6, int(ipaddress.ip_address("fd00::1")), int(ipaddress.ip_address("fd00::3")), 445)),
        ("[fd00::/127]:8445", RangeSpec(6, int(ipaddress.ip_address("fd00::")), int(ipaddress.ip_address("fd00::1")), 8445)),
        ("  host-1  ", NameSpec("host-1", 445)),
    ],
)
def test_parse_spec_forms(text: str, spec: Any) -> None:
    assert parse_spec(text) == spec


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("bad..host", "not a host name"),
        ("-host", "not a host name"),
        ("host_with space", "not a host name"),
        ("10.0.0.0/33", "CIDR"),
        ("10.0.0.0/24:", "port"),
        ("10.0.0.0/24:0", "port"),
        ("1.2.3.4:99999", "port"),
        ("[::1", "unclosed"),
        ("[::1]x", "unexpected"),
        ("alice@host", "credentials"),
        ("[nothex::zz]", "IPv6"),
    ],
)
def test_parse_spec_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_spec(text)


def test_large_range_refused_with_clear_message_unless_allowed() -> None:
    with pytest.raises(ValueError, match=r"10\.0\.0\.0/15 has 131,070 addresses.*--max-range"):
        parse_spec("10.0.0.0/15")
    assert parse_spec("10.0.0.0/16").size == 65534
    assert parse_spec("10.0.0.0/15", max_range=1 << 17).size == 131070
    with pytest.raises(ValueError, match="--max-range"):
        parse_spec("fd00::/64")


# --------------------------------------------------------------------------- expansion


def test_expand_keeps_order_and_removes_duplicates() -> None:
    keys = targets_of(
        "10.0.0.2", "10.0.0.0/29", "10.0.0.5", "host", "HOST", "host:446", "10.0.0.4/30", "10.0.0.9", "::1",
        "[::1]:445", "[::1]:4455",
    )
    assert keys == [
        "10.0.0.2:445", "10.0.0.1:445", "10.0.0.3:445", "10.0.0.4:445", "10.0.0.5:445", "10.0.0.6:445",
        "host:445", "host:446", "10.0.0.9:445", "[::1]:445", "[::1]:4455",
    ]
    assert len(keys) == len(set(keys))


def test_same_address_on_another_port_is_another_target() -> None:
    assert targets_of("127.0.0.1:4455", "127.0.0.1:4456", "127.0.0.1:4455") == [
        "127.0.0.1:4455", "127.0.0.1:4456"
    ]


_ranges = st.lists(
    st.tuples(st.integers(0, 255), st.integers(24, 32), st.sampled_from([445, 4455])), min_size=1, max_size=12
)


@settings(max_examples=60, deadline=None)
@given(_ranges)
def test_count_matches_expansion_and_union(ranges: list[tuple[int, int, int]]) -> None:
    entries = [f"10.0.{third}.0/{prefix}:{port}" for third, prefix, port in ranges]
    entries += [f"10.0.{third}.{third}:{port}" for third, _, port in ranges]
    specs = [parse_spec(e) for e in entries]
    keys = [t.key for t in expand(specs)]
    assert len(keys) == len(set(keys)) == count_targets(specs)
    expected = set()
    for spec in specs:
        assert isinstance(spec, RangeSpec)
        for value in range(spec.first, spec.last + 1):
            expected.add(f"{ipaddress.IPv4Address(value)}:{spec.port}")
    assert set(keys) == expected


def test_expansion_is_lazy_and_bounded_in_memory() -> None:
    specs = [parse_spec("10.0.0.0/8", max_range=1 << 24), parse_spec("10.3.0.0/16")]
    tracemalloc.start()
    try:
        generator = expand(specs)
        first = [t.key for t in itertools.islice(generator, 2000)]
        assert count_targets(specs) == (1 << 24) - 2  # the /16 lies inside the /8
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert first[0] == "10.0.0.1:445" and first[-1] == "10.0.7.208:445"
    # 16 million targets named, 2000 generated: nothing per host was kept.
    assert peak < 2_000_000


def test_a_slash_16_streams_without_materialising(tmp_path: Path) -> None:
    tracemalloc.start()
    try:
        count = 0
        for _ in expand([parse_spec("172.16.0.0/16"), parse_spec("172.16.5.0/24")]):
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 65534
    assert peak < 1_000_000


def test_targets_file_comments_blanks_duplicates_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "targets.txt"
    path.write_text(
        "# servers\n"
        "\n"
        "fs1\n"
        "fs1   # again\n"
        "10.0.0.0/30\n"
        "not a host\n"
        "10.0.0.1\n"
        "  [::1]:4455  \n"
        "10.0.0.0/8\n"
    )
    source = TargetSource(["fs2", "FS1"], [path])
    bad: list[str] = []
    total = count_targets(source.specs(lambda entry: bad.append(str(entry))))
    keys = [t.key for t in expand(source.specs())]
    assert keys == ["fs2:445", "fs1:445", "10.0.0.1:445", "10.0.0.2:445", "[::1]:4455"]
    assert total == len(keys)
    assert bad == [
        f"{path}:6: 'not a host': not a host name, IP address or CIDR range",
        f"{path}:9: '10.0.0.0/8': range 10.0.0.0/8 has 16,777,214 addresses, more than the limit of 65,536; "
        "raise --max-range to sweep it",
    ]


def test_command_line_entries_checked_up_front() -> None:
    source = TargetSource(["ok-host", "bad..host"])
    assert [b.text for b in source.check_entries()] == ["bad..host"]
