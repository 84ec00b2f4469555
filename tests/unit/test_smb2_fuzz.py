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
