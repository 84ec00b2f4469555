"""Our server (``smbsessions serve`` internals, started in-process) against peers we did not write.

* Samba's rpcclient: ``netsessenum`` at every level (its ``-d10`` decode parsed)
  and ``netsessdel`` (the held client really goes away).
* impacket: ``srvs.hNetrSessionEnum`` / ``hNetrSessionDel`` over its own
  DCE/RPC-over-SMB transport; opnums 15/16/21 from the configuration; an unknown opnum.
* Samba's Python bindings: every level, qualifiers.
* Our own SessionClient and the ``smbsessions`` CLI (``enum``, ``delete``, ``serve``).
* 10,000 decoys (``--sessions-file`` format) through every peer; paged with a
  small PreferedMaximumLength through the peers that can page.
* Live session fields (cname, user, opens, time, SESS_GUEST, IPv6).
* The essential hostile inputs of tools/hostile_server.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from impacket.dcerpc.v5 import srvs
from impacket.dcerpc.v5.dtypes import NULL
from impacket.dcerpc.v5.rpcrt import DCERPCException

from smbsessions.auth import Credentials
from smbsessions.client import SessionClient
from smbsessions.levels import LEVELS, SessionInfo, UserFlags
from smbsessions.status import NetApiStatus as S
from smbsessions.status import RpcFaultError, RpcFaultStatus
from tools import hostile_server

from ..peers.holders import ANONYMOUS, SessionHolder
from ..peers.ourserver import (
    ADMIN,
    USER,
    ImpacketPeer,
    OurServer,
    OursPeer,
    RpcclientPeer,
    SambaPyPeer,
    cli,
    decoy_sessions,
    load_decoys,
    parse_netsessenum_debug,
    running_server,
    write_sessions_file,
)
from ..peers.samba_py import require_samba_py

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
LEVEL_LIST = [0, 1, 2, 10, 502]
BIG = 10_000


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[OurServer]:
    with running_server(tmp_path) as server:
        yield server


@pytest.fixture
def held(srv: OurServer) -> Iterator[SessionHolder]:
    """alice from 127.0.0.2 with the srvsvc pipe open, bob from 127.0.0.3, a null session from 127.0.0.4."""
    holder = SessionHolder(srv.host, srv.port, 3, credentials=[ADMIN, USER, ANONYMOUS], workers=1)
    holder.open()
    try:
        conn = holder.connection(0)
        conn.openFile(conn.connectTree("IPC$"), "srvsvc", desiredAccess=0x12019F)
        yield holder
    finally:
        holder.close()


def by_client(entries: list[SessionInfo]) -> dict[str | None, SessionInfo]:
    return {e.cname: e for e in entries}


def assert_same_session(got: SessionInfo, want: SessionInfo, level: int) -> None:
    """Equal at ``level``, allowing time/idle_time to have ticked on since the snapshot."""
    expected = want.project(level)
    for name in ("time", "idle_time"):
        if getattr(expected, name) is not None:
            # Whole seconds, each computed at its own instant: -1 when the peer's answer was
            # taken just before a second boundary the snapshot crossed.
            assert -1 <= getattr(got, name) - getattr(expected, name) <= 5, (got, expected)
    assert got._replace(time=None, idle_time=None) == expected._replace(time=None, idle_time=None)


# ---------------------------------------------------------------- rpcclient


@pytest.mark.parametrize("level", LEVEL_LIST)
def test_rpcclient_netsessenum_decodes_every_level(srv: OurServer, held: SessionHolder, level: int) -> None:
    result = srv.rpcclient(f"netsessenum \\\\\\\\127.0.0.2 alice {level}", *ADMIN)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert "Received 1 entries." in result.stdout
    decoded = parse_netsessenum_debug(result.stderr)
    assert (decoded.status, decoded.total) == (S.NERR_Success, 1)
    want = by_client(srv.live())["\\\\127.0.0.2"]
    assert len(decoded.entries) == 1
    assert_same_session(decoded.entries[0], want, level)
    if level in (1, 2, 502):
        assert decoded.entries[0].num_opens == 1


def test_rpcclient_netsessdel_disconnects_the_held_client(srv: OurServer, held: SessionHolder) -> None:
    peer = RpcclientPeer(srv, *ADMIN)
    result = peer.delete("\\\\127.0.0.3")
    assert result.returncode == 0 and "result was" not in result.stdout, result.stdout
    assert held.alive_all() == [True, False, True]
    assert "\\\\127.0.0.3" not in by_client(srv.wait_live(2))


# ---------------------------------------------------------------- impacket srvs helpers


@pytest.mark.parametrize("level", LEVEL_LIST)
def test_impacket_hnetrsessionenum_every_level(srv: OurServer, held: SessionHolder, level: int) -> None:
    peer = ImpacketPeer(srv, *ADMIN)
    try:
        answer = srvs.hNetrSessionEnum(peer.dce, NULL, NULL, level)
        buffer = answer["InfoStruct"]["SessionInfo"][f"Level{level}"]["Buffer"]
        clients = [str(item[f"sesi{level}_cname"]).rstrip("\x00") for item in buffer]
        assert answer["TotalEntries"] == 4 == len(clients)
        assert clients == ["\\\\127.0.0.2", "\\\\127.0.0.3", "\\\\127.0.0.4", "\\\\127.0.0.1"]
        if "username" in {f.name for f in LEVELS[level]}:
            users = [str(item[f"sesi{level}_username"]).rstrip("\x00") for item in buffer]
            assert users == ["alice", "bob", "", "alice"]
    finally:
        peer.close()


def test_impacket_hnetrsessiondel_disconnects_and_reports_errors(srv: OurServer, held: SessionHolder) -> None:
    peer = ImpacketPeer(srv, *ADMIN)
    try:
        assert srvs.hNetrSessionDel(peer.dce, "\\\\127.0.0.4\x00", NULL)["ErrorCode"] == 0
        assert held.alive_all() == [True, True, False]
        # impacket names neither 2312 nor 5 correctly: both surface as DCERPCException.
        with pytest.raises(DCERPCException) as missing:
            srvs.hNetrSessionDel(peer.dce, "\\\\127.0.0.4\x00", NULL)
        assert missing.value.get_error_code() == S.NERR_ClientNameNotFound
    finally:
        peer.close()
    bob = ImpacketPeer(srv, *USER)
    try:
        with pytest.raises(DCERPCException) as denied:
            srvs.hNetrSessionDel(bob.dce, "\\\\127.0.0.2\x00", NULL)
        assert denied.value.get_error_code() == S.ERROR_ACCESS_DENIED
        assert bob.delete("\\\\127.0.0.2", None) == S.ERROR_ACCESS_DENIED  # checkError=False
    finally:
        bob.close()
    assert held.alive_all() == [True, True, False]


def test_unknown_opnum_faults_with_op_rng_error(srv: OurServer) -> None:
    peer = ImpacketPeer(srv, *ADMIN)
    try:
        for opnum in (0, 11, 14, 99, 0xFFFF):
            peer.dce.call(opnum, b"")
            with pytest.raises(DCERPCException) as fault:
                peer.dce.recv()
            # impacket keeps only the fault's name.
            assert "nca_s_op_rng_error" in str(fault.value)
        # The association survives the faults.
        assert peer.enum(0).status == S.NERR_Success
    finally:
        peer.close()
    ours = OursPeer(srv, *ADMIN)
    try:
        with pytest.raises(RpcFaultError) as fault:
            ours.client._call(99, b"")
        assert fault.value.code == RpcFaultStatus.nca_s_op_rng_error == 0x1C010002
    finally:
        ours.close()


def test_share_and_server_info_opnums_answer_from_the_configuration(srv: OurServer) -> None:
    # Opnums 15/16/21 in depth (every level, rpcclient, smbtorture): test_server_srvsvc.py.
    peer = ImpacketPeer(srv, *ADMIN)
    try:
        shares = srvs.hNetrShareEnum(peer.dce, 1)["InfoStruct"]["ShareInfo"]["Level1"]["Buffer"]
        assert [(str(s["shi1_netname"]).rstrip("\x00"), s["shi1_type"]) for s in shares] == [
            ("IPC$", 0x80000003), ("share", 0)]
        info = srvs.hNetrShareGetInfo(peer.dce, "IPC$\x00", 1)["InfoStruct"]["ShareInfo1"]
        assert str(info["shi1_netname"]).rstrip("\x00") == "IPC$"
        # The configured name, whatever ServerName the client sent (NULL here).
        server = srvs.hNetrServerGetInfo(peer.dce, 101)["InfoStruct"]["ServerInfo101"]
        assert str(server["sv101_name"]).rstrip("\x00") == srv.server.identity.name
        assert server["sv101_platform_id"] == 500
        assert peer.enum(0).status == S.NERR_Success
    finally:
        peer.close()


# ---------------------------------------------------------------- Samba's Python bindings


@pytest.mark.parametrize("level", LEVEL_LIST)
def test_samba_py_every_level_with_and_without_qualifiers(
    srv: OurServer, held: SessionHolder, level: int
) -> None:
    require_samba_py()
    peer = SambaPyPeer(srv, *ADMIN, settle=lambda: srv.wait_live(3))
    everything = peer.enum(level, resume=None)
    assert everything.status == S.NERR_Success and everything.total == 4
    live = by_client(srv.live())
    for entry in everything.entries[:3]:
        assert_same_session(entry, live[entry.cname], level)
    qualified = peer.enum(level, "\\\\127.0.0.3", "bob")
    assert [e.cname for e in qualified.entries] == ["\\\\127.0.0.3"]
    assert_same_session(qualified.entries[0], live["\\\\127.0.0.3"], level)


# ---------------------------------------------------------------- our client and CLI


def test_our_client_enum_get_info_and_delete(srv: OurServer, held: SessionHolder) -> None:
    credentials = Credentials(username=ADMIN[0], password=ADMIN[1])
    with SessionClient(srv.host, srv.port, credentials=credentials) as client:
        result = client.enum()
        sessions = list(result)
        assert result.level == 502 and result.attempts == []
        assert [s.client_name for s in sessions] == [
            "\\\\127.0.0.2", "\\\\127.0.0.3", "\\\\127.0.0.4", "\\\\127.0.0.1"]
        session = client.get_info("127.0.0.3", "bob", 10)
        assert (session.client_name, session.user_name) == ("\\\\127.0.0.3", "bob")
        client.delete(client="127.0.0.3")
    assert held.alive_all() == [True, False, True]
    bob = Credentials(username=USER[0], password=USER[1])
    with SessionClient(srv.host, srv.port, credentials=bob) as client:
        from smbsessions.status import NetApiError

        with pytest.raises(NetApiError) as denied:
            list(client.enum())
        assert denied.value.status == S.ERROR_ACCESS_DENIED


def test_cli_enum_json_and_delete(srv: OurServer, held: SessionHolder) -> None:
    target = [f"{srv.host}", "--port", str(srv.port), "-U", ADMIN[0]]
    listed = cli("enum", *target, "--format", "json", "--max-length", "200", password=ADMIN[1])
    assert listed.returncode == 0, listed.stderr
    records = json.loads(listed.stdout)
    assert [r["client_name"] for r in records][:3] == ["\\\\127.0.0.2", "\\\\127.0.0.3", "\\\\127.0.0.4"]
    assert records[0]["num_opens"] == 1 and records[2]["user_flags"] & UserFlags.SESS_GUEST
    deleted = cli("delete", *target, "--user", "bob", "--yes", password=ADMIN[1])
    assert deleted.returncode == 0, deleted.stderr
    assert held.alive_all() == [True, False, True]
    denied = cli("enum", f"{srv.host}", "--port", str(srv.port), "-U", USER[0], password=USER[1])
    assert denied.returncode == 3, denied.stderr  # exit code 3: denied


# ---------------------------------------------------------------- live session fields


def test_live_session_fields(srv: OurServer, held: SessionHolder) -> None:
    peer = OursPeer(srv, *ADMIN)
    try:
        first = by_client(peer.enum(502).entries)
        time.sleep(1.2)
        second = by_client(peer.enum(502).entries)
    finally:
        peer.close()
    alice, bob, anonymous = (second[f"\\\\127.0.0.{i}"] for i in (2, 3, 4))
    assert (alice.username, bob.username, anonymous.username) == ("alice", "bob", "")
    assert alice.num_opens == 1 and bob.num_opens == 0
    assert anonymous.user_flags == UserFlags.SESS_GUEST and alice.user_flags == bob.user_flags == 0
    assert alice.time > first["\\\\127.0.0.2"].time  # time keeps counting
    assert alice.idle_time >= 1  # held sessions send nothing while waiting
    # sesi502_cltype_name is the dialect each client really negotiated.
    labels = {0x0202: "SMB 2.0.2", 0x0210: "SMB 2.1", 0x0300: "SMB 3.0", 0x0302: "SMB 3.0.2", 0x0311: "SMB 3.1.1"}
    assert [e.cltype_name for e in (alice, bob, anonymous)] == [labels[int(s.dialect)] for s in held.sessions]
    assert alice.transport == f"tcp:127.0.0.1:{srv.port}"


def test_ipv6_client_is_bracketed(tmp_path: Path) -> None:
    with running_server(tmp_path, bind="::1") as srv, SessionHolder("::1", srv.port, 1, credentials=[USER]):
        peer = OursPeer(srv, *ADMIN)
        try:
            entries = peer.enum(502).entries
        finally:
            peer.close()
        assert [e.cname for e in entries] == ["\\\\[::1]", "\\\\[::1]"]
        assert entries[0].transport == f"tcp:[::1]:{srv.port}"
        impacket = ImpacketPeer(srv, *ADMIN)
        try:
            assert impacket.enum(10, "\\\\[::1]", "bob").status == S.NERR_Success
            assert impacket.enum(10, "\\\\::1", "bob").status == S.NERR_Success
        finally:
            impacket.close()


# ---------------------------------------------------------------- 10,000 decoys


@pytest.fixture(scope="module")
def big_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OurServer, list[str]]]:
    workdir = tmp_path_factory.mktemp("big")
    decoys = load_decoys(write_sessions_file(workdir / "sessions.json", decoy_sessions(BIG)))
    with running_server(workdir, decoys=decoys) as srv:
        yield srv, [str(d.cname) for d in decoys]


def test_10k_decoys_paged_through_our_client_each_once(big_world: tuple[OurServer, list[str]]) -> None:
    srv, names = big_world
    credentials = Credentials(username=ADMIN[0], password=ADMIN[1])
    with SessionClient(srv.host, srv.port, credentials=credentials) as client:
        got = [s.client_name for s in client.enum(502, max_length=4096)]
    assert got[1:] == names and got[0] == "\\\\127.0.0.1"


def test_10k_decoys_paged_through_impacket_each_once(big_world: tuple[OurServer, list[str]]) -> None:
    srv, names = big_world
    peer = ImpacketPeer(srv, *ADMIN)
    got: list[str | None] = []
    resume, pages = 0, 0
    try:
        for _ in range(BIG):
            pages += 1
            page = peer.enum(0, max_len=16384, resume=resume)
            got += [e.cname for e in page.entries]
            if page.status == S.NERR_Success:
                break
            assert page.status == S.ERROR_MORE_DATA and page.resume > resume
            resume = page.resume
    finally:
        peer.close()
    assert pages > 10
    assert got[1:] == names


def test_10k_decoys_in_one_reply_through_samba_py_and_rpcclient(big_world: tuple[OurServer, list[str]]) -> None:
    srv, names = big_world
    require_samba_py()
    # Neither can page (samba_py raises on WERR_MORE_DATA, rpcclient sends MAX): one
    # MAX_PREFERRED_LENGTH reply of many fragments, every entry exactly once.
    whole = SambaPyPeer(srv, *ADMIN, settle=lambda: srv.wait_live(0)).enum(502)
    assert whole.status == S.NERR_Success and [e.cname for e in whole.entries][1:] == names
    assert whole.entries[5].username == "decoy00004" and whole.entries[5].transport == "\\Device\\NetbiosSmb"
    srv.wait_live(0)
    result = srv.rpcclient("netsessenum", *ADMIN, timeout=120)
    decoded = parse_netsessenum_debug(result.stderr)
    assert decoded.status == S.NERR_Success and decoded.total == BIG + 1
    assert [e.cname for e in decoded.entries][1:] == names
    # A resume position through rpcclient: the rest of the unfiltered list.
    srv.wait_live(0)
    tail = parse_netsessenum_debug(
        srv.rpcclient("netsessenum \\\\\\\\10.0.39.15 decoy09999 0 9000", *ADMIN).stderr)
    assert [e.cname for e in tail.entries] == ["\\\\10.0.39.15"]


# ---------------------------------------------------------------- `smbsessions serve`


def test_serve_cli_with_a_sessions_file(tmp_path: Path) -> None:
    sessions = write_sessions_file(tmp_path / "s.json", decoy_sessions(50))
    accounts = tmp_path / "accounts"
    accounts.write_text(f"{ADMIN[0]}:{ADMIN[1]}:admin\n{USER[0]}:{USER[1]}\n")
    for port in range(4525, 4530):
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "smbsessions"), "serve", "--port", str(port),
             "--accounts-file", str(accounts), "--sessions-file", str(sessions),
             "--session-info", "authenticated", "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.startswith("listening on"):
            break
        proc.wait(10)
    else:
        pytest.fail("smbsessions serve could not listen on 4525-4529")
    try:
        credentials = Credentials(username=USER[0], password=USER[1])
        with SessionClient("127.0.0.1", port, credentials=credentials) as client:
            result = client.enum()  # bob: 502/2/1 denied, 10 allowed
            got = list(result)
        assert result.level == 10 and [lvl for lvl, _ in result.attempts] == [502]
        assert len(got) == 51 and got[1].user_name == "decoy00000"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        proc.stdout.close()
        assert proc.stderr is not None
        proc.stderr.close()


# ---------------------------------------------------------------- hostile input


HOSTILE = hostile_server


@pytest.mark.parametrize("case", HOSTILE.ESSENTIAL, ids=lambda c: c.name)
def test_hostile_input_gets_an_error_and_the_server_keeps_answering(
    srv: OurServer, held: SessionHolder, case: Callable[..., object]
) -> None:
    before = sorted((e.cname, e.username) for e in srv.live())
    outcome = HOSTILE.run_case(case, srv.host, srv.port, ADMIN)
    assert outcome.ok, outcome.detail
    assert held.alive_all() == [True, True, True]
    assert sorted((e.cname, e.username) for e in srv.wait_live(3)) == before
