"""The share / server-info / time-of-day codec against impacket's srvs structures, both directions.

impacket is an independent NDR implementation of MS-SRVS: our bytes must decode
there to the same values, impacket's bytes must decode here to what impacket
was given. Comparison is on values (impacket randomises referent ids).
Hostile input: every decoder raises DecodeError and nothing else.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("impacket")
from impacket.dcerpc.v5 import srvs
from impacket.dcerpc.v5.dtypes import NULL

from smbsessions import srvsvc_ndr as n
from smbsessions.srvsvc_levels import (
    SERVER_LEVELS,
    SHARE_LEVELS,
    ServerIdentity,
    ServerInfo,
    ShareInfo,
    decoy_share,
)
from smbsessions.status import DecodeError

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=16)
names = st.none() | text
u32s = st.integers(0, 0xFFFFFFFF)
descriptors = st.none() | st.binary(max_size=40)
shares = st.builds(ShareInfo, names, u32s, names, u32s, u32s, u32s, names, names, names, u32s, descriptors)
servers = st.builds(ServerInfo, u32s, names, u32s, u32s, u32s, names, u32s, u32s, u32s, u32s, u32s, u32s, names)
# Levels impacket's SHARE_ENUM_UNION and SHARE_INFO carry.
ENUM_LEVELS = [0, 1, 2, 501, 502, 503]
INFO_LEVELS = [0, 1, 2, 501, 502, 503, 1004, 1005, 1006]

IDENTITY = ServerIdentity(name="FileSrv01", comment="Finance", decoy_shares=(
    decoy_share("ADMIN$"), decoy_share("C$"), decoy_share("Data:Team data"), decoy_share("Ünïcode😀")))


def _py(value: Any) -> Any:
    """impacket's value as ours: strings without their NUL, NULL pointers as None."""
    if isinstance(value, bytes):
        return None if value == b"" else value
    if isinstance(value, str):
        assert value.endswith("\0")
        return value[:-1]
    if isinstance(value, list):  # impacket's byte arrays
        return bytes(value) if value else None
    return int(value)


def _impacket_record(level: int, item: Any, prefix: str, make: Any, table: Any) -> Any:
    values: dict[str, Any] = {}
    for field in table[level]:
        if field.kind == "sd":
            raw = item[f"{prefix}{level}_security_descriptor"]
            if isinstance(raw, bytes):  # impacket's NULL pointer
                assert raw == b""
                values[field.name] = None
            else:
                values[field.name] = b"".join(x if isinstance(x, bytes) else bytes([x]) for x in raw)
                assert int(item[f"{prefix}{level}_reserved"]) == len(values[field.name])
        else:
            values[field.name] = _py(item[f"{prefix}{level}_{field.wire}"])
    return make(**values)


def _set_impacket_record(level: int, item: Any, record: Any, prefix: str, table: Any) -> None:
    for field in table[level]:
        value = getattr(record, field.name)
        if field.kind == "sd":
            item[f"{prefix}{level}_reserved"] = 0 if value is None else len(value)
            item[f"{prefix}{level}_security_descriptor"] = NULL if value is None else list(value)
        elif field.kind == "str":
            item[f"{prefix}{level}_{field.wire}"] = NULL if value is None else value + "\0"
        else:
            item[f"{prefix}{level}_{field.wire}"] = value or 0


# --------------------------------------------------------------------------- fixed examples


@pytest.mark.parametrize("level", ENUM_LEVELS)
def test_share_enum_response_decodes_in_impacket(level: int) -> None:
    rows = [s.project(level) for s in IDENTITY.shares()]
    stub = n.encode_share_enum_response(n.ShareEnumResponse(level, rows, 5, 0, 0))
    answer = srvs.NetrShareEnumResponse()
    answer.fromString(stub)
    container = answer["InfoStruct"]["ShareInfo"][f"Level{level}"]
    got = [_impacket_record(level, item, "shi", ShareInfo, SHARE_LEVELS) for item in container["Buffer"]]
    assert got == rows
    assert answer["InfoStruct"]["Level"] == level
    assert (answer["TotalEntries"], answer["ResumeHandle"], answer["ErrorCode"]) == (5, 0, 0)
    assert rows[0].type == 0x80000003 and rows[0].netname == "IPC$" if level else True
    assert n.decode_share_enum_response(stub) == n.ShareEnumResponse(level, rows, 5, 0, 0)


@pytest.mark.parametrize("sticky", [False, True])
@pytest.mark.parametrize("level", ENUM_LEVELS)
def test_impacket_share_enum_request_decodes_here(level: int, sticky: bool) -> None:
    request = srvs.NetrShareEnumSticky() if sticky else srvs.NetrShareEnum()
    request["ServerName"] = "\\\\srv\0"
    request["InfoStruct"]["Level"] = level
    request["InfoStruct"]["ShareInfo"]["tag"] = level
    request["InfoStruct"]["ShareInfo"][f"Level{level}"]["Buffer"] = NULL
    request["PreferedMaximumLength"] = 4096
    request["ResumeHandle"] = 3
    decoded = n.decode_share_enum_request(request.getData())
    assert decoded == n.ShareEnumRequest(level, "\\\\srv", 4096, 3, True)


@pytest.mark.parametrize("level", INFO_LEVELS)
def test_share_get_info_both_directions(level: int) -> None:
    share = IDENTITY.shares()[3].project(level)
    stub = n.encode_share_get_info_response(n.ShareGetInfoResponse(level, share, 0))
    answer = srvs.NetrShareGetInfoResponse()
    answer.fromString(stub)
    assert answer["InfoStruct"]["tag"] == level
    item = answer["InfoStruct"][f"ShareInfo{level}"]
    assert _impacket_record(level, item, "shi", ShareInfo, SHARE_LEVELS) == share
    request = srvs.NetrShareGetInfo()
    request["ServerName"] = NULL
    request["NetName"] = "Data\0"
    request["Level"] = level
    assert n.decode_share_get_info_request(request.getData()) == n.ShareGetInfoRequest("Data", level, None)
    assert n.decode_share_get_info_response(stub, level).info == share


@pytest.mark.parametrize("level", [100, 101, 102])
def test_server_get_info_both_directions(level: int) -> None:
    info = IDENTITY.server_info().project(level)
    stub = n.encode_server_get_info_response(n.ServerGetInfoResponse(level, info, 0))
    answer = srvs.NetrServerGetInfoResponse()
    answer.fromString(stub)
    item = answer["InfoStruct"][f"ServerInfo{level}"]
    assert _impacket_record(level, item, "sv", ServerInfo, SERVER_LEVELS) == info
    assert info.name == "FileSrv01" and info.platform_id == 500
    request = srvs.NetrServerGetInfo()
    request["ServerName"] = "\\\\FileSrv01\0"
    request["Level"] = level
    assert n.decode_server_get_info_request(request.getData()) == n.ServerGetInfoRequest(level, "\\\\FileSrv01")


@pytest.mark.parametrize(("level", "has_arm"), [(502, True), (503, True), (1501, True), (7, False)])
def test_refused_levels_carry_a_matching_empty_arm(level: int, has_arm: bool) -> None:
    stub = n.encode_share_get_info_response(n.ShareGetInfoResponse(level, None, 124))
    assert stub == struct.pack("<I", level) + (b"\0" * 4 if has_arm else b"") + struct.pack("<I", 124)
    if has_arm:
        answer = srvs.NetrShareGetInfoResponse()
        answer.fromString(stub)
        assert answer["InfoStruct"]["tag"] == level and answer["ErrorCode"] == 124
    stub = n.encode_server_get_info_response(n.ServerGetInfoResponse(503, None, 124))
    answer = srvs.NetrServerGetInfoResponse()
    answer.fromString(stub)
    assert answer["InfoStruct"]["tag"] == 503 and answer["ErrorCode"] == 124
    stub = n.encode_share_enum_response(n.ShareEnumResponse(9, None, 0, None, 124))
    assert stub == struct.pack("<IIIII", 9, 9, 0, 0, 124)


def test_share_check_and_remote_tod_in_impacket() -> None:
    request = srvs.NetrShareCheck()
    request["ServerName"] = NULL
    request["Device"] = "C:\\Windows\0"
    assert n.decode_share_check_request(request.getData()) == n.ShareCheckRequest("C:\\Windows", None)
    answer = srvs.NetrShareCheckResponse()
    answer.fromString(n.encode_share_check_response(n.ShareCheckResponse(0x80000000, 0)))
    assert (answer["Type"], answer["ErrorCode"]) == (0x80000000, 0)
    tod = n.TimeOfDay(1700000000, 12345, 22, 13, 20, 50, -60, 310, 14, 11, 2023, 2)
    answer = srvs.NetrRemoteTODResponse()
    answer.fromString(n.encode_remote_tod_response(n.RemoteTodResponse(tod, 0)))
    info = answer["BufferPtr"]
    assert (info["tod_elapsedt"], info["tod_year"], info["tod_weekday"], info["tod_timezone"]) == (
        1700000000, 2023, 2, 0xFFFFFFC4)
    request = srvs.NetrRemoteTOD()
    request["ServerName"] = NULL
    assert n.decode_remote_tod_request(request.getData()) is None
    assert n.decode_remote_tod_response(n.encode_remote_tod_response(n.RemoteTodResponse(tod, 0))).tod == tod


# --------------------------------------------------------------------------- properties


@SETTINGS
@given(level=st.sampled_from(ENUM_LEVELS), rows=st.lists(shares, max_size=6), total=u32s,
       resume=st.none() | u32s, status=u32s)
def test_share_enum_response_oracle(level: int, rows: list[ShareInfo], total: int, resume: int | None,
                                    status: int) -> None:
    rows = [r.project(level) for r in rows]
    response = n.ShareEnumResponse(level, rows, total, resume, status)
    stub = n.encode_share_enum_response(response)
    assert n.decode_share_enum_response(stub) == response
    answer = srvs.NetrShareEnumResponse()
    answer.fromString(stub)
    container = answer["InfoStruct"]["ShareInfo"][f"Level{level}"]
    got = [_impacket_record(level, item, "shi", ShareInfo, SHARE_LEVELS) for item in container["Buffer"]]
    assert got == rows


@SETTINGS
@given(level=st.sampled_from(ENUM_LEVELS), rows=st.lists(shares, min_size=1, max_size=4))
def test_impacket_share_enum_response_decodes_here(level: int, rows: list[ShareInfo]) -> None:
    rows = [r.project(level) for r in rows]
    answer = srvs.NetrShareEnumResponse()
    answer["InfoStruct"]["Level"] = level
    answer["InfoStruct"]["ShareInfo"]["tag"] = level
    container = answer["InfoStruct"]["ShareInfo"][f"Level{level}"]
    container["EntriesRead"] = len(rows)
    for row in rows:
        item = getattr(srvs, f"SHARE_INFO_{level}")()
        _set_impacket_record(level, item, row, "shi", SHARE_LEVELS)
        container["Buffer"].append(item)
    answer["TotalEntries"] = len(rows)
    answer["ResumeHandle"] = NULL
    answer["ErrorCode"] = 0
    assert n.decode_share_enum_response(answer.getData()).entries == rows


@SETTINGS
@given(level=st.sampled_from([100, 101, 102]), info=servers, status=u32s)
def test_server_info_roundtrip(level: int, info: ServerInfo, status: int) -> None:
    info = info.project(level)
    stub = n.encode_server_get_info_response(n.ServerGetInfoResponse(level, info, status))
    assert n.decode_server_get_info_response(stub, level) == n.ServerGetInfoResponse(level, info, status)
    answer = srvs.NetrServerGetInfoResponse()
    answer.fromString(stub)
    assert _impacket_record(level, answer["InfoStruct"][f"ServerInfo{level}"], "sv", ServerInfo,
                            SERVER_LEVELS) == info


@SETTINGS
@given(request=st.builds(n.ShareEnumRequest, u32s, names, u32s, st.none() | u32s, st.booleans()))
def test_share_enum_request_roundtrip(request: n.ShareEnumRequest) -> None:
    decoded = n.decode_share_enum_request(n.encode_share_enum_request(request))
    has_arm = request.level in {0, 1, 2, 501, 502, 503, 1004, 1005, 1006, 1007, 1501}
    assert decoded == (request if has_arm else n.ShareEnumRequest(
        request.level, request.server_name, request.prefmaxlen, request.resume_handle, False))


# --------------------------------------------------------------------------- hostile input

DECODERS: dict[str, Callable[[bytes], Any]] = {
    "share_enum_request": n.decode_share_enum_request,
    "share_enum_response": n.decode_share_enum_response,
    "share_get_info_request": n.decode_share_get_info_request,
    "share_get_info_response_502": lambda b: n.decode_share_get_info_response(b, 502),
    "server_get_info_request": n.decode_server_get_info_request,
    "server_get_info_response_102": lambda b: n.decode_server_get_info_response(b, 102),
    "share_check_request": n.decode_share_check_request,
    "share_check_response": n.decode_share_check_response,
    "remote_tod_request": n.decode_remote_tod_request,
    "remote_tod_response": n.decode_remote_tod_response,
}
VALID = {
    "share_enum_response": n.encode_share_enum_response(n.ShareEnumResponse(
        502, [s.project(502)._replace(security_descriptor=b"\1\2\3") for s in IDENTITY.shares()], 5, 1, 234)),
    "share_get_info_response_502": n.encode_share_get_info_response(
        n.ShareGetInfoResponse(502, IDENTITY.shares()[1].project(502), 0)),
    "server_get_info_response_102": n.encode_server_get_info_response(
        n.ServerGetInfoResponse(102, IDENTITY.server_info(), 0)),
    "share_enum_request": n.encode_share_enum_request(n.ShareEnumRequest(2, "x", 100, 4)),
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(DECODERS)), data=st.binary(max_size=200))
def test_random_bytes_raise_only_decode_error(kind: str, data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        DECODERS[kind](data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(VALID)), data=st.data())
def test_mutated_valid_stubs_raise_only_decode_error(kind: str, data: st.DataObject) -> None:
    stub = bytearray(VALID[kind])
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(stub) - 1))
        stub[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(stub)))
    with contextlib.suppress(DecodeError):
        DECODERS[kind](bytes(stub[:cut]))


def test_huge_claimed_counts_are_refused_before_allocation() -> None:
    stub = struct.pack("<IIIIII", 2, 2, 0x20000, 0x0FFFFFFF, 0x20004, 0x0FFFFFFF)
    with pytest.raises(DecodeError):
        n.decode_share_enum_response(stub)
    stub = struct.pack("<IIIIIIII", 0, 0x20000, 0, 0, 0, 0, 0, 0)
    with pytest.raises(DecodeError):
        n.decode_share_get_info_response(stub, 502)
