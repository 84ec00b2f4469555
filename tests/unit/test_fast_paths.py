"""Issue 13: the per-entry fast paths give exactly what the general code gives."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from smbsessions.levels import FIELDS, LEVELS, SessionInfo, user_flag_names
from smbsessions.rules import canonical_client_name


def reference_canonical(name: str) -> str:
    """The general rule, parsing every name (as before the fast path)."""
    bare = name.lstrip("\\")
    if bare.startswith("[") and bare.endswith("]"):
        bare = bare[1:-1]
    host, _, scope = bare.partition("%")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "\\\\" + bare
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    text = f"{address}%{scope}" if scope else str(address)
    return f"\\\\[{text}]" if ":" in text else "\\\\" + text


NAMES = st.one_of(
    st.text(alphabet="0123456789.:%[]\\abfx\x00 ", max_size=24),
    st.ip_addresses().map(str),
    st.ip_addresses(v=4).map(lambda a: f"\\\\{a}"),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
    st.text(max_size=12),
)


@given(NAMES)
def test_canonical_client_name_fast_path_agrees(name: str) -> None:
    assert canonical_client_name(name) == reference_canonical(name)


def test_canonical_client_name_edge_cases() -> None:
    for name in ["1.2.3.4\x00evil", "127.0.0.300", "010.0.0.1", "1.2.3.4%eth0", "[1.2.3.4]", "[WS1]", "",
                 "\\\\", "::ffff:10.1.2.3", "0:0::1", "[fe80::1%eth0]"]:
        assert canonical_client_name(name) == reference_canonical(name), name


SESSIONS = st.builds(
    SessionInfo,
    st.none() | st.text(max_size=5), st.none() | st.text(max_size=5), st.none() | st.integers(0, 9),
    st.none() | st.integers(0, 2**32 - 1), st.none() | st.integers(0, 9), st.none() | st.integers(0, 2**32 - 1),
    st.none() | st.text(max_size=3), st.none() | st.text(max_size=3),
)


@given(SESSIONS, st.sampled_from(sorted(LEVELS)))
def test_projection_and_win32_dicts_agree_with_the_declaration(info: SessionInfo, level: int) -> None:
    kept = {f.name for f in LEVELS[level]}
    assert info.project(level) == SessionInfo(**{f.name: getattr(info, f.name) if f.name in kept else None
                                                 for f in FIELDS})
    assert list(info.to_win32(level).items()) == [(f.win32_key, getattr(info, f.name)) for f in LEVELS[level]]


@given(st.integers(0, 2**32 - 1))
def test_cached_flag_names_are_fresh_lists(flags: int) -> None:
    first = user_flag_names(flags)
    first.append("mutated")
    assert "mutated" not in user_flag_names(flags)
