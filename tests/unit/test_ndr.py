"""NDR codec for NetrSessionEnum / NetrSessionDel: exact bytes, computed by hand.

Every expected stub below is written out from the IDL and NDR20 rules (C706
chapter 14): a ``[string] wchar_t*`` is a referent id then, deferred, max_count,
offset 0, actual_count (NUL included), the UTF-16LE units and padding to 4.
Referent ids only have to be non-zero; the values asserted are the ones our
encoder chooses (Windows' numbering), decoders must accept any.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smbsessions import ndr
from smbsessions.levels import LEVELS, SessionInfo
from smbsessions.messages import DelRequest, EnumRequest, EnumResponse
from smbsessions.status import DecodeError


def h(text: str) -> bytes:
    """Hex with spaces and line breaks for readability."""
    return bytes.fromhex("".join(text.split()))


def u32(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}I", *values)


def wstr(text: str) -> bytes:
    """Conformant-varying string body, written independently of the codec under test."""
    units = text.encode("utf-16-le", "surrogatepass") + b"\0\0"
    count = len(units) // 2
    body = u32(count, 0, count) + units
    return body + b"\0" * (-len(body) % 4)


# --------------------------------------------------------------------------- requests


def test_enum_request_all_null_names() -> None:
    stub = ndr.encode_enum_request(EnumRequest(10))
    assert stub == h(
        "00000000 00000000 00000000"    # ServerName, ClientName, UserName: NULL
        "0a000000 0a000000"             # Level 10, union discriminant 10
        "0c000200 00000000 00000000"    # container pointer, EntriesRead 0, Buffer NULL
        "ffffffff"                      # PreferedMaximumLength
        "10000200 00000000"             # ResumeHandle pointer, value 0
    )
    assert ndr.decode_enum_request(stub) == EnumRequest(10)


def test_enum_request_string_padding_odd_and_even() -> None:
    # "ab" + NUL = 3 units = 6 bytes: 2 bytes of padding. "\\x" + NUL = 4 units: none.
    request = EnumRequest(502, server_name="ab", client_name="\\\\x", user_name=None,
                          prefmaxlen=0x1000, resume_handle=None)
    stub = ndr.encode_enum_request(request)
    assert stub == h(
        "00000200 03000000 00000000 03000000 6100 6200 0000 0000"
        "04000200 04000000 00000000 04000000 5c00 5c00 7800 0000"
        "00000000"
        "f6010000 f6010000 0c000200 00000000 00000000"
        "00100000"
        "00000000"
    )
    assert ndr.decode_enum_request(stub) == request


def test_enum_request_empty_string_is_not_null() -> None:
    stub = ndr.encode_enum_request(EnumRequest(0, user_name=""))
    assert stub[:8] == h("00000000 00000000")
    assert stub[8:28] == h("08000200 01000000 00000000 01000000 0000 0000")
    assert ndr.decode_enum_request(stub).user_name == ""


def test_enum_request_null_container() -> None:
    request = EnumRequest(1, container=False)
    stub = ndr.encode_enum_request(request)
    assert stub == h("00000000" * 3 + "01000000 01000000 00000000" + "ffffffff" + "10000200 00000000")
    assert ndr.decode_enum_request(stub) == request


def test_enum_request_unknown_level_has_no_union_arm() -> None:
    # SESSION_ENUM_UNION has no arm for level 3: Level and discriminant, then straight on.
    stub = ndr.encode_enum_request(EnumRequest(3))
    assert stub == h("00000000" * 3 + "03000000 03000000" + "ffffffff" + "10000200 00000000")
    assert ndr.decode_enum_request(stub) == EnumRequest(3, container=False)


def test_enum_request_decodes_client_supplied_buffer() -> None:
    # A client may (pointlessly) send entries in its [in] container; they are skipped.
    array = ndr.encode_session_array(0, [SessionInfo("x")])
    stub = (u32(0, 0, 0) + u32(0, 0, 0x20000, 1, 0x20004) + array + u32(0xFFFFFFFF, 0))
    assert ndr.decode_enum_request(stub) == EnumRequest(0, resume_handle=None)


def test_enum_request_rejects_out_of_range_numbers() -> None:
    with pytest.raises(ValueError, match="prefmaxlen"):
        ndr.encode_enum_request(EnumRequest(10, prefmaxlen=1 << 32))
    with pytest.raises(ValueError, match="resume_handle"):
        ndr.encode_enum_request(EnumRequest(10, resume_handle=-1))
    with pytest.raises(ValueError, match="level"):
        ndr.encode_enum_request(EnumRequest(1 << 32))


def test_del_request_bytes() -> None:
    request = DelRequest(None, "\\\\1.2", "é")
    stub = ndr.encode_del_request(request)
    assert stub == h(
        "00000000"
        "04000200 06000000 00000000 06000000 5c00 5c00 3100 2e00 3200 0000"
        "08000200 02000000 00000000 02000000 e900 0000"
    )
    assert ndr.decode_del_request(stub) == request
    assert ndr.decode_del_request(h("00000000" * 3)) == DelRequest()


def test_del_response_bytes() -> None:
    assert ndr.encode_del_response(2312) == h("08090000")
    assert ndr.decode_del_response(h("08090000")) == 2312
    with pytest.raises(ValueError):
        ndr.encode_del_response(-1)


# --------------------------------------------------------------------------- responses


def test_response_null_container() -> None:
    response = EnumResponse(10, None, 0, None, 5)
    stub = ndr.encode_enum_response(response)
    assert stub == h("0a000000 0a000000 00000000 00000000 00000000 05000000")
    assert ndr.decode_enum_response(stub) == response


def test_response_empty_container_null_buffer() -> None:
    response = EnumResponse(502, [], 0, 0, 0)
    stub = ndr.encode_enum_response(response)
    assert stub == h(
        "f6010000 f6010000 00000200 00000000 00000000"  # container: EntriesRead 0, Buffer NULL
        "00000000 08000200 00000000 00000000"
    )
    assert ndr.decode_enum_response(stub) == response


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_response_empty_array_behind_non_null_buffer(level: int) -> None:
    # Windows sends a non-NULL Buffer with a zero-length conformant array.
    stub = u32(level, level, 0x20000, 0, 0x20004, 0) + u32(0, 0x20008, 0, 0)
    assert ndr.decode_enum_response(stub) == EnumResponse(level, [], 0, 0, 0)


def test_response_unknown_level_as_samba_sends_it() -> None:
    stub = h("03000000 03000000 00000000 04000200 00000000 7c000000")
    assert ndr.decode_enum_response(stub) == EnumResponse(3, None, 0, 0, 124)
    assert ndr.encode_enum_response(EnumResponse(3, None, 0, 0, 124)) == h(
        "03000000 03000000 00000000 08000200 00000000 7c000000"
    )


def test_response_unknown_level_cannot_carry_entries() -> None:
    with pytest.raises(ValueError, match="no union arm"):
        ndr.encode_enum_response(EnumResponse(3, [SessionInfo("x")], 1, None, 0))


def test_response_level0_bytes() -> None:
    response = EnumResponse(0, [SessionInfo("ab")], 1, 1, 0)
    stub = ndr.encode_enum_response(response)
    assert stub == h(
        "00000000 00000000"                      # Level 0, discriminant 0
        "00000200 01000000 04000200"             # container ptr, EntriesRead 1, Buffer ptr
        "01000000"                               # array max_count
        "00010200"                               # sesi0_cname pointer
        "03000000 00000000 03000000 6100 6200 0000 0000"  # "ab", 2 bytes padding
        "01000000 08000200 01000000 00000000"    # TotalEntries, ResumeHandle, status
    )
    assert ndr.decode_enum_response(stub) == response


def test_response_level10_bytes_with_null_and_astral_strings() -> None:
    # U+1F600 is the surrogate pair D83D DE00: 2 units + NUL = 3 units (odd: padded).
    rows = [SessionInfo("\U0001F600", None, time=7, idle_time=0xFFFFFFFF),
            SessionInfo("xy", "é", time=0, idle_time=1)]
    response = EnumResponse(10, rows, 2, None, 234)
    stub = ndr.encode_enum_response(response)
    assert stub == h(
        "0a000000 0a000000 00000200 02000000 04000200"
        "02000000"
        "00010200 00000000 07000000 ffffffff"    # row 0: cname ptr, username NULL, time, idle
        "10010200 14010200 00000000 01000000"    # row 1
        "03000000 00000000 03000000 3dd8 00de 0000 0000"
        "03000000 00000000 03000000 7800 7900 0000 0000"
        "02000000 00000000 02000000 e900 0000"
        "02000000 00000000 ea000000"
    )
    decoded = ndr.decode_enum_response(stub)
    assert decoded.entries == [r.project(10) for r in rows]
    assert decoded == EnumResponse(10, [r.project(10) for r in rows], 2, None, 234)


SAMPLE = SessionInfo("\\\\10.0.0.1", "alice", 3, 60, 5, 1, "Windows 10", "\\Device\\NetbiosSmb")


def _fixed(level: int, info: SessionInfo, row: int, width: int) -> bytes:
    words = []
    for slot, field in enumerate(LEVELS[level]):
        value = getattr(info, field.name)
        if field.kind == "str":
            words.append(0 if value is None else 0x20100 + 4 * slot + 4 * width * row)
        else:
            words.append(value)
    return u32(*words)


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_response_every_level_matches_hand_layout(level: int) -> None:
    rows = [SAMPLE, SAMPLE._replace(cname="\\\\10.0.0.22", username=None, transport="ñ")]
    width = len(LEVELS[level])
    expected = u32(level, level, 0x20000, 2, 0x20004, 2)
    expected += b"".join(_fixed(level, r, i, width) for i, r in enumerate(rows))
    for r in rows:
        for field in LEVELS[level]:
            value = getattr(r, field.name)
            if field.kind == "str" and value is not None:
                expected += wstr(value)
    expected += u32(2, 0x20008, 0, 0)
    response = EnumResponse(level, rows, 2, 0, 0)
    stub = ndr.encode_enum_response(response)
    assert stub == expected
    decoded = ndr.decode_enum_response(stub)
    assert decoded.entries == [r.project(level) for r in rows]
    assert (decoded.total_entries, decoded.resume_handle, decoded.status) == (2, 0, 0)


def test_encoder_projects_502_records() -> None:
    # Fields the level does not carry are simply not written.
    at_0 = ndr.encode_session_array(0, [SAMPLE])
    assert at_0 == u32(1, 0x20100) + wstr(SAMPLE.cname or "")


def test_encoder_rejects_numbers_over_32_bits() -> None:
    with pytest.raises(ValueError, match="32 bits"):
        ndr.encode_session_array(1, [SAMPLE._replace(num_opens=1 << 32)])
    with pytest.raises(ValueError, match="total_entries"):
        ndr.encode_enum_response(EnumResponse(1, [], -1, None, 0))


def test_missing_numbers_encode_as_zero() -> None:
    # A SessionInfo built at a lower level lacks DWORDs a richer level needs.
    stub = ndr.encode_session_array(1, [SessionInfo("a", "b")])
    assert stub[:28] == u32(1, 0x20100, 0x20104, 0, 0, 0, 0)


def test_embedded_nul_survives_round_trip() -> None:
    rows = [SessionInfo("a\0b", "c", 0, 1, 2, 0), SessionInfo("d", "\0", 0, 3, 4, 0)]
    stub = ndr.encode_enum_response(EnumResponse(10, rows, 2, None, 0))
    assert ndr.decode_enum_response(stub).entries == [r.project(10) for r in rows]


def test_lone_surrogates_round_trip() -> None:
    rows = [SessionInfo("\ud800", "\udc00x", 0, 1, 2, 0), SessionInfo("\ud83d", "\ude00", 0, 3, 4, 0)]
    stub = ndr.encode_enum_response(EnumResponse(10, rows, 2, None, 0))
    assert ndr.decode_enum_response(stub).entries == [r.project(10) for r in rows]


def test_decoder_accepts_any_referent_ids_and_padding_bytes() -> None:
    # impacket fills padding with 0xCB/0xAB and randomises referent ids.
    stub = (
        u32(0, 0, 0x12345678, 1, 0xDEADBEEF, 1, 0x0BADF00D)
        + u32(1, 0, 1) + h("0000 abab")
        + u32(1, 0x55555555, 9, 0)
    )
    assert ndr.decode_enum_response(stub) == EnumResponse(0, [SessionInfo("")], 1, 9, 0)


def test_decoder_tolerates_trailing_zero_alignment() -> None:
    stub = ndr.encode_del_response(0) + b"\0\0\0\0"
    assert ndr.decode_del_response(stub) == 0


def test_decoder_accepts_max_count_above_actual_count() -> None:
    # A conformant-varying string may reserve more than it transmits.
    stub = u32(0, 0, 0x20000, 1, 0x20004, 1, 0x20008) + u32(10, 0, 2) + h("7a00 0000") + u32(1, 0, 0)
    assert ndr.decode_enum_response(stub).entries == [SessionInfo("z")]


def test_decoder_accepts_memoryview_and_bytearray() -> None:
    stub = ndr.encode_enum_response(EnumResponse(1, [SAMPLE], 1, 0, 0))
    expected = ndr.decode_enum_response(stub)
    assert ndr.decode_enum_response(bytearray(stub)) == expected
    assert ndr.decode_enum_response(memoryview(stub)) == expected


def test_decode_session_array_reports_next_offset() -> None:
    array = ndr.encode_session_array(502, [SAMPLE, SAMPLE])
    rows, end = ndr.decode_session_array(502, b"pad!" + array + b"tail", 4, 2)
    assert rows == [SAMPLE, SAMPLE]
    assert end == 4 + len(array)
    with pytest.raises(DecodeError, match="max_count"):
        ndr.decode_session_array(502, array, 0, 3)


def test_many_rows_with_mixed_nulls_keep_their_order() -> None:
    rows = [
        SessionInfo(None if i % 3 == 0 else f"c{i}", None if i % 5 == 0 else "u" * (i % 7),
                    i, i, i, i, None if i % 2 else "t", f"x{i}")
        for i in range(200)
    ]
    for level in LEVELS:
        stub = ndr.encode_enum_response(EnumResponse(level, rows, 200, None, 0))
        assert ndr.decode_enum_response(stub).entries == [r.project(level) for r in rows]


# --------------------------------------------------------------------------- round trips

names = st.none() | st.text(max_size=20)
u32s = st.integers(0, 0xFFFFFFFF)
sessions = st.builds(SessionInfo, names, names, u32s, u32s, u32s, u32s, names, names)


@settings(max_examples=200, deadline=None)
@given(level=st.sampled_from(sorted(LEVELS)), rows=st.lists(sessions, max_size=20),
       total=u32s, resume=st.none() | u32s, status=u32s)
def test_response_round_trip(
    level: int, rows: list[SessionInfo], total: int, resume: int | None, status: int
) -> None:
    stub = ndr.encode_enum_response(EnumResponse(level, rows, total, resume, status))
    assert len(stub) % 4 == 0
    decoded = ndr.decode_enum_response(stub)
    assert decoded == EnumResponse(level, [r.project(level) for r in rows], total, resume, status)


@settings(max_examples=200, deadline=None)
@given(level=st.sampled_from(sorted(LEVELS)), server=names, client=names, user=names,
       prefmaxlen=u32s, resume=st.none() | u32s, container=st.booleans())
def test_request_round_trip(
    level: int, server: str | None, client: str | None, user: str | None,
    prefmaxlen: int, resume: int | None, container: bool,
) -> None:
    request = EnumRequest(level, server, client, user, prefmaxlen, resume, container)
    assert ndr.decode_enum_request(ndr.encode_enum_request(request)) == request
    deletion = DelRequest(server, client, user)
    assert ndr.decode_del_request(ndr.encode_del_request(deletion)) == deletion
