"""The Samba peer fixture works: smbd, held sessions, and three independent clients.

impacket's srvs is the main client here; python3-samba and rpcclient must see
the same sessions. Expected values are Samba 4.17's measured behaviour
(docs/ARCHITECTURE.md, "Peers as measured").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from impacket.dcerpc.v5 import srvs
from impacket.dcerpc.v5.dtypes import NULL
from impacket.dcerpc.v5.rpcrt import DCERPCException

from ..peers.holders import SessionHolder
from ..peers.samba import (
    ALICE,
    BOB,
    SambaServer,
    parse_netsessenum_count,
    parse_rpcclient_result,
    rpcclient_arg,
)
from ..peers.samba_py import samba_py_session_enum

ERROR_ACCESS_DENIED = 5
ERROR_INVALID_LEVEL = 124
MAX_XMIT_FRAG = 4280  # what Samba negotiates with impacket's bind

HoldSessions = Callable[..., SessionHolder]
SrvsvcFactory = Callable[..., Any]


def _plain(value: Any) -> Any:
    return value.rstrip("\x00") if isinstance(value, str) else value


def session_enum(dce: Any, level: int) -> tuple[int, list[dict[str, Any]], int]:
    """NetrSessionEnum via impacket: (NET_API_STATUS, entries, TotalEntries).

    checkError=False because impacket turns status 5 into a bare
    DCERPCException('rpc_s_access_denied') without the decoded reply.
    """
    request = srvs.NetrSessionEnum()
    request["ServerName"] = NULL
    request["ClientName"] = NULL
    request["UserName"] = NULL
    request["InfoStruct"]["Level"] = level
    request["InfoStruct"]["SessionInfo"]["tag"] = level
    request["InfoStruct"]["SessionInfo"][f"Level{level}"]["Buffer"] = NULL
    request["PreferedMaximumLength"] = 0xFFFFFFFF
    request["ResumeHandle"] = NULL
    reply = dce.request(request, checkError=False)
    status = reply["ErrorCode"]
    if status != 0:
        return status, [], 0
    container = reply["InfoStruct"]["SessionInfo"][f"Level{level}"]
    entries = []
    for entry in container["Buffer"]:
        entries.append({key.split("_", 1)[1]: _plain(entry[key]) for key in entry.fields})
    return status, entries, reply["TotalEntries"]


def wait_for_enum_count(samba: SambaServer, expected: int, timeout: float = 10.0) -> int:
    """Poll rpcclient until it reports ``expected`` sessions (bounded); return the last count.

    Sessions of earlier tests disappear shortly after their TCP connection
    closes (their smbd child has to exit first), so exact counts need a wait.
    """
    deadline = time.monotonic() + timeout
    count = -1
    while time.monotonic() < deadline:
        result = samba.rpcclient("netsessenum", ALICE.name, ALICE.password)
        count = parse_netsessenum_count(result.stdout) or -1
        if count == expected:
            break
        time.sleep(0.1)
    return count


def test_admin_sees_held_sessions_with_open_files(
    samba: SambaServer, hold_sessions: HoldSessions, impacket_srvsvc: SrvsvcFactory
) -> None:
    held = hold_sessions(
        samba.host,
        samba.port,
        2,
        credentials=[(BOB.name, BOB.password)],
        open_files=2,
    )
    assert [s.source_ip for s in held.sessions] == ["127.0.0.2", "127.0.0.3"]

    dce = impacket_srvsvc(samba.host, samba.port, ALICE.name, ALICE.password)
    status, entries, total = session_enum(dce, 1)

    assert status == 0
    assert total == len(entries)
    by_client = {e["cname"]: e for e in entries}
    for source in ("127.0.0.2", "127.0.0.3"):
        assert by_client[source]["username"] == BOB.name
        assert by_client[source]["num_opens"] == 2
        assert by_client[source]["user_flags"] == 0
    # The caller's own session is listed too.
    assert by_client["127.0.0.1"]["username"] == ALICE.name


def test_plain_user_is_denied(samba: SambaServer, impacket_srvsvc: SrvsvcFactory) -> None:
    dce = impacket_srvsvc(samba.host, samba.port, BOB.name, BOB.password)

    status, entries, _ = session_enum(dce, 1)

    assert status == ERROR_ACCESS_DENIED
    assert entries == []
    # impacket's own helper reports the same reply as an RPC-level exception.
    with pytest.raises(DCERPCException, match="rpc_s_access_denied"):
        srvs.hNetrSessionEnum(dce, NULL, NULL, 1)


@pytest.mark.parametrize("level", [2, 10, 502])
def test_unsupported_levels_give_invalid_level(
    samba: SambaServer, impacket_srvsvc: SrvsvcFactory, level: int
) -> None:
    dce = impacket_srvsvc(samba.host, samba.port, ALICE.name, ALICE.password)

    status, _, _ = session_enum(dce, level)

    assert status == ERROR_INVALID_LEVEL


def test_sixty_sessions_arrive_in_several_fragments(
    samba: SambaServer, hold_sessions: HoldSessions, impacket_srvsvc: SrvsvcFactory
) -> None:
    held = hold_sessions(
        samba.host,
        samba.port,
        60,
        credentials=[(ALICE.name, ALICE.password), (BOB.name, BOB.password)],
    )
    dce = impacket_srvsvc(samba.host, samba.port, ALICE.name, ALICE.password)
    request = srvs.NetrSessionEnum()
    request["ServerName"] = NULL
    request["ClientName"] = NULL
    request["UserName"] = NULL
    request["InfoStruct"]["Level"] = 1
    request["InfoStruct"]["SessionInfo"]["tag"] = 1
    request["InfoStruct"]["SessionInfo"]["Level1"]["Buffer"] = NULL
    request["PreferedMaximumLength"] = 0xFFFFFFFF
    request["ResumeHandle"] = NULL

    dce.call(request.opnum, request)
    stub = dce.recv()  # reassembled from every fragment
    reply = srvs.NetrSessionEnumResponse(stub)

    # One fragment carries at most MAX_XMIT_FRAG bytes, headers included.
    assert len(stub) > MAX_XMIT_FRAG
    assert reply["ErrorCode"] == 0
    listed = {
        (e["sesi1_cname"].rstrip("\x00"), e["sesi1_username"].rstrip("\x00"))
        for e in reply["InfoStruct"]["SessionInfo"]["Level1"]["Buffer"]
    }
    expected = {(s.source_ip, s.user) for s in held.sessions}
    assert len(expected) == 60
    assert expected <= listed


def test_held_sessions_report_their_identity(samba: SambaServer, hold_sessions: HoldSessions) -> None:
    held = hold_sessions(
        samba.host,
        samba.port,
        3,
        calling_names="WS{i}",
        credentials=[(ALICE.name, ALICE.password), (BOB.name, BOB.password)],
    )
    anonymous = hold_sessions("::1", samba.port, 1, credentials=[("", "")])

    assert [(s.user, s.calling_name) for s in held.sessions] == [
        ("alice", "WS0"),
        ("bob", "WS1"),
        ("alice", "WS2"),
    ]
    assert anonymous.sessions[0].source_ip == "::1"
    assert anonymous.sessions[0].anonymous


def test_samba_py_sees_the_same_sessions(
    samba: SambaServer, hold_sessions: HoldSessions, impacket_srvsvc: SrvsvcFactory
) -> None:
    held = hold_sessions(
        samba.host,
        samba.port,
        3,
        calling_names="WS{i}",
        open_files=1,
        credentials=[(BOB.name, BOB.password)],
    )
    anonymous = hold_sessions("::1", samba.port, 1, credentials=[("", "")])

    result = samba_py_session_enum(
        samba.host,
        samba.port,
        ALICE.name,
        ALICE.password,
        1,
        conf=samba.client_conf,
    )
    dce = impacket_srvsvc(samba.host, samba.port, ALICE.name, ALICE.password)
    _, impacket_entries, _ = session_enum(dce, 1)

    assert result["werror"] == 0
    seen = {(e["client"], e["user"], e["num_open"], e["user_flags"]) for e in result["entries"]}
    # Samba reports the NetBIOS calling name, lower-cased, instead of the IP.
    for session in held.sessions:
        assert session.calling_name is not None
        assert (session.calling_name.lower(), "bob", 1, 0) in seen
    assert ("::1", "nobody", 0, 1) in seen  # anonymous: guest flag
    assert len(anonymous) == 1
    # Both decoders agree on the sessions present in both snapshots (the
    # caller's own session differs: each client made its own connection).
    impacket_seen = {(e["cname"], e["username"], e["num_opens"], e["user_flags"]) for e in impacket_entries}
    held_rows = {row for row in seen if row[0] in ("ws0", "ws1", "ws2", "::1")}
    assert held_rows <= impacket_seen


def test_samba_py_reports_werrors(samba: SambaServer) -> None:
    denied = samba_py_session_enum(
        samba.host,
        samba.port,
        BOB.name,
        BOB.password,
        1,
        conf=samba.client_conf,
    )
    bad_level = samba_py_session_enum(
        samba.host,
        samba.port,
        ALICE.name,
        ALICE.password,
        502,
        conf=samba.client_conf,
    )

    assert denied["werror"] == ERROR_ACCESS_DENIED
    assert bad_level["werror"] == ERROR_INVALID_LEVEL


def test_rpcclient_netsessenum_prints_the_count(samba: SambaServer, hold_sessions: HoldSessions) -> None:
    hold_sessions(samba.host, samba.port, 4, credentials=[(BOB.name, BOB.password)])

    # 4 held + rpcclient's own session.
    assert wait_for_enum_count(samba, 5) == 5
    denied = samba.rpcclient("netsessenum", BOB.name, BOB.password)
    assert denied.returncode != 0
    assert parse_rpcclient_result(denied.stdout) == "WERR_ACCESS_DENIED"


def test_session_del_cuts_off_exactly_the_matching_client(
    samba: SambaServer, hold_sessions: HoldSessions
) -> None:
    held = hold_sessions(samba.host, samba.port, 2, credentials=[(BOB.name, BOB.password)])
    victim = held.sessions[1]
    assert held.alive_all() == [True, True]

    unc = "\\\\" + victim.source_ip
    command = f"netsessdel {rpcclient_arg(unc)} {rpcclient_arg(BOB.name)}"
    result = samba.rpcclient(command, ALICE.name, ALICE.password)

    assert result.returncode == 0, result.stdout + result.stderr
    assert held.alive(0)
    assert not held.alive(1)
