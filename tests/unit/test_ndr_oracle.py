"""Our NDR codec against impacket's srvs structures, both directions.

impacket (``impacket.dcerpc.v5.srvs``) is an independent NDR implementation of
the same IDL. It randomises referent ids and fills padding with junk, so the
comparison is on decoded values, never on bytes:

* ours encode -> impacket ``fromString`` -> values equal to ours;
* impacket ``getData`` -> ours decode -> values equal to what impacket was given.

impacket conventions met here: a ``[string] wchar_t*`` value is set and read
with its NUL included (``"name\\x00"``); a NULL pointer reads back as ``b""``;
ResumeHandle is a signed LONG.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("impacket")
from impacket.dcerpc.v5 import srvs
from impacket.dcerpc.v5.dtypes import NULL

from smbsessions import ndr
from smbsessions.levels import LEVELS, SessionInfo
from smbsessions.messages import DelRequest, EnumRequest, EnumResponse

ORACLE = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Responses carry the interesting structure: more examples, and lists biased long.
ORACLE_RESPONSES = settings(ORACLE, max_examples=60)

# Text with characters from every plane (astral ones become surrogate pairs on
# the wire) and embedded NULs; surrogate code points alone are excluded because
# impacket encodes with the strict UTF-16 codec.
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=24)
names = st.none() | text
u32s = st.integers(0, 0xFFFFFFFF)
sessions = st.builds(SessionInfo, names, names, u32s, u32s, u32s, u32s, names, names)
levels = st.sampled_from(sorted(LEVELS))


def _from_impacket_string(value: Any) -> str | None:
    if isinstance(value, bytes):  # impacket's NULL pointer
        assert value == b""
        return None
    assert value.endswith("\0")
    return str(value[:-1])


def _to_impacket_string(value: str | None) -> Any:
    return NULL if value is None else value + "\0"


def _signed(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


def _from_impacket_resume(value: Any) -> int | None:
    return None if isinstance(value, bytes) else int(value) & 0xFFFFFFFF


def _impacket_rows(level: int, container: Any) -> list[SessionInfo] | None:
    if isinstance(container, bytes):
        return None
    rows = []
    for item in container["Buffer"]:
        values: dict[str, Any] = {}
        for field in LEVELS[level]:
            raw = item[f"sesi{level}_{field.name}"]
            values[field.name] = _from_impacket_string(raw) if field.kind == "str" else int(raw)
        rows.append(SessionInfo(**values))
    assert container["EntriesRead"] == len(rows)
    return rows


def _impacket_response(response: EnumResponse) -> bytes:
    level = response.level
    message = srvs.NetrSessionEnumResponse()
    message["InfoStruct"]["Level"] = level
    message["InfoStruct"]["SessionInfo"]["tag"] = level
    arm = f"Level{level}"
    if response.entries is None:
        message["InfoStruct"]["SessionInfo"][arm] = NULL
    else:
        container = message["InfoStruct"]["SessionInfo"][arm]
        container["EntriesRead"] = len(response.entries)
        item_type = getattr(srvs, f"SESSION_INFO_{level}")
        for row in response.entries:
            item = item_type()
            for field in LEVELS[level]:
                value = getattr(row, field.name)
                key = f"sesi{level}_{field.name}"
                item[key] = _to_impacket_string(value) if field.kind == "str" else value
            container["Buffer"].append(item)
        if not response.entries:
            container["Buffer"] = NULL
    message["TotalEntries"] = response.total_entries
    message["ResumeHandle"] = NULL if response.resume_handle is None else _signed(response.resume_handle)
    message["ErrorCode"] = response.status
    return bytes(message.getData())


# --------------------------------------------------------------------------- responses


@ORACLE_RESPONSES
@given(level=levels, rows=st.integers(0, 50).flatmap(lambda n: st.lists(sessions, min_size=n, max_size=n)),
       total=u32s,
       resume=st.none() | u32s, status=u32s, null_container=st.booleans())
def test_our_response_decodes_in_impacket(
    level: int, rows: list[SessionInfo], total: int, resume: int | None, status: int,
    null_container: bool,
) -> None:
    entries = None if null_container else rows
    stub = ndr.encode_enum_response(EnumResponse(level, entries, total, resume, status))
    theirs = srvs.NetrSessionEnumResponse()
    theirs.fromString(stub)
    assert theirs["InfoStruct"]["Level"] == level
    assert theirs["InfoStruct"]["SessionInfo"]["tag"] == level
    decoded = _impacket_rows(level, theirs["InfoStruct"]["SessionInfo"][f"Level{level}"])
    assert decoded == (None if entries is None else [r.project(level) for r in rows])
    assert theirs["TotalEntries"] == total
    assert _from_impacket_resume(theirs["ResumeHandle"]) == resume
    assert theirs["ErrorCode"] == status


@ORACLE_RESPONSES
@given(level=levels, rows=st.integers(0, 50).flatmap(lambda n: st.lists(sessions, min_size=n, max_size=n)),
       total=u32s,
       resume=st.none() | u32s, status=u32s, null_container=st.booleans())
def test_impacket_response_decodes_in_ours(
    level: int, rows: list[SessionInfo], total: int, resume: int | None, status: int,
    null_container: bool,
) -> None:
    projected = None if null_container else [r.project(level) for r in rows]
    response = EnumResponse(level, projected, total, resume, status)
    assert ndr.decode_enum_response(_impacket_response(response)) == response


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_fifty_random_rows_both_ways(level: int) -> None:
    rng = random.Random(level)
    alphabet = "aZ09 .\\$_-é\u4e2d\U0001F600\U00010348\0"

    def name() -> str | None:
        return None if rng.random() < 0.1 else "".join(rng.choices(alphabet, k=rng.randrange(0, 30)))

    rows = [SessionInfo(name(), name(), *(rng.getrandbits(32) for _ in range(4)), name(), name())
            for _ in range(50)]
    response = EnumResponse(level, [r.project(level) for r in rows], 50, 7, 0)
    assert ndr.decode_enum_response(_impacket_response(response)) == response
    theirs = srvs.NetrSessionEnumResponse()
    theirs.fromString(ndr.encode_enum_response(response))
    assert _impacket_rows(level, theirs["InfoStruct"]["SessionInfo"][f"Level{level}"]) == response.entries


def test_impacket_sample_with_astral_and_null_strings() -> None:
    rows = [SessionInfo("\\\\[::1]", "\U0001F600é", 1, 2, 3, 2, None, "tcp"),
            SessionInfo(None, "", 0, 0xFFFFFFFF, 0, 0, "x", None)]
    for level in LEVELS:
        response = EnumResponse(level, [r.project(level) for r in rows], 2, 0x80000000, 234)
        assert ndr.decode_enum_response(_impacket_response(response)) == response


# --------------------------------------------------------------------------- requests


@ORACLE
@given(level=levels, server=names, client=names, user=names, prefmaxlen=u32s,
       resume=st.none() | u32s, container=st.booleans())
def test_our_request_decodes_in_impacket(
    level: int, server: str | None, client: str | None, user: str | None,
    prefmaxlen: int, resume: int | None, container: bool,
) -> None:
    stub = ndr.encode_enum_request(EnumRequest(level, server, client, user, prefmaxlen, resume, container))
    theirs = srvs.NetrSessionEnum()
    theirs.fromString(stub)
    assert _from_impacket_string(theirs["ServerName"]) == server
    assert _from_impacket_string(theirs["ClientName"]) == client
    assert _from_impacket_string(theirs["UserName"]) == user
    assert theirs["InfoStruct"]["Level"] == level
    assert theirs["InfoStruct"]["SessionInfo"]["tag"] == level
    arm = theirs["InfoStruct"]["SessionInfo"][f"Level{level}"]
    if container:
        assert arm["EntriesRead"] == 0
        assert arm["Buffer"] == b""  # NULL
    else:
        assert arm == b""
    assert theirs["PreferedMaximumLength"] == prefmaxlen
    assert _from_impacket_resume(theirs["ResumeHandle"]) == resume


@ORACLE
@given(level=levels, server=names, client=names, user=names, prefmaxlen=u32s,
       resume=st.none() | u32s)
def test_impacket_request_decodes_in_ours(
    level: int, server: str | None, client: str | None, user: str | None,
    prefmaxlen: int, resume: int | None,
) -> None:
    theirs = srvs.NetrSessionEnum()
    theirs["ServerName"] = _to_impacket_string(server)
    theirs["ClientName"] = _to_impacket_string(client)
    theirs["UserName"] = _to_impacket_string(user)
    theirs["InfoStruct"]["Level"] = level
    theirs["InfoStruct"]["SessionInfo"]["tag"] = level
    theirs["InfoStruct"]["SessionInfo"][f"Level{level}"]["Buffer"] = NULL
    theirs["PreferedMaximumLength"] = prefmaxlen
    theirs["ResumeHandle"] = NULL if resume is None else _signed(resume)
    decoded = ndr.decode_enum_request(bytes(theirs.getData()))
    assert decoded == EnumRequest(level, server, client, user, prefmaxlen, resume, True)


@ORACLE
@given(server=names, client=names, user=names)
def test_del_request_both_ways(server: str | None, client: str | None, user: str | None) -> None:
    theirs = srvs.NetrSessionDel()
    theirs.fromString(ndr.encode_del_request(DelRequest(server, client, user)))
    assert [_from_impacket_string(theirs[k]) for k in ("ServerName", "ClientName", "UserName")] == [
        server, client, user,
    ]
    built = srvs.NetrSessionDel()
    built["ServerName"] = _to_impacket_string(server)
    built["ClientName"] = _to_impacket_string(client)
    built["UserName"] = _to_impacket_string(user)
    assert ndr.decode_del_request(bytes(built.getData())) == DelRequest(server, client, user)


@ORACLE
@given(status=u32s)
def test_del_response_both_ways(status: int) -> None:
    theirs = srvs.NetrSessionDelResponse()
    theirs.fromString(ndr.encode_del_response(status))
    assert theirs["ErrorCode"] == status
    built = srvs.NetrSessionDelResponse()
    built["ErrorCode"] = status
    assert ndr.decode_del_response(bytes(built.getData())) == status
