"""Hypothesis fuzzing of the server core's parsers: only typed errors, never a crash, and
nothing allocated from a length the peer claimed."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smbsessions.server import nbss
from smbsessions.server.smb2 import codec
from smbsessions.server.smb2.codec import Smb2DecodeError
from smbsessions.server.smb2.connection import CoreConfig, ServerConnection
from smbsessions.server.smb2.constants import Command
from smbsessions.server.smb2.negotiate import smb1_dialects

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def header(command: int, message_id: int = 0, flags: int = 0, next_command: int = 0,
           session_id: int = 0, tree_id: int = 0) -> bytes:
    return (b"\xfeSMB" + struct.pack("<HHIHHIIQIIQ", 64, 1, 0, command, 1, flags, next_command, message_id,
                                     0, tree_id, session_id) + bytes(16))


@FUZZ
@given(st.sampled_from(list(codec.DECODERS)), st.binary(max_size=400))
def test_every_request_decoder_raises_only_typed_errors(command: int, body: bytes) -> None:
    try:
        codec.decode_request(command, header(command) + body)
    except Smb2DecodeError as exc:
        assert exc.status


@FUZZ
@given(st.sampled_from(list(codec.DECODERS)), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF),
       st.binary(max_size=200))
def test_claimed_offsets_and_lengths_never_reach_past_the_message(command: int, offset: int, length: int,
                                                                 tail: bytes) -> None:
    # Every (offset, length) slot of every body layout, filled with hostile values.
    body = bytearray(struct.pack("<H", 0) + bytes(60))
    for at in range(2, 56, 2):
        body[at:at + 2] = struct.pack("<H", offset)
    for at in range(4, 56, 4):
        body[at:at + 4] = struct.pack("<I", length)
    try:
        decoded = codec.decode_request(command, header(command) + bytes(body) + tail)
    except Smb2DecodeError:
        return
    for value in vars(decoded).values():
        if isinstance(value, bytes | str):
            assert len(value) <= 64 + len(body) + len(tail)


@FUZZ
@given(st.binary(max_size=600))
def test_split_compound_raises_only_typed_errors(data: bytes) -> None:
    try:
        for message in codec.split_compound(data):
            assert len(message.raw) <= len(data)
    except Smb2DecodeError:
        pass


@FUZZ
@given(st.binary(max_size=300))
def test_smb1_negotiate_parser(data: bytes) -> None:
    try:
        names = smb1_dialects(b"\xffSMB\x72" + data)
    except Smb2DecodeError:
        return
    assert all(isinstance(n, bytes) for n in names)


@FUZZ
@given(st.binary(min_size=4, max_size=4))
def test_nbss_header(data: bytes) -> None:
    try:
        _kind, length = nbss.parse_header(data)
    except nbss.FramingError:
        return
    assert length <= nbss.MAX_MESSAGE


def _connection() -> ServerConnection:
    return ServerConnection(CoreConfig("SRV", "WG", lambda u: None, lambda u: False))


@FUZZ
@given(st.lists(st.binary(max_size=300), max_size=6))
def test_connection_never_raises_on_garbage_frames(frames: list[bytes]) -> None:
    conn = _connection()
    for frame in frames:
        out = conn.receive_frame(frame)
        assert isinstance(out, list)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(list(Command)), st.integers(0, 8), st.integers(0, 0xFF),
                          st.binary(max_size=120)), max_size=8))
def test_connection_never_raises_on_well_framed_hostile_requests(requests: list[tuple[int, int, int, bytes]]
                                                                 ) -> None:
    conn = _connection()
    negotiate = struct.pack("<HHHHI16sIHH", 36, 1, 1, 0, 0, bytes(16), 0, 0, 0) + struct.pack("<H", 0x0210)
    conn.receive_frame(header(Command.NEGOTIATE) + negotiate)
    for message_id, (command, mid, flags, body) in enumerate(requests, start=1):
        out = conn.receive_frame(header(command, message_id + mid % 2, flags, tree_id=1, session_id=mid) + body)
        assert isinstance(out, list)
        if conn.closed:
            break


# --------------------------------------------------------------------------- deeper: valid framing, hostile fields
# (H7) The fuzzers above mostly stop at StructureSize or the session check. These start from a
# connection that negotiated, logged on (null session), connected IPC$ and opened the pipe, then
# send requests with the right ids and StructureSize and hostile everything else.

DEEP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

STRUCTURE_SIZES: dict[int, int] = {
    Command.NEGOTIATE: 36, Command.SESSION_SETUP: 25, Command.LOGOFF: 4, Command.TREE_CONNECT: 9,
    Command.TREE_DISCONNECT: 4, Command.CREATE: 57, Command.CLOSE: 24, Command.FLUSH: 24, Command.READ: 49,
    Command.WRITE: 49, Command.IOCTL: 57, Command.CANCEL: 4, Command.ECHO: 4, Command.QUERY_INFO: 41,
    Command.LOCK: 48, Command.QUERY_DIRECTORY: 33, Command.CHANGE_NOTIFY: 32, Command.SET_INFO: 33,
    Command.OPLOCK_BREAK: 24,
}


class _Endpoint:
    """A pipe endpoint that answers every write with one message (its data back)."""

    def __init__(self, caller: object) -> None:
        self.queue: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.queue.append(bytes(data[:1024]))

    def read(self, max_len: int) -> tuple[bytes, bool]:
        if not self.queue:
            return b"", False
        message = self.queue[0]
        if len(message) <= max_len:
            self.queue.pop(0)
            return message, False
        self.queue[0] = message[max_len:]
        return message[:max_len], True

    def close(self) -> None:
        self.queue.clear()


class _Core:
    """A null session on one ServerConnection with IPC$ and the pipe open; ids tracked."""

    def __init__(self, dialect: int = 0x0302) -> None:
        from smbsessions.ntlm import NegotiateFlags, build_authenticate, build_negotiate

        self.conn = ServerConnection(CoreConfig("SRV", "WG", lambda u: None, lambda u: False,
                                                pipe_factory=_Endpoint))
        self.message_id = 0
        self.session_id = 0
        self.tree_id = 0
        negotiate = struct.pack("<HHHHI16sIHH", 36, 1, 1, 0, 0x40, bytes(16), 0, 0, 0) + struct.pack("<H", dialect)
        self.send(Command.NEGOTIATE, negotiate)
        flags = int(NegotiateFlags.UNICODE | NegotiateFlags.NTLM | NegotiateFlags.ANONYMOUS)
        for token in (build_negotiate(flags),
                      build_authenticate(flags, lm_response=b"\0", nt_response=b"", domain=b"", user=b"",
                                         workstation=b"", encrypted_random_session_key=b"")):
            reply = self.send(Command.SESSION_SETUP, struct.pack("<HBBIIHHQ", 25, 0, 1, 0, 0, 88, len(token), 0)
                              + token)
            self.session_id = struct.unpack_from("<Q", reply, 40)[0]
        path = "\\\\srv\\IPC$".encode("utf-16-le")
        reply = self.send(Command.TREE_CONNECT, struct.pack("<HHHH", 9, 0, 72, len(path)) + path)
        self.tree_id = struct.unpack_from("<I", reply, 36)[0]
        name = "srvsvc".encode("utf-16-le")
        reply = self.send(Command.CREATE, struct.pack("<HBBIQQIIIIIHHII", 57, 0, 0, 2, 0, 0, 0x12019F, 0, 7, 1, 0,
                                                      120, len(name), 0, 0) + name)
        assert struct.unpack_from("<I", reply, 8)[0] == 0
        self.file_id = reply[64 + 64:64 + 80]
        assert self.conn.logged_on and not self.conn.closed

    def header(self, command: int, flags: int = 0, next_command: int = 0, charge: int = 1) -> bytes:
        message_id = self.message_id
        self.message_id += max(charge, 1)
        return (b"\xfeSMB" + struct.pack("<HHIHHIIQIIQ", 64, charge, 0, command, 64, flags, next_command,
                                         message_id, 0, self.tree_id, self.session_id) + bytes(16))

    def send(self, command: int, body: bytes) -> bytes:
        out = self.conn.receive_frame(self.header(command) + body)
        assert len(out) == 1, (command, out)
        return out[0]


def _hostile_body(command: int, rest: bytes, file_id: bytes, use_file_id: bool) -> bytes:
    body = bytearray(struct.pack("<H", STRUCTURE_SIZES.get(command, 4)) + rest)
    # The FileId field sits at these body offsets: CLOSE/FLUSH 8, READ/WRITE 16, IOCTL 8, QUERY_INFO 24.
    file_id_at: dict[int, int] = {Command.CLOSE: 8, Command.FLUSH: 8, Command.READ: 16, Command.WRITE: 16,
                                  Command.IOCTL: 8, Command.QUERY_INFO: 24}
    at = file_id_at.get(command)
    if use_file_id and at is not None and len(body) >= at + 16:
        body[at:at + 16] = file_id
    return bytes(body)


@DEEP
@given(st.lists(st.tuples(st.sampled_from(list(STRUCTURE_SIZES)), st.binary(max_size=160), st.booleans()),
                min_size=1, max_size=6))
def test_logged_on_connection_survives_hostile_bodies(requests: list[tuple[int, bytes, bool]]) -> None:
    core = _Core()
    for command, rest, use_file_id in requests:
        out = core.conn.receive_frame(core.header(command) + _hostile_body(command, rest, core.file_id,
                                                                            use_file_id))
        assert isinstance(out, list)
        for frame in out:
            assert frame[:4] == b"\xfeSMB" and len(frame) <= 2 * 65536
        if core.conn.closed:
            break


@DEEP
@given(st.lists(st.tuples(st.sampled_from(list(STRUCTURE_SIZES)), st.binary(max_size=80), st.booleans(),
                          st.booleans()), min_size=2, max_size=6))
def test_logged_on_connection_survives_hostile_compounds(parts: list[tuple[int, bytes, bool, bool]]) -> None:
    core = _Core()
    messages = []
    for command, rest, related, use_file_id in parts:
        body = _hostile_body(command, rest, b"\xff" * 16 if related else core.file_id, use_file_id)
        messages.append((core.header(command, flags=4 if related else 0), body))
    frame = b""
    for i, (head, body) in enumerate(messages):
        message = head + body
        if i + 1 < len(messages):
            message += b"\0" * (-len(message) % 8)
            message = message[:20] + struct.pack("<I", len(message)) + message[24:]
        frame += message
    out = core.conn.receive_frame(frame)
    assert isinstance(out, list) and len(out) <= 1


@FUZZ
@given(st.binary(max_size=200), st.integers(0, 40), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF))
def test_negotiate_311_contexts(tail: bytes, count: int, context_count: int, context_offset: int) -> None:
    from smbsessions.server.smb2.negotiate import NegotiateRefused, choose

    dialects = (0x0202, 0x0311)
    body = struct.pack("<HHHHI16sIHH", 36, len(dialects), 1, 0, 0, bytes(16), context_offset, context_count,
                       0) + struct.pack("<2H", *dialects)
    raw = header(Command.NEGOTIATE) + body + b"\0" * count + tail
    try:
        request = codec.decode_negotiate(raw)
        choose(request)
    except (Smb2DecodeError, NegotiateRefused):
        return


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=40)), max_size=8))
def test_negotiate_311_well_formed_contexts_with_hostile_payloads(contexts: list[tuple[int, bytes]]) -> None:
    from smbsessions.server.smb2.negotiate import NegotiateRefused, choose

    blob = b""
    for ctype, data in contexts:
        blob += b"\0" * (-len(blob) % 8) + struct.pack("<HHI", ctype % 8, len(data), 0) + data
    body = struct.pack("<HHHHI16sIHH", 36, 1, 1, 0, 0, bytes(16), 64 + 36 + 2 + 6, len(contexts), 0)
    raw = header(Command.NEGOTIATE) + body + struct.pack("<H", 0x0311) + bytes(6) + blob
    try:
        negotiated = choose(codec.decode_negotiate(raw))
    except (Smb2DecodeError, NegotiateRefused):
        return
    assert negotiated.dialect == 0x0311


@FUZZ
@given(st.binary(max_size=120))
def test_validate_negotiate_input_never_raises(data: bytes) -> None:
    from smbsessions.server.smb2.messages import NegotiateRequest
    from smbsessions.server.smb2.negotiate import validate_negotiate_matches

    request = NegotiateRequest(1, 0, bytes(16), (0x0202, 0x0302))
    assert validate_negotiate_matches(data, request) in (True, False)


def test_claimed_lengths_allocate_nothing() -> None:
    """Every length field at its maximum in a small frame: the core's peak allocation stays small."""
    import tracemalloc

    core = _Core()
    frames = []
    for command in STRUCTURE_SIZES:
        rest = struct.pack("<H", 0) + b"\xff" * 120
        frames.append(core.header(command) + _hostile_body(command, rest, core.file_id, True))
    core.conn.receive_frame(core.header(Command.ECHO) + struct.pack("<HH", 4, 0))  # warm lazy imports
    tracemalloc.start()
    try:
        for frame in frames:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            core.conn.receive_frame(frame)
            peak = tracemalloc.get_traced_memory()[1] - before
            assert peak < 256 * 1024, (frame[12], peak)
            if core.conn.closed:
                core = _Core()
    finally:
        tracemalloc.stop()


@DEEP
@given(st.binary(min_size=52, max_size=300), st.booleans())
def test_transform_frames_for_a_null_session_close_the_connection(data: bytes, right_session: bool) -> None:
    core = _Core()
    frame = bytearray(b"\xfdSMB" + data)
    if right_session:
        frame[44:52] = struct.pack("<Q", core.session_id)
    assert core.conn.receive_frame(bytes(frame)) == []
    assert core.conn.closed  # a null session has no keys: nothing it sends may be a TRANSFORM
