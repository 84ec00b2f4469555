"""SMB2 wire codec for the server: requests from bytes, responses to bytes.

Every reader checks offsets and lengths against the bytes it was given and
raises ``Smb2DecodeError`` (with the NTSTATUS Windows answers) on anything
that does not fit; nothing is allocated from a length the peer claimed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from smbsessions.server.smb2.constants import HEADER_SIZE, SMB2_MAGIC, Command, HeaderFlags
from smbsessions.server.smb2.messages import (
    CreateRequest,
    EmptyRequest,
    FileRequest,
    Header,
    IoctlRequest,
    Message,
    NegotiateContext,
    NegotiateRequest,
    QueryInfoRequest,
    ReadRequest,
    Request,
    SessionSetupRequest,
    TreeConnectRequest,
    WriteRequest,
)
from smbsessions.status import NtStatus

MAX_COMPOUND = 32  # commands in one frame
MAX_NEGOTIATE_DIALECTS = 64
MAX_NEGOTIATE_CONTEXTS = 32

_HEADER = struct.Struct("<4sHHIHHIIQIIQ16s")
_ASYNC_HEADER = struct.Struct("<4sHHIHHIIQQQ16s")


class Smb2DecodeError(Exception):
    """A request we cannot read; ``status`` is the NTSTATUS the client gets."""

    def __init__(self, message: str, status: NtStatus = NtStatus.STATUS_INVALID_PARAMETER) -> None:
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------- header


def decode_header(data: bytes, offset: int = 0) -> Header:
    if len(data) - offset < HEADER_SIZE:
        raise Smb2DecodeError("truncated SMB2 header")
    (magic, size, charge, status, command, credits, flags, next_command, message_id,
     _reserved, tree_id, session_id, signature) = _HEADER.unpack_from(data, offset)
    if magic != SMB2_MAGIC or size != HEADER_SIZE:
        raise Smb2DecodeError("not an SMB2 header")
    async_id = 0
    if flags & HeaderFlags.ASYNC_COMMAND:
        async_id = _ASYNC_HEADER.unpack_from(data, offset)[9]
        tree_id = 0
    return Header(charge, status, command, credits, flags, next_command, message_id, tree_id,
                  session_id, signature, async_id)


def encode_header(header: Header) -> bytes:
    return _HEADER.pack(SMB2_MAGIC, HEADER_SIZE, header.credit_charge, header.status, header.command,
                        header.credits, header.flags, header.next_command, header.message_id, 0,
                        header.tree_id, header.session_id, header.signature)


def split_compound(frame: bytes) -> Iterator[Message]:
    """The messages of one frame, following NextCommand (8-byte aligned, inside the frame)."""
    offset = 0
    for _ in range(MAX_COMPOUND):
        header = decode_header(frame, offset)
        nxt = header.next_command
        if nxt == 0:
            yield Message(header, frame[offset:], frame[offset + HEADER_SIZE:])
            return
        if nxt < HEADER_SIZE or nxt % 8 or offset + nxt >= len(frame):
            raise Smb2DecodeError("bad NextCommand offset")
        yield Message(header, frame[offset:offset + nxt], frame[offset + HEADER_SIZE:offset + nxt])
        offset += nxt
    raise Smb2DecodeError(f"more than {MAX_COMPOUND} commands in one message")


# --------------------------------------------------------------------------- requests


def _fixed(body: bytes, layout: struct.Struct, structure_size: int) -> tuple[int, ...]:
    if len(body) < layout.size:
        raise Smb2DecodeError("truncated request body")
    values = layout.unpack_from(body)
    if values[0] != structure_size:
        raise Smb2DecodeError(f"StructureSize {values[0]}, expected {structure_size}")
    return values[1:]


def _buffer(raw: bytes, offset: int, length: int) -> bytes:
    """``length`` bytes at ``offset`` from the start of the header; both must lie inside ``raw``."""
    if length == 0:
        return b""
    if offset < HEADER_SIZE or offset + length > len(raw):
        raise Smb2DecodeError("buffer outside the message")
    return raw[offset:offset + length]


def _utf16(data: bytes) -> str:
    if len(data) % 2:
        raise Smb2DecodeError("odd UTF-16 length")
    try:
        return data.decode("utf-16-le")
    except UnicodeDecodeError as exc:
        raise Smb2DecodeError("invalid UTF-16 name", NtStatus.STATUS_OBJECT_NAME_INVALID) from exc


_NEGOTIATE = struct.Struct("<HHHHI16sIHH")
_CONTEXT = struct.Struct("<HHI")


def decode_negotiate(raw: bytes) -> NegotiateRequest:
    body = raw[HEADER_SIZE:]
    count, mode, _, caps, guid, ctx_offset, ctx_count, _ = _fixed(body, _NEGOTIATE, 36)
    if count == 0 or count > MAX_NEGOTIATE_DIALECTS:
        raise Smb2DecodeError("bad DialectCount")
    dialect_bytes = _buffer(raw, HEADER_SIZE + 36, 2 * count)
    dialects = struct.unpack(f"<{count}H", dialect_bytes)
    contexts: list[NegotiateContext] = []
    if 0x0311 in dialects and ctx_count:
        if ctx_count > MAX_NEGOTIATE_CONTEXTS:
            raise Smb2DecodeError("too many negotiate contexts")
        offset = ctx_offset
        for index in range(ctx_count):
            if index:
                offset += -offset % 8  # contexts after the first start 8-byte aligned
            head = _buffer(raw, offset, _CONTEXT.size)
            ctype, length, _ = _CONTEXT.unpack(head)
            contexts.append(NegotiateContext(ctype, _buffer(raw, offset + _CONTEXT.size, length)))
            offset += _CONTEXT.size + length
    return NegotiateRequest(mode, caps, bytes(guid), tuple(dialects), tuple(contexts))


def u16_list(data: bytes, count_offset: int = 0, items_offset: int = 2) -> tuple[int, ...]:
    """A little-endian count followed by that many u16 values (negotiate context payloads)."""
    if len(data) < items_offset:
        raise Smb2DecodeError("truncated negotiate context")
    (count,) = struct.unpack_from("<H", data, count_offset)
    if count == 0 or len(data) < items_offset + 2 * count:
        raise Smb2DecodeError("truncated negotiate context")
    return struct.unpack_from(f"<{count}H", data, items_offset)


_SESSION_SETUP = struct.Struct("<HBBIIHHQ")


def decode_session_setup(raw: bytes) -> SessionSetupRequest:
    flags, mode, caps, _, offset, length, previous = _fixed(raw[HEADER_SIZE:], _SESSION_SETUP, 25)
    return SessionSetupRequest(flags, mode, caps, previous, _buffer(raw, offset, length))


_TREE_CONNECT = struct.Struct("<HHHH")


def decode_tree_connect(raw: bytes) -> TreeConnectRequest:
    _, offset, length = _fixed(raw[HEADER_SIZE:], _TREE_CONNECT, 9)
    return TreeConnectRequest(_utf16(_buffer(raw, offset, length)))


_CREATE = struct.Struct("<HBBIQQIIIIIHHII")


def decode_create(raw: bytes) -> CreateRequest:
    (_, _, _, _, _, access, _, _, disposition, options, name_offset, name_length, _, _) = _fixed(
        raw[HEADER_SIZE:], _CREATE, 57)
    return CreateRequest(access, disposition, options, _utf16(_buffer(raw, name_offset, name_length)))


_CLOSE = struct.Struct("<HHI16s")


def decode_close(raw: bytes) -> FileRequest:
    flags, _, file_id = _fixed(raw[HEADER_SIZE:], _CLOSE, 24)
    return FileRequest(bytes(file_id), flags)


def decode_flush(raw: bytes) -> FileRequest:
    _, _, file_id = _fixed(raw[HEADER_SIZE:], _CLOSE, 24)
    return FileRequest(bytes(file_id))


_READ = struct.Struct("<HBBIQ16sIIIHH")


def decode_read(raw: bytes) -> ReadRequest:
    _, _, length, offset, file_id, minimum, _, _, _, _ = _fixed(raw[HEADER_SIZE:], _READ, 49)
    return ReadRequest(length, offset, bytes(file_id), minimum)


_WRITE = struct.Struct("<HHIQ16sIIHHI")


def decode_write(raw: bytes) -> WriteRequest:
    data_offset, length, offset, file_id, _, _, _, _, _ = _fixed(raw[HEADER_SIZE:], _WRITE, 49)
    return WriteRequest(offset, bytes(file_id), _buffer(raw, data_offset, length))


_IOCTL = struct.Struct("<HHI16sIIIIIIII")


def decode_ioctl(raw: bytes) -> IoctlRequest:
    (_, ctl_code, file_id, in_offset, in_count, _, _, _, max_output, flags, _) = _fixed(
        raw[HEADER_SIZE:], _IOCTL, 57)
    return IoctlRequest(ctl_code, bytes(file_id), _buffer(raw, in_offset, in_count), max_output, flags)


_QUERY_INFO = struct.Struct("<HBBIHHIII16s")


def decode_query_info(raw: bytes) -> QueryInfoRequest:
    info_type, info_class, out_len, _, _, _, _, _, file_id = _fixed(raw[HEADER_SIZE:], _QUERY_INFO, 41)
    return QueryInfoRequest(info_type, info_class, out_len, bytes(file_id))


_EMPTY = struct.Struct("<HH")


def decode_empty(raw: bytes) -> EmptyRequest:
    _fixed(raw[HEADER_SIZE:], _EMPTY, 4)
    return EmptyRequest()


DECODERS = {
    Command.NEGOTIATE: decode_negotiate,
    Command.SESSION_SETUP: decode_session_setup,
    Command.LOGOFF: decode_empty,
    Command.TREE_CONNECT: decode_tree_connect,
    Command.TREE_DISCONNECT: decode_empty,
    Command.CREATE: decode_create,
    Command.CLOSE: decode_close,
    Command.FLUSH: decode_flush,
    Command.READ: decode_read,
    Command.WRITE: decode_write,
    Command.IOCTL: decode_ioctl,
    Command.CANCEL: decode_empty,
    Command.ECHO: decode_empty,
    Command.QUERY_INFO: decode_query_info,
}


def decode_request(command: int, raw: bytes) -> Request:
    """The request in ``raw`` (one whole message, header included)."""
    decoder = DECODERS.get(command)  # type: ignore[call-overload]
    if decoder is None:
        raise Smb2DecodeError(f"command {command:#x} not served", NtStatus.STATUS_NOT_SUPPORTED)
    request: Request = decoder(raw)
    return request


# --------------------------------------------------------------------------- responses

ERROR_BODY = struct.pack("<HBBI", 9, 0, 0, 0) + b"\0"


def negotiate_response(*, security_mode: int, dialect: int, server_guid: bytes, capabilities: int,
                       max_size: int, system_time: int, token: bytes,
                       contexts: list[tuple[int, bytes]]) -> bytes:
    buffer_offset = HEADER_SIZE + 64
    ctx_offset = 0
    tail = token
    if contexts:
        tail += b"\0" * (-(buffer_offset + len(tail)) % 8)
        ctx_offset = buffer_offset + len(tail)
        for i, (ctype, data) in enumerate(contexts):
            tail += _CONTEXT.pack(ctype, len(data), 0) + data
            if i + 1 < len(contexts):
                tail += b"\0" * (-len(tail) % 8)
    fixed = struct.pack("<HHHH16sIIIIQQHHI", 65, security_mode, dialect, len(contexts), server_guid,
                        capabilities, max_size, max_size, max_size, system_time, 0, buffer_offset,
                        len(token), ctx_offset)
    return fixed + tail


def session_setup_response(session_flags: int, token: bytes) -> bytes:
    return struct.pack("<HHHH", 9, session_flags, HEADER_SIZE + 8, len(token)) + token


def tree_connect_response(share_type: int, share_flags: int, capabilities: int, access: int) -> bytes:
    return struct.pack("<HBBIII", 16, share_type, 0, share_flags, capabilities, access)


EMPTY_RESPONSE = struct.pack("<HH", 4, 0)


def create_response(file_id: bytes, attributes: int, action: int, now: int) -> bytes:
    return struct.pack("<HBBIQQQQQQII16sII", 89, 0, 0, action, now, now, now, now, 4096, 0, attributes,
                       0, file_id, 0, 0)


def close_response(flags: int, attributes: int, now: int) -> bytes:
    if flags & 1:
        return struct.pack("<HHIQQQQQQI", 60, 1, 0, now, now, now, now, 4096, 0, attributes)
    return struct.pack("<HHI", 60, 0, 0) + bytes(52)


def read_response(data: bytes) -> bytes:
    return struct.pack("<HBBIII", 17, HEADER_SIZE + 16, 0, len(data), 0, 0) + data


def write_response(count: int) -> bytes:
    return struct.pack("<HHIIHH", 17, 0, count, 0, 0, 0)


def ioctl_response(ctl_code: int, file_id: bytes, output: bytes) -> bytes:
    offset = HEADER_SIZE + 48
    return struct.pack("<HHI16sIIIIII", 49, 0, ctl_code, file_id, offset, 0, offset, len(output), 0,
                       0) + output


def query_info_response(data: bytes) -> bytes:
    return struct.pack("<HHI", 9, HEADER_SIZE + 8, len(data)) + data
