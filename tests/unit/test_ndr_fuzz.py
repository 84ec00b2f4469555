"""Hostile stubs: the decoders raise DecodeError, promptly and without big allocations.

Whatever arrives from the network, ``decode_*`` either returns a value that
re-encodes and decodes to itself, or raises ``smbsessions.status.DecodeError``;
never IndexError, struct.error, UnicodeDecodeError, MemoryError or a hang.
"""

from __future__ import annotations

import struct
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smbsessions import ndr
from smbsessions.levels import LEVELS, SessionInfo
from smbsessions.messages import DelRequest, EnumRequest, EnumResponse
from smbsessions.status import DecodeError

pytestmark = pytest.mark.timeout(120)


def u32(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}I", *values)


ROWS = [
    SessionInfo("\\\\10.0.0.1", "alice", 1, 2, 3, 0, "Windows", "\\Device\\Tcp"),
    SessionInfo(None, "\U0001F600b", 4, 5, 6, 1, None, "x"),
    SessionInfo("ccc", None, 7, 8, 9, 2, "", None),
]

VALID_RESPONSES = {level: ndr.encode_enum_response(EnumResponse(level, ROWS, 3, 1, 234)) for level in LEVELS}
VALID_REQUESTS = [
    ndr.encode_enum_request(EnumRequest(10, "srv", "\\\\c", "u\U0001F600", 100, 5)),
    ndr.encode_enum_request(EnumRequest(502, None, None, None, resume_handle=None, container=False)),
]
VALID_DEL = ndr.encode_del_request(DelRequest("s", "\\\\client", "bob"))

DECODERS: dict[str, Callable[[bytes], Any]] = {
    "enum_response": ndr.decode_enum_response,
    "enum_request": ndr.decode_enum_request,
    "del_request": ndr.decode_del_request,
    "del_response": ndr.decode_del_response,
}

ALL_VALID: list[tuple[str, bytes]] = (
    [("enum_response", stub) for stub in VALID_RESPONSES.values()]
    + [("enum_request", stub) for stub in VALID_REQUESTS]
    + [("del_request", VALID_DEL), ("del_response", ndr.encode_del_response(5))]
)


def reencode(kind: str, value: Any) -> bytes:
    if kind == "enum_response":
        return ndr.encode_enum_response(value)
    if kind == "enum_request":
        return ndr.encode_enum_request(value)
    if kind == "del_request":
        return ndr.encode_del_request(value)
    return ndr.encode_del_response(value)


def decode_or_reject(kind: str, stub: bytes) -> None:
    """The fuzz property: DecodeError, or a value that survives a round trip."""
    try:
        value = DECODERS[kind](stub)
    except DecodeError:
        return
    assert DECODERS[kind](reencode(kind, value)) == value


# --------------------------------------------------------------------------- truncation


@pytest.mark.parametrize(("kind", "stub"), ALL_VALID)
def test_every_truncation_is_rejected(kind: str, stub: bytes) -> None:
    assert DECODERS[kind](stub) is not None
    for cut in range(len(stub)):
        with pytest.raises(DecodeError):
            DECODERS[kind](stub[:cut])


@pytest.mark.parametrize(("kind", "stub"), ALL_VALID)
def test_trailing_garbage_is_rejected(kind: str, stub: bytes) -> None:
    for tail in (b"\x01", b"\0\0\0\x01", b"\0" * 8, b"junkjunk", b"\0" * 7 + b"\x01"):
        with pytest.raises(DecodeError, match="unexpected bytes"):
            DECODERS[kind](stub + tail)


def test_odd_length_stubs_are_rejected() -> None:
    for stub in VALID_RESPONSES.values():
        with pytest.raises(DecodeError):
            ndr.decode_enum_response(stub[:-1])
        with pytest.raises(DecodeError):
            ndr.decode_enum_response(stub + b"\x07")


# --------------------------------------------------------------------------- counts and pointers


def test_four_billion_entries_in_24_bytes_allocates_nothing() -> None:
    stub = u32(502, 502, 0x20000, 0xFFFFFFFF, 0x20004, 0xFFFFFFFF)
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match="truncated"):
            ndr.decode_enum_response(stub)
        with pytest.raises(DecodeError, match="truncated"):
            ndr.decode_session_array(502, u32(0xFFFFFFFF), 0, 0xFFFFFFFF)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


def test_string_claiming_four_billion_characters_allocates_nothing() -> None:
    stub = u32(0xFFFFFFFF, 0, 0xFFFFFFFF) + b"a\0"
    request = u32(0x20000) + stub
    response = u32(0, 0, 0x20000, 1, 0x20004, 1, 0x20008) + stub
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match="truncated"):
            ndr.decode_enum_request(request)
        with pytest.raises(DecodeError, match="truncated"):
            ndr.decode_enum_response(response)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


def test_many_pointers_without_strings_fail_fast() -> None:
    # 100k entries whose pointers promise strings that never come.
    count = 100_000
    stub = u32(10, 10, 0x20000, count, 0x20004, count) + u32(1, 1, 0, 0) * count + u32(0, 0, 0)
    with pytest.raises(DecodeError):
        ndr.decode_enum_response(stub)


def test_entries_read_larger_than_the_data() -> None:
    good = VALID_RESPONSES[1]
    # EntriesRead and max_count both say 1000, only 3 entries follow.
    stub = good[:12] + u32(1000) + good[16:20] + u32(1000) + good[24:]
    with pytest.raises(DecodeError):
        ndr.decode_enum_response(stub)


@pytest.mark.parametrize("count", [1, 7, 0xFFFFFFFF])
def test_entries_read_with_null_buffer(count: int) -> None:
    stub = u32(1, 1, 0x20000, count, 0) + u32(0, 0, 0)
    with pytest.raises(DecodeError, match="NULL Buffer"):
        ndr.decode_enum_response(stub)
    request = u32(0, 0, 0, 1, 1, 0x20000, count, 0, 0xFFFFFFFF, 0)
    with pytest.raises(DecodeError, match="NULL Buffer"):
        ndr.decode_enum_request(request)


@pytest.mark.parametrize("max_count", [0, 2, 4, 0xFFFFFFFF])
def test_array_max_count_differs_from_entries_read(max_count: int) -> None:
    good = VALID_RESPONSES[0]
    assert good[12:16] == u32(3) and good[20:24] == u32(3)
    with pytest.raises(DecodeError, match="max_count"):
        ndr.decode_enum_response(good[:20] + u32(max_count) + good[24:])


def _one_string_response(header: bytes, body: bytes) -> bytes:
    return u32(0, 0, 0x20000, 1, 0x20004, 1, 0x20008) + header + body + u32(1, 0, 0)


def test_string_actual_count_above_max_count() -> None:
    with pytest.raises(DecodeError, match="exceeds max_count"):
        ndr.decode_enum_response(_one_string_response(u32(1, 0, 2), b"a\0\0\0"))


def test_string_offset_not_zero() -> None:
    with pytest.raises(DecodeError, match="offset"):
        ndr.decode_enum_response(_one_string_response(u32(3, 1, 2), b"a\0\0\0"))
    with pytest.raises(DecodeError, match="offset"):
        ndr.decode_enum_request(u32(0x20000, 2, 1, 1) + b"a\0\0\0")


def test_string_without_terminator() -> None:
    with pytest.raises(DecodeError, match="NUL"):
        ndr.decode_enum_response(_one_string_response(u32(2, 0, 2), b"a\0b\0"))
    with pytest.raises(DecodeError, match="NUL"):
        ndr.decode_del_request(u32(0x20000, 1, 0, 1) + b"a\0\0\0" + u32(0, 0))


def test_string_with_zero_actual_count() -> None:
    with pytest.raises(DecodeError):
        ndr.decode_enum_response(_one_string_response(u32(0, 0, 0), b""))
    with pytest.raises(DecodeError):
        ndr.decode_del_request(u32(0x20000, 0, 0, 0) + u32(0, 0))


def test_string_header_past_the_end() -> None:
    with pytest.raises(DecodeError, match="truncated"):
        ndr.decode_enum_response(u32(0, 0, 0x20000, 1, 0x20004, 1, 0x20008, 2, 0))


def test_level_and_discriminant_must_agree() -> None:
    good = VALID_RESPONSES[10]
    with pytest.raises(DecodeError, match="discriminant"):
        ndr.decode_enum_response(u32(10, 502) + good[8:])
    with pytest.raises(DecodeError, match="discriminant"):
        ndr.decode_enum_request(u32(0, 0, 0, 1, 2, 0, 0xFFFFFFFF, 0))


def test_unknown_level_followed_by_a_union_arm() -> None:
    # Level 3 has no arm: the container bytes that follow cannot be parsed as the tail.
    good = VALID_RESPONSES[0]
    with pytest.raises(DecodeError):
        ndr.decode_enum_response(u32(3, 3) + good[8:])
    with pytest.raises(DecodeError):
        ndr.decode_enum_request(u32(0, 0, 0, 3, 3, 0x20000, 0, 0, 0xFFFFFFFF, 0))


# --------------------------------------------------------------------------- fuzzing

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
kinds = st.sampled_from(sorted(DECODERS))


@FUZZ
@given(kind=kinds, stub=st.binary(max_size=200))
def test_random_bytes(kind: str, stub: bytes) -> None:
    decode_or_reject(kind, stub)


@st.composite
def words_stub(draw: st.DrawFn) -> bytes:
    """Random little-endian words biased to the values that steer an NDR decoder."""
    interesting = st.sampled_from([0, 1, 2, 3, 10, 502, 0x20000, 0x7FFFFFFF, 0xFFFFFFFF])
    words = draw(st.lists(interesting | st.integers(0, 0xFFFFFFFF), max_size=40))
    return u32(*words) + draw(st.binary(max_size=3))


@FUZZ
@given(kind=kinds, stub=words_stub())
def test_random_words(kind: str, stub: bytes) -> None:
    decode_or_reject(kind, stub)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    kind, stub = draw(st.sampled_from(ALL_VALID))
    data = bytearray(stub)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "word", "insert", "delete"]))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "word" and at + 4 <= len(data):
            value = draw(st.sampled_from([0, 1, 2, 0x20000, 0x7FFFFFFF, 0xFFFFFFFF]))
            data[at - at % 4 : at - at % 4 + 4] = u32(value)
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 8))]
    return kind, bytes(data)


@FUZZ
@given(case=mutated())
def test_mutated_valid_stubs(case: tuple[str, bytes]) -> None:
    decode_or_reject(*case)
