"""Sans-I/O NDR20 codec for NetrSessionEnum (opnum 12) and NetrSessionDel (opnum 13).

Bytes in, values out; values in, bytes out. The same functions serve the
client (encode request, decode response) and the server (decode request,
encode response). Field order and kinds come from ``levels.LEVELS``.

Wire shapes (MS-SRVS IDL, pointer_default(unique), little-endian NDR20):

* ``[string] wchar_t*``: a referent id (0 = NULL), and for a non-NULL pointer a
  conformant-varying string: max_count, offset (0), actual_count (incl. NUL),
  then 2*actual_count bytes, padded to 4. In a structure the string is deferred
  until after the structure (or array of structures) that holds the pointer.
* SESSION_ENUM_STRUCT: Level, then the union discriminant (== Level), then the
  arm: a unique pointer to SESSION_INFO_n_CONTAINER {EntriesRead, Buffer ptr},
  then Buffer's conformant array (max_count, fixed parts), then every entry's
  strings in order.

Decoding is defensive: every length is checked against the bytes actually
present before anything is allocated, so a hostile count costs nothing; any
inconsistency raises ``DecodeError`` (never another exception type).

The message values themselves (``EnumRequest``, ``EnumResponse``, ``DelRequest``)
live in ``messages``; the NDR primitives shared with ``srvsvc_ndr`` (strings,
unique pointers, the resume handle, the bounds-checked reader) in
``ndr_primitives``. The measured fast paths (batched rows, cached string heads
and layouts, the collector paused for big answers) stay here, beside the checked
paths they must agree with (``tests/unit/test_fast_paths.py`` holds them to it).
"""

from __future__ import annotations

import codecs
import gc
import operator
import struct
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import chain, repeat
from typing import Any

from .levels import FIELDS, LEVELS, SessionInfo
from .messages import DelRequest, EnumRequest, EnumResponse
from .ndr_primitives import (
    FIRST_REFERENT,
    U32,
    StubReader,
    U32x2,
    U32x3,
    U32x4,
    check_u32,
    encode_resume_handle,
    encode_string,
    encode_unique_string,
    read_string,
)
from .status import DecodeError

OPNUM_NETR_SESSION_ENUM = 12
OPNUM_NETR_SESSION_DEL = 13

# The codec functions themselves (see ndr_primitives: ~5x faster than by name).
_utf16_encode = codecs.utf_16_le_encode
_utf16_decode = codecs.utf_16_le_decode



# --------------------------------------------------------------------------- encoding


def encode_enum_request(request: EnumRequest) -> bytes:
    """NDR stub of a NetrSessionEnum request."""
    check_u32("level", request.level)
    check_u32("prefmaxlen", request.prefmaxlen)
    parts = [
        encode_unique_string(request.server_name, FIRST_REFERENT),
        encode_unique_string(request.client_name, FIRST_REFERENT + 4),
        encode_unique_string(request.user_name, FIRST_REFERENT + 8),
    ]
    if request.level not in LEVELS:
        # No union arm exists for an unknown level (Samba answers the same way);
        # writing a container here would desynchronise every decoder, ours included.
        parts.append(U32x2.pack(request.level, request.level))
    elif request.container:
        # The client sends an empty container: EntriesRead 0, Buffer NULL.
        parts.append(U32x4.pack(request.level, request.level, FIRST_REFERENT + 12, 0) + b"\0\0\0\0")
    else:
        parts.append(U32x3.pack(request.level, request.level, 0))
    parts.append(U32.pack(request.prefmaxlen))
    parts.append(encode_resume_handle(request.resume_handle, FIRST_REFERENT + 16))
    return b"".join(parts)


def encode_session_array(level: int, entries: Sequence[SessionInfo]) -> bytes:
    """The conformant array of SESSION_INFO_<level> and its deferred strings.

    ``entries`` are 502 records; only the fields of ``level`` are written.
    Built column by column, like the decoder, to keep per-entry work in C, and
    in batches of rows so the intermediate lists stay cache-sized.
    """
    count = len(entries)
    heads = [U32.pack(count)]
    strings = []
    for first in range(0, count, _BATCH_ROWS):
        head, tail = _encode_batch(level, entries[first : first + _BATCH_ROWS], first)
        heads.append(head)
        strings.append(tail)
    return b"".join(heads) + b"".join(strings)


def _encode_batch(level: int, entries: Sequence[SessionInfo], first_row: int) -> tuple[bytes, bytes]:
    """Fixed parts and deferred strings of ``entries``, rows ``first_row`` onwards of the array."""
    fields = LEVELS[level]
    width = len(fields)
    count = len(entries)
    stride = len(FIELDS)
    # Every field of every record, row-major: a column is one slice of it.
    flat = list(chain.from_iterable(entries))
    if len(flat) != stride * count:
        raise ValueError("entries must be SessionInfo records")
    string_slots = _STRING_SLOTS[level]
    words: list[Any] = [0] * (width * count)  # the fixed parts, row-major
    strings: list[Any] = [None] * (len(string_slots) * count)  # deferred strings, row-major
    for slot, field in enumerate(fields):
        column: Sequence[Any] = flat[_FIELD_INDEX[field.name] :: stride]
        if field.kind == "str":
            strings[string_slots.index(slot) :: len(string_slots)] = column
            # Unique pointers only need a non-zero referent; number them as Windows does.
            first = FIRST_REFERENT + 0x100 + 4 * (slot + width * first_row)
            referents = range(first, first + 4 * width * count, 4 * width)
            if None in column:
                column = [0 if value is None else ref for ref, value in zip(referents, column, strict=True)]
            else:
                column = referents
        elif None in column:
            column = [value or 0 for value in column]
        words[slot::width] = column
    try:
        head = struct.pack(f"<{width * count}I", *words)
    except struct.error as exc:
        raise ValueError(f"a numeric session field does not fit in 32 bits: {exc}") from None
    if None in strings:
        strings = [value for value in strings if value is not None]
    return head, _encode_strings(strings)


def _encode_strings(values: list[str]) -> bytes:
    """Conformant-varying strings back to back, as deferred after an array.

    The headers and padding are written as UTF-16 code units around each
    value, so the whole run is one str.join and one encode. A header's count
    is ``len(value) + 1``, right unless a value holds characters outside the
    BMP (two units each): the encoded length gives that away, and those runs
    are redone string by string.
    """
    lengths = list(map(len, values))
    text = "".join(
        chain.from_iterable(
            zip(map(_STRING_HEADS.__getitem__, lengths), values, map(_STRING_TAILS.__getitem__, lengths),
                strict=True)
        )
    )
    data: bytes = _utf16_encode(text, "surrogatepass")[0]
    if len(data) == 2 * len(text):
        return data
    return b"".join(map(encode_string, values))


class _StringHeads(dict[int, str]):
    """len(value) -> max_count, offset 0, actual_count (NUL included) as six UTF-16 units."""

    def __missing__(self, length: int) -> str:
        count = length + 1
        units = chr(count & 0xFFFF) + chr(count >> 16)
        head = units + "\0\0" + units
        if length < _CACHED_LENGTHS:
            self[length] = head
        return head


class _StringTails(dict[int, str]):
    """len(value) -> the NUL terminator, plus one unit of padding when the count is odd."""

    def __missing__(self, length: int) -> str:
        tail = "\0\0" if length % 2 == 0 else "\0"
        if length < _CACHED_LENGTHS:
            self[length] = tail
        return tail


# Memoised per length; lengths past this are rare and computed each time, so
# a peer sending strings of every size cannot grow the caches without bound.
_CACHED_LENGTHS = 4096
_STRING_HEADS = _StringHeads()
_STRING_TAILS = _StringTails()


_FIELD_INDEX: dict[str, int] = {f.name: i for i, f in enumerate(FIELDS)}


def encode_enum_response(response: EnumResponse) -> bytes:
    """NDR stub of a NetrSessionEnum response (the server side)."""
    level = response.level
    check_u32("level", level)
    entries = response.entries
    parts = [U32x2.pack(level, level)]
    if level in LEVELS:
        if entries is None:
            parts.append(b"\0\0\0\0")
        elif not entries:
            parts.append(U32x3.pack(FIRST_REFERENT, 0, 0))
        else:
            parts.append(U32x3.pack(FIRST_REFERENT, len(entries), FIRST_REFERENT + 4))
            parts.append(encode_session_array(level, entries))
    elif entries:
        raise ValueError(f"level {level} has no union arm to carry entries")
    check_u32("total_entries", response.total_entries)
    check_u32("status", response.status)
    parts.append(U32.pack(response.total_entries))
    parts.append(encode_resume_handle(response.resume_handle, FIRST_REFERENT + 8))
    parts.append(U32.pack(response.status))
    return b"".join(parts)


def encode_del_request(request: DelRequest) -> bytes:
    """NDR stub of a NetrSessionDel request."""
    return b"".join(
        (
            encode_unique_string(request.server_name, FIRST_REFERENT),
            encode_unique_string(request.client_name, FIRST_REFERENT + 4),
            encode_unique_string(request.user_name, FIRST_REFERENT + 8),
        )
    )


def encode_del_response(status: int) -> bytes:
    """NDR stub of a NetrSessionDel response: the NET_API_STATUS alone."""
    check_u32("status", status)
    return U32.pack(status)


# --------------------------------------------------------------------------- decoding


def decode_session_array(level: int, buf: bytes, pos: int, count: int) -> tuple[list[SessionInfo], int]:
    """Decode ``count`` SESSION_INFO_<level> entries (array max_count included) at ``pos``.

    Works column by column so that the per-entry work stays in C: one unpack
    of every fixed part, one pass over the deferred strings, one bulk UTF-16
    decode, then a zip of the columns into SessionInfo tuples.
    """
    fields = LEVELS[level]
    width = len(fields)
    if pos + 4 > len(buf):
        raise DecodeError(f"truncated stub: array max_count at offset {pos}")
    (max_count,) = U32.unpack_from(buf, pos)
    if max_count != count:
        raise DecodeError(f"array max_count {max_count} does not match EntriesRead {count}")
    pos += 4
    fixed_size = 4 * width * count
    if pos + fixed_size > len(buf):
        raise DecodeError(
            f"truncated stub: {count} level-{level} entries need {fixed_size} bytes at offset {pos},"
            f" {len(buf) - pos} left"
        )
    with _collector_paused(count):
        return _decode_entries(level, buf, pos, count)


def _decode_entries(level: int, buf: bytes, pos: int, count: int) -> tuple[list[SessionInfo], int]:
    # Rows go in batches, each batch's fixed parts and then its strings (the
    # strings of consecutive rows are consecutive): the intermediate tuples
    # stay cache-sized, so 100k entries cost per entry about what 1k do.
    width = len(LEVELS[level])
    string_pos = pos + 4 * width * count
    rows: list[SessionInfo] = []
    for first in range(0, count, _BATCH_ROWS):
        batch = min(_BATCH_ROWS, count - first)
        decoded, string_pos = _decode_batch(level, buf, pos + 4 * width * first, batch, string_pos)
        rows += decoded
    return rows, string_pos


_BATCH_ROWS = 1024


def _decode_batch(
    level: int, buf: bytes, fixed_pos: int, count: int, pos: int
) -> tuple[list[SessionInfo], int]:
    """``count`` rows whose fixed parts start at ``fixed_pos`` and strings at ``pos``."""
    fields = LEVELS[level]
    width = len(fields)
    fixed = struct.unpack_from(f"<{width * count}I", buf, fixed_pos)
    slots = _STRING_SLOTS[level]
    present = sum(count - fixed[slot::width].count(0) for slot in slots)
    texts, pos = _read_strings(buf, pos, present)

    columns: list[Any] = []
    by_slot: dict[int, list[Any]]
    if present == count * len(slots):
        # Every string pointer is non-NULL (the usual case): strings are row-major.
        by_slot = {slot: texts[i :: len(slots)] for i, slot in enumerate(slots)}
    else:
        text_iter = iter(texts)
        by_slot = {slot: [None] * count for slot in slots}
        for row in range(count):
            for slot in slots:
                if fixed[row * width + slot]:
                    by_slot[slot][row] = next(text_iter)
    for field in FIELDS:
        if field not in fields:
            columns.append(repeat(None, count))
        else:
            slot = fields.index(field)
            columns.append(by_slot[slot] if slot in by_slot else fixed[slot::width])
    return list(map(tuple.__new__, repeat(SessionInfo, count), zip(*columns, strict=True))), pos


@contextmanager
def _collector_paused(count: int) -> Iterator[None]:
    """Hold off the cyclic garbage collector while a large result is built.

    Every SessionInfo is a new tracked tuple; with the collector on, a big
    decode triggers collections that walk the whole young (and eventually the
    whole) heap again and again, which made the per-entry cost grow with the
    entry count (measured: 100k entries cost ~2-3x per entry what 1k do).
    Nothing built here can form a cycle. The previous state is restored; the
    switch is process-wide, so a concurrent caller can at worst see a
    collection run a little later.
    """
    if count < _GC_PAUSE_MIN_ENTRIES or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


_GC_PAUSE_MIN_ENTRIES = 1000


def _read_strings(buf: bytes, pos: int, count: int) -> tuple[list[str], int]:
    """Decode ``count`` consecutive deferred strings starting at ``pos``."""
    scanned = _scan_strings(buf, pos, count)
    if scanned is None:
        # Something is wrong (or merely unusual): walk again string by string,
        # which names the offending string in its DecodeError.
        return _read_strings_checked(buf, pos, count)
    raws, pos = scanned
    # One decode and one split give every string, unless one carries an
    # embedded NUL: then decode them one by one.
    texts = _utf16_decode(b"\0\0".join(raws), "surrogatepass", True)[0].split("\0")
    if len(texts) == count:
        return texts, pos
    return [_utf16_decode(raw, "surrogatepass", True)[0] for raw in raws], pos


def _scan_strings(buf: bytes, pos: int, count: int) -> tuple[Sequence[bytes], int] | None:
    """The strings' UTF-16 bytes (NUL excluded) and the offset after them; None if any is malformed.

    Each string's position depends on the previous one's length, so one Python
    loop has to walk them; it only reads actual_count through a memoryview and
    collects a struct format for the string (header, units, terminator,
    padding). A single unpack of that format then does the slicing, and the
    checks run over whole columns of its result. Any doubt returns None and the
    careful path takes over.
    """
    if not count:
        return (), pos
    if sys.byteorder != "little":  # the memoryview below reads counts in native order
        return None
    actuals = memoryview(buf)[pos + 8 : pos + 8 + max(0, (len(buf) - pos - 8) & ~3)].cast("I")
    formats: list[str] = []
    add = formats.append
    layout = _STRING_LAYOUTS.__getitem__
    i = 0
    try:
        for _ in range(count):
            actual = actuals[i]
            add(layout(actual))
            i += (actual + 7) >> 1  # 3 header words, then the units rounded up to whole words
        # A Struct of its own: struct.unpack_from would keep this one-off, possibly
        # megabytes-long format in the module's cache.
        values = struct.Struct("<" + "".join(formats)).unpack_from(buf, pos)
    except (IndexError, struct.error, ValueError):
        return None
    max_counts, offsets, actual_counts = values[0::5], values[1::5], values[2::5]
    if (
        any(offsets)
        or any(values[4::5])  # terminators
        or 0 in actual_counts
        or (max_counts != actual_counts and any(map(operator.gt, actual_counts, max_counts)))
    ):
        return None
    return values[3::5], pos + 4 * i


class _StringLayouts(dict[int, str]):
    """actual_count -> struct format of that string: max, offset, actual, units, NUL, padding."""

    def __missing__(self, actual: int) -> str:
        if actual == 0:
            raise ValueError("a string without its terminator")
        layout = f"3I{2 * actual - 2}sH" + ("2x" if actual & 1 else "")
        if actual < _CACHED_LENGTHS:
            self[actual] = layout
        return layout


_STRING_LAYOUTS = _StringLayouts()


def _read_strings_checked(buf: bytes, pos: int, count: int) -> tuple[list[str], int]:
    texts = []
    for index in range(count):
        text, pos = read_string(buf, pos, f"session array string {index} of this batch")
        texts.append(text)
    return texts, pos


_STRING_SLOTS: dict[int, tuple[int, ...]] = {
    level: tuple(i for i, f in enumerate(fields) if f.kind == "str") for level, fields in LEVELS.items()
}


def decode_enum_response(stub: bytes) -> EnumResponse:
    """Decode a NetrSessionEnum response stub; raises ``DecodeError`` on any inconsistency."""
    reader = StubReader(bytes(stub))
    level = reader.u32("Level")
    switch = reader.u32("union discriminant")
    if switch != level:
        raise DecodeError(f"union discriminant {switch} does not match Level {level}")
    entries: list[SessionInfo] | None = None
    if level in LEVELS and reader.u32("container pointer"):
        count = reader.u32("EntriesRead")
        if reader.u32("Buffer pointer"):
            entries, reader.pos = decode_session_array(level, reader.buf, reader.pos, count)
        elif count:
            raise DecodeError(f"EntriesRead {count} with a NULL Buffer pointer")
        else:
            entries = []
    total = reader.u32("TotalEntries")
    resume = reader.unique_u32("ResumeHandle")
    status = reader.u32("return value")
    reader.finish("NetrSessionEnum response")
    return EnumResponse(level, entries, total, resume, status)


def decode_enum_request(stub: bytes) -> EnumRequest:
    """Decode a NetrSessionEnum request stub (the server side)."""
    reader = StubReader(bytes(stub))
    server = reader.unique_string("ServerName")
    client = reader.unique_string("ClientName")
    user = reader.unique_string("UserName")
    level = reader.u32("Level")
    switch = reader.u32("union discriminant")
    if switch != level:
        raise DecodeError(f"union discriminant {switch} does not match Level {level}")
    container = False
    if level in LEVELS:
        container = bool(reader.u32("container pointer"))
        if container:
            count = reader.u32("EntriesRead")
            if reader.u32("Buffer pointer"):
                # A client has nothing to send here; accept it but never trust its size.
                _, reader.pos = decode_session_array(level, reader.buf, reader.pos, count)
            elif count:
                raise DecodeError(f"EntriesRead {count} with a NULL Buffer pointer")
    prefmaxlen = reader.u32("PreferedMaximumLength")
    resume = reader.unique_u32("ResumeHandle")
    reader.finish("NetrSessionEnum request")
    return EnumRequest(level, server, client, user, prefmaxlen, resume, container)


def decode_del_request(stub: bytes) -> DelRequest:
    """Decode a NetrSessionDel request stub (the server side)."""
    reader = StubReader(bytes(stub))
    server = reader.unique_string("ServerName")
    client = reader.unique_string("ClientName")
    user = reader.unique_string("UserName")
    reader.finish("NetrSessionDel request")
    return DelRequest(server, client, user)


def decode_del_response(stub: bytes) -> int:
    """Decode a NetrSessionDel response stub: its NET_API_STATUS."""
    reader = StubReader(bytes(stub))
    status = reader.u32("return value")
    reader.finish("NetrSessionDel response")
    return status


# Shared with ``srvsvc_ndr`` (share and server info levels): one string codec, one reader.
