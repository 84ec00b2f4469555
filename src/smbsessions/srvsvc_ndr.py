"""Sans-I/O NDR20 codec for the share, server-info and time-of-day srvsvc calls.

Opnums (MS-SRVS 3.1.4): 15 NetrShareEnum, 16 NetrShareGetInfo, 20 NetrShareCheck,
21 NetrServerGetInfo, 28 NetrRemoteTOD, 36 NetrShareEnumSticky (same stubs as 15).
Both directions, like ``ndr``: the client encodes requests and decodes
responses, the server the other way round. Structures come from
``srvsvc_levels`` (fields in wire order per level), strings and the bounds-checked
reader from ``ndr``.

Wire shapes (little-endian NDR20, pointer_default(unique)):

* A structure's fixed part holds a DWORD per ``u32`` field, a referent per
  ``str`` field and, for a security descriptor, its length (``shiX_reserved``)
  then a referent. Pointees (strings; the descriptor as a conformant byte
  array) follow the structure, or the whole array of structures, in field order.
* SHARE_ENUM_STRUCT: Level, union discriminant, then a unique pointer to
  {EntriesRead, Buffer pointer}, then the conformant array. A level without a
  union arm carries the discriminant alone.
* SHARE_INFO / SERVER_INFO ([out] of GetInfo): discriminant, then a unique
  pointer to one structure (NULL on failure), the structure and its pointees.

Decoding raises ``DecodeError`` on any inconsistency and allocates nothing a
claimed length alone asks for.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from .messages import (
    RemoteTodResponse,
    ServerGetInfoRequest,
    ServerGetInfoResponse,
    ShareCheckRequest,
    ShareCheckResponse,
    ShareEnumRequest,
    ShareEnumResponse,
    ShareGetInfoRequest,
    ShareGetInfoResponse,
    TimeOfDay,
)
from .ndr_primitives import (
    FIRST_REFERENT,
    StubReader,
    check_u32,
    encode_resume_handle,
    encode_string,
    encode_unique_string,
)
from .srvsvc_levels import (
    SERVER_INFO_ARMS,
    SERVER_LEVELS,
    SHARE_ENUM_ARMS,
    SHARE_INFO_ARMS,
    SHARE_LEVELS,
    Field,
    ServerInfo,
    ShareInfo,
)
from .status import DecodeError

OPNUM_NETR_SHARE_ENUM = 15
OPNUM_NETR_SHARE_GET_INFO = 16
OPNUM_NETR_SHARE_CHECK = 20
OPNUM_NETR_SERVER_GET_INFO = 21
OPNUM_NETR_REMOTE_TOD = 28
OPNUM_NETR_SHARE_ENUM_STICKY = 36

_U32 = struct.Struct("<I")
# Referents of deferred pointers start here (any non-zero value means "present").
_DEFERRED_REFERENT = FIRST_REFERENT + 0x100


# --------------------------------------------------------------------------- structures


def _encode_records(fields: Sequence[Field], records: Sequence[Any]) -> tuple[bytes, bytes]:
    """Fixed parts of ``records`` (at ``fields``) and their pointees, in NDR order."""
    words: list[int] = []
    deferred: list[bytes] = []
    referent = _DEFERRED_REFERENT
    for record in records:
        for field in fields:
            value = getattr(record, field.name)
            if field.kind == "u32":
                words.append(value or 0)
            elif value is None:
                words.extend((0, 0) if field.kind == "sd" else (0,))
            elif field.kind == "str":
                referent += 4
                words.append(referent)
                deferred.append(encode_string(value))
            else:  # a security descriptor: its length, a pointer, then the bytes
                referent += 4
                words.extend((len(value), referent))
                deferred.append(_U32.pack(len(value)) + bytes(value) + b"\0" * (-len(value) % 4))
    try:
        fixed = struct.pack(f"<{len(words)}I", *words)
    except struct.error as exc:
        raise ValueError(f"a numeric field does not fit in 32 bits: {exc}") from None
    return fixed, b"".join(deferred)


def _decode_records(
    reader: StubReader, fields: Sequence[Field], count: int, make: Any, what: str
) -> list[Any]:
    """``count`` structures at the reader (fixed parts, then pointees)."""
    width = sum(2 if f.kind == "sd" else 1 for f in fields)
    reader.need(4 * width * count, f"{count} {what} structures")
    fixed: list[list[int]] = []
    for _ in range(count):
        fixed.append([reader.u32(what) for _ in range(width)])
    records = []
    for row in fixed:
        values: dict[str, Any] = {}
        words = iter(row)
        for field in fields:
            word = next(words)
            if field.kind == "u32":
                values[field.name] = word
            elif field.kind == "str":
                values[field.name] = reader.string(f"{what} {field.wire}") if word else None
            else:
                pointer = next(words)
                values[field.name] = _read_bytes(reader, word, f"{what} {field.wire}") if pointer else None
        records.append(make(**values))
    return records


def _read_bytes(reader: StubReader, size: int, what: str) -> bytes:
    count = reader.u32(f"{what} max_count")
    if count != size:
        raise DecodeError(f"{what}: {count} bytes where the length member says {size}")
    reader.need(count, what)
    data = reader.buf[reader.pos : reader.pos + count]
    reader.pos += count + (-count % 4)
    return bytes(data)


def _arm_pointer(reader: StubReader, level: int, arms: frozenset[int], what: str) -> int:
    """Read the discriminant (checked against ``level``) and the arm pointer (0 if no arm)."""
    switch = reader.u32(f"{what} union discriminant")
    if switch != level:
        raise DecodeError(f"{what}: union discriminant {switch} does not match Level {level}")
    return reader.u32(f"{what} pointer") if level in arms else 0


def _fields_or_fail(table: dict[int, tuple[Field, ...]], level: int, what: str) -> tuple[Field, ...]:
    fields = table.get(level)
    if fields is None:
        raise DecodeError(f"{what} at level {level}: a non-NULL arm this codec cannot read")
    return fields


# --------------------------------------------------------------------------- NetrShareEnum


def _encode_share_enum_struct(level: int, entries: list[ShareInfo] | None, container_referent: int) -> bytes:
    check_u32("level", level)
    parts = [_U32.pack(level), _U32.pack(level)]
    if level not in SHARE_ENUM_ARMS:
        if entries:
            raise ValueError(f"level {level} has no union arm to carry entries")
        return b"".join(parts)
    if entries is None:
        parts.append(b"\0\0\0\0")
    elif not entries:
        parts.append(_U32.pack(container_referent) + b"\0" * 8)
    else:
        fields = SHARE_LEVELS.get(level)
        if fields is None:
            raise ValueError(f"no share structure for level {level}")
        fixed, deferred = _encode_records(fields, entries)
        parts.append(struct.pack("<IIII", container_referent, len(entries), container_referent + 4,
                                 len(entries)))
        parts += [fixed, deferred]
    return b"".join(parts)


def _decode_share_enum_struct(reader: StubReader) -> tuple[int, list[ShareInfo] | None]:
    level = reader.u32("Level")
    if not _arm_pointer(reader, level, SHARE_ENUM_ARMS, "SHARE_ENUM_STRUCT"):
        return level, None
    count = reader.u32("EntriesRead")
    if not reader.u32("Buffer pointer"):
        if count:
            raise DecodeError(f"EntriesRead {count} with a NULL Buffer pointer")
        return level, []
    max_count = reader.u32("array max_count")
    if max_count != count:
        raise DecodeError(f"array max_count {max_count} does not match EntriesRead {count}")
    fields = _fields_or_fail(SHARE_LEVELS, level, "share array")
    return level, _decode_records(reader, fields, count, ShareInfo, f"SHARE_INFO_{level}")


def encode_share_enum_request(request: ShareEnumRequest) -> bytes:
    """NDR stub of a NetrShareEnum (or NetrShareEnumSticky) request."""
    check_u32("prefmaxlen", request.prefmaxlen)
    parts = [
        encode_unique_string(request.server_name, FIRST_REFERENT),
        _encode_share_enum_struct(request.level, [] if request.container else None, FIRST_REFERENT + 4),
        _U32.pack(request.prefmaxlen),
    ]
    parts.append(encode_resume_handle(request.resume_handle, FIRST_REFERENT + 8))
    return b"".join(parts)


def decode_share_enum_request(stub: bytes) -> ShareEnumRequest:
    """Decode a NetrShareEnum request (the server side); a client's Buffer is read and dropped."""
    reader = StubReader(bytes(stub))
    server = reader.unique_string("ServerName")
    level, entries = _decode_share_enum_struct(reader)
    prefmaxlen = reader.u32("PreferedMaximumLength")
    resume = reader.unique_u32("ResumeHandle")
    reader.finish("NetrShareEnum request")
    return ShareEnumRequest(level, server, prefmaxlen, resume, entries is not None)


def encode_share_enum_response(response: ShareEnumResponse) -> bytes:
    """NDR stub of a NetrShareEnum response (the server side)."""
    check_u32("total_entries", response.total_entries)
    check_u32("status", response.status)
    parts = [
        _encode_share_enum_struct(response.level, response.entries, FIRST_REFERENT),
        _U32.pack(response.total_entries),
    ]
    parts.append(encode_resume_handle(response.resume_handle, FIRST_REFERENT + 8))
    parts.append(_U32.pack(response.status))
    return b"".join(parts)


def decode_share_enum_response(stub: bytes) -> ShareEnumResponse:
    """Decode a NetrShareEnum response stub."""
    reader = StubReader(bytes(stub))
    level, entries = _decode_share_enum_struct(reader)
    total = reader.u32("TotalEntries")
    resume = reader.unique_u32("ResumeHandle")
    status = reader.u32("return value")
    reader.finish("NetrShareEnum response")
    return ShareEnumResponse(level, entries, total, resume, status)


# --------------------------------------------------------------------------- GetInfo (share, server)


def _encode_info_union(
    level: int, record: Any, arms: frozenset[int], table: dict[int, tuple[Field, ...]]
) -> bytes:
    check_u32("level", level)
    head = _U32.pack(level)
    if level not in arms:
        if record is not None:
            raise ValueError(f"level {level} has no union arm to carry a structure")
        return head
    if record is None:
        return head + b"\0\0\0\0"
    fields = table.get(level)
    if fields is None:
        raise ValueError(f"no structure for level {level}")
    fixed, deferred = _encode_records(fields, [record])
    return head + _U32.pack(FIRST_REFERENT) + fixed + deferred


def _decode_info_union(
    reader: StubReader, level: int, arms: frozenset[int], table: dict[int, tuple[Field, ...]], make: Any,
    what: str,
) -> Any:
    if not _arm_pointer(reader, level, arms, what):
        return None
    fields = _fields_or_fail(table, level, what)
    return _decode_records(reader, fields, 1, make, what)[0]


def encode_share_get_info_request(request: ShareGetInfoRequest) -> bytes:
    check_u32("level", request.level)
    return (encode_unique_string(request.server_name, FIRST_REFERENT) + encode_string(request.net_name)
            + _U32.pack(request.level))


def decode_share_get_info_request(stub: bytes) -> ShareGetInfoRequest:
    reader = StubReader(bytes(stub))
    server = reader.unique_string("ServerName")
    net_name = reader.string("NetName")
    level = reader.u32("Level")
    reader.finish("NetrShareGetInfo request")
    return ShareGetInfoRequest(net_name, level, server)


def encode_share_get_info_response(response: ShareGetInfoResponse) -> bytes:
    check_u32("status", response.status)
    return (_encode_info_union(response.level, response.info, SHARE_INFO_ARMS, SHARE_LEVELS)
            + _U32.pack(response.status))


def decode_share_get_info_response(stub: bytes, level: int) -> ShareGetInfoResponse:
    """Decode a NetrShareGetInfo response; ``level`` is the one the request asked for."""
    reader = StubReader(bytes(stub))
    info = _decode_info_union(reader, level, SHARE_INFO_ARMS, SHARE_LEVELS, ShareInfo,
                              f"SHARE_INFO_{level}")
    status = reader.u32("return value")
    reader.finish("NetrShareGetInfo response")
    return ShareGetInfoResponse(level, info, status)


def encode_server_get_info_request(request: ServerGetInfoRequest) -> bytes:
    check_u32("level", request.level)
    return encode_unique_string(request.server_name, FIRST_REFERENT) + _U32.pack(request.level)


def decode_server_get_info_request(stub: bytes) -> ServerGetInfoRequest:
    reader = StubReader(bytes(stub))
    server = reader.unique_string("ServerName")
    level = reader.u32("Level")
    reader.finish("NetrServerGetInfo request")
    return ServerGetInfoRequest(level, server)


def encode_server_get_info_response(response: ServerGetInfoResponse) -> bytes:
    check_u32("status", response.status)
    return (_encode_info_union(response.level, response.info, SERVER_INFO_ARMS, SERVER_LEVELS)
            + _U32.pack(response.status))


def decode_server_get_info_response(stub: bytes, level: int) -> ServerGetInfoResponse:
    """Decode a NetrServerGetInfo response; ``level`` is the one the request asked for."""
    reader = StubReader(bytes(stub))
    info = _decode_info_union(reader, level, SERVER_INFO_ARMS, SERVER_LEVELS, ServerInfo,
                              f"SERVER_INFO_{level}")
    status = reader.u32("return value")
    reader.finish("NetrServerGetInfo response")
    return ServerGetInfoResponse(level, info, status)


# --------------------------------------------------------------------------- NetrShareCheck


def encode_share_check_request(request: ShareCheckRequest) -> bytes:
    return encode_unique_string(request.server_name, FIRST_REFERENT) + encode_string(request.device)


def decode_share_check_request(stub: bytes) -> ShareCheckRequest:
    reader = StubReader(bytes(stub))
    server = reader.unique_string("ServerName")
    device = reader.string("Device")
    reader.finish("NetrShareCheck request")
    return ShareCheckRequest(device, server)


def encode_share_check_response(response: ShareCheckResponse) -> bytes:
    check_u32("type", response.type)
    check_u32("status", response.status)
    return struct.pack("<II", response.type, response.status)


def decode_share_check_response(stub: bytes) -> ShareCheckResponse:
    reader = StubReader(bytes(stub))
    share_type = reader.u32("Type")
    status = reader.u32("return value")
    reader.finish("NetrShareCheck response")
    return ShareCheckResponse(share_type, status)


# --------------------------------------------------------------------------- NetrRemoteTOD

_TOD = struct.Struct("<IIIIIIiIIIII")


def encode_remote_tod_request(server_name: str | None = None) -> bytes:
    return encode_unique_string(server_name, FIRST_REFERENT)


def decode_remote_tod_request(stub: bytes) -> str | None:
    reader = StubReader(bytes(stub))
    server = reader.unique_string("ServerName")
    reader.finish("NetrRemoteTOD request")
    return server


def encode_remote_tod_response(response: RemoteTodResponse) -> bytes:
    check_u32("status", response.status)
    if response.tod is None:
        return b"\0\0\0\0" + _U32.pack(response.status)
    tod = response.tod
    try:
        body = _TOD.pack(tod.elapsed, tod.msecs, tod.hours, tod.mins, tod.secs, tod.hunds, tod.timezone,
                         tod.tinterval, tod.day, tod.month, tod.year, tod.weekday)
    except struct.error as exc:
        raise ValueError(f"a TIME_OF_DAY_INFO field is out of range: {exc}") from None
    return _U32.pack(FIRST_REFERENT) + body + _U32.pack(response.status)


def decode_remote_tod_response(stub: bytes) -> RemoteTodResponse:
    reader = StubReader(bytes(stub))
    tod = None
    if reader.u32("TIME_OF_DAY_INFO pointer"):
        reader.need(_TOD.size, "TIME_OF_DAY_INFO")
        tod = TimeOfDay(*_TOD.unpack_from(reader.buf, reader.pos))
        reader.pos += _TOD.size
    status = reader.u32("return value")
    reader.finish("NetrRemoteTOD response")
    return RemoteTodResponse(tod, status)
