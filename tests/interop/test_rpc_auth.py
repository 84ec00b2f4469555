"""DCE/RPC-level authentication on \\PIPE\\srvsvc, through clients we did not write, and our client's
``--rpc-auth`` against our server and against Samba.

* impacket (``dce.set_auth_level``) at CONNECT, PKT_INTEGRITY and PKT_PRIVACY enumerates and deletes
  sessions exactly as without RPC-level auth;
* smbtorture's rpc.srvsvc with ``[sign]`` / ``[seal]`` bindings (SPNEGO by default, raw NTLM with
  ``ntlm``), and rpcclient with the same bindings;
* a tampered verifier is refused (nca_s_fault_sec_pkg_error), an unknown auth type gets bind_nak
  reason 8;
* ``smbsessions enum --rpc-auth`` against our server and Samba.
"""

from __future__ import annotations

import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smbsessions import dcerpc
from smbsessions.auth import Credentials
from smbsessions.client import SessionClient
from smbsessions.dcerpc import NDR20, SRVSVC, AuthType, Bind, ContextElement, PType, parse_pdu
from smbsessions.messages import EnumRequest
from smbsessions.ndr import encode_enum_request
from smbsessions.rpc_auth import RpcAuthLevel
from smbsessions.status import RpcFaultError, RpcFaultStatus
from smbsessions.transport import SmbPipe

from ..peers.samba import SambaServer
from .test_server_srvsvc import ACCOUNTS, SHARE_NAMES, SMBTORTURE, Running, needs_rpcclient, start_server

ALICE = Credentials("alice", password=ACCOUNTS["alice"][0])
BOB = Credentials("bob", password=ACCOUNTS["bob"][0])


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = start_server(tmp_path_factory.mktemp("rpcauth"))
    try:
        yield running
    finally:
        running.server.stop()


def _impacket(srv: Running, level: int | None) -> Any:
    from impacket.dcerpc.v5 import srvs, transport

    rpc = transport.SMBTransport("127.0.0.1", dstport=srv.port, filename=r"\srvsvc", username="alice",
                                 password=ACCOUNTS["alice"][0])
    dce = rpc.get_dce_rpc()
    if level is not None:
        dce.set_credentials("alice", ACCOUNTS["alice"][0])
        dce.set_auth_level(level)
    dce.connect()
    dce.bind(srvs.MSRPC_UUID_SRVS)
    return dce


def _live_users(srv: Running) -> list[str]:
    return sorted(info.username or "" for key, info in srv.server.snapshot() if key > 0)


def _wait_users(srv: Running, expected: list[str]) -> list[str]:
    deadline = time.monotonic() + 5
    while _live_users(srv) != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return _live_users(srv)


IMPACKET_LEVELS = [None, 2, 4, 5, 6]  # none, CONNECT, PKT (impacket then signs nothing), INTEGRITY, PRIVACY


def test_impacket_enum_and_del_behave_the_same_with_and_without_rpc_auth(srv: Running) -> None:
    from impacket.dcerpc.v5 import srvs

    outcomes = []
    for level in IMPACKET_LEVELS:
        with SessionClient("127.0.0.1", srv.port, credentials=BOB) as bob:
            assert bob.dialect
            dce = _impacket(srv, level)
            try:
                answer = srvs.hNetrSessionEnum(dce, "\0", "\0", 502)
                rows = answer["InfoStruct"]["SessionInfo"]["Level502"]["Buffer"]
                users = sorted(row["sesi502_username"][:-1] for row in rows)
                code = srvs.hNetrSessionDel(dce, "\0", "bob\0")["ErrorCode"]
            finally:
                dce.disconnect()
        remaining = _wait_users(srv, [])
        outcomes.append((users, code, remaining))
    assert outcomes == [(["alice", "bob"], 0, [])] * len(IMPACKET_LEVELS)


@pytest.mark.parametrize("level", [RpcAuthLevel.CONNECT, RpcAuthLevel.INTEGRITY, RpcAuthLevel.PRIVACY])
def test_our_client_with_rpc_auth_enumerates_and_deletes(srv: Running, level: RpcAuthLevel) -> None:
    with SessionClient("127.0.0.1", srv.port, credentials=BOB), \
            SessionClient("127.0.0.1", srv.port, credentials=ALICE, rpc_auth=level) as alice:
        sessions = list(alice.enum(502))
        assert sorted(s.user_name or "" for s in sessions) == ["alice", "bob"]
        alice.delete(user="bob")
        assert _wait_users(srv, ["alice"]) == ["alice"]
        assert [s.user_name for s in alice.enum(10)] == ["alice"]


def test_a_tampered_verifier_is_refused(srv: Running) -> None:
    with SessionClient("127.0.0.1", srv.port, credentials=ALICE, rpc_auth="integrity") as client:
        pipe = client._pipe
        assert pipe is not None
        (request,) = client._rpc.request(12, encode_enum_request(EnumRequest(0)))
        tampered = bytearray(request)
        tampered[-3] ^= 0x10  # inside the signature
        pdu = parse_pdu(pipe.transceive(bytes(tampered), 4280))
        assert pdu.ptype == PType.FAULT
        assert dcerpc.decode_fault(pdu).status == RpcFaultStatus.nca_s_fault_sec_pkg_error
        with pytest.raises(RpcFaultError) as error:
            client.enum(0)
        assert error.value.code == RpcFaultStatus.rpc_s_access_denied


@pytest.mark.parametrize("auth_type", [AuthType.GSS_KERBEROS, AuthType.NETLOGON, 0x7E])
def test_unknown_auth_types_get_bind_nak_reason_8(srv: Running, auth_type: int) -> None:
    body = dcerpc.encode_bind(Bind(4280, 4280, 0, (ContextElement(0, SRVSVC, (NDR20,)),)))
    token = b"\x60\x82\x00\x10" + b"\0" * 16
    trailer = struct.pack("<BBBBI", auth_type, 5, 0, 0, 1) + token
    raw = struct.pack("<BBBBIHHI", 5, 0, 11, 3, 0x10, 16 + len(body) + len(trailer), len(token), 1)
    pipe = SmbPipe.open("127.0.0.1", srv.port, credentials=ALICE, timeout=10)
    try:
        reply = pipe.transceive(raw + body + trailer, 4280)
    finally:
        pipe.close()
    assert parse_pdu(reply).ptype == PType.BIND_NAK
    assert struct.unpack_from("<H", reply, 16)[0] == 8


BINDINGS = ["smb2,sign", "smb2,seal", "smb2,sign,ntlm", "smb2,seal,ntlm", "smb2,connect,ntlm"]


@pytest.mark.skipif(SMBTORTURE is None, reason="smbtorture not installed (samba-testsuite)")
@pytest.mark.parametrize("binding", BINDINGS)
@pytest.mark.parametrize("test", ["NetSessEnum", "NetShareEnumAll", "NetSrvGetInfo", "NetShareGetInfo"])
def test_smbtorture_with_rpc_auth(srv: Running, binding: str, test: str) -> None:
    assert SMBTORTURE
    name = f"srvsvc (admin access).{test}"
    result = srv.run([SMBTORTURE, "-s", str(srv.conf), f"ncacn_np:127.0.0.1[{binding}]",
                      f"--option=smb ports={srv.port}", "-U", "alice%" + ACCOUNTS["alice"][0],
                      f"rpc.srvsvc.{name}"], None)
    assert f"success: {name}" in result.stdout, result.stdout + result.stderr


@needs_rpcclient
@pytest.mark.parametrize("binding", ["sign", "seal"])
def test_rpcclient_with_rpc_auth(srv: Running, binding: str) -> None:
    output = srv.run(
        [*_rpcclient_argv(srv), f"ncacn_np:127.0.0.1[{binding}]", "-c", "netshareenumall 502; srvinfo"],
        ACCOUNTS["alice"][0]).stdout
    assert output.count("netname: ") == 5 and "0x80000003" in output, output
    assert "FileSrv-h5" in output


def _rpcclient_argv(srv: Running) -> list[str]:
    from .test_server_srvsvc import RPCCLIENT

    assert RPCCLIENT
    return [RPCCLIENT, "-s", str(srv.conf), "-p", str(srv.port), "-U", "alice"]


# --------------------------------------------------------------------------- Samba


@pytest.mark.parametrize("level", [RpcAuthLevel.INTEGRITY, RpcAuthLevel.PRIVACY])
def test_our_client_with_rpc_auth_against_samba(samba: SambaServer, level: RpcAuthLevel) -> None:
    credentials = Credentials(samba.admin.name, password=samba.admin.password)
    with SessionClient(samba.host, samba.port, credentials=credentials, rpc_auth=level) as client:
        sessions = list(client.enum(1))
    assert samba.admin.name in {s.user_name for s in sessions}


# --------------------------------------------------------------------------- aiosmb


@pytest.mark.parametrize("level", [None, 2, 5, 6])  # none, CONNECT, PKT_INTEGRITY, PKT_PRIVACY
def test_aiosmb_with_force_rpc_auth_lists_sessions_and_shares(srv: Running, level: int | None) -> None:
    pytest.importorskip("aiosmb")
    import asyncio

    from aiosmb.commons.connection.factory import SMBConnectionFactory  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from aiosmb.commons.interfaces.machine import SMBMachine  # type: ignore[import-untyped,import-not-found,unused-ignore]

    async def run() -> tuple[list[tuple[str, str]], list[tuple[str, int]]]:
        factory = SMBConnectionFactory.from_url(
            f"smb2+ntlm-password://alice:{ACCOUNTS['alice'][0]}@127.0.0.1:{srv.port}")
        connection = factory.get_connection()
        async with connection:
            _, error = await connection.login()
            assert error is None
            machine = SMBMachine(connection, force_rpc_auth=level)
            sessions = []
            async for session, error in machine.list_sessions(level=10):
                assert error is None
                sessions.append((session.username, session.ip_addr))
            shares = []
            async for share, error in machine.list_shares():
                assert error is None
                shares.append((share.name, share.type))
            return sessions, shares

    sessions, shares = asyncio.run(asyncio.wait_for(run(), 60))
    assert sessions == [("alice", "127.0.0.1")]
    assert shares[0] == ("IPC$", 0x80000003) and [name for name, _ in shares] == SHARE_NAMES


# --------------------------------------------------------------------------- the command line


@pytest.mark.parametrize("level", ["integrity", "privacy"])
def test_cli_enum_with_rpc_auth(srv: Running, level: str) -> None:
    import json
    import shutil
    import sys

    command = shutil.which("smbsessions", path=str(Path(sys.executable).parent))
    assert command
    env = {"SMBSESSIONS_PASSWORD": ACCOUNTS["alice"][0], "PATH": "/usr/bin:/bin"}
    result = subprocess.run([command, "enum", "127.0.0.1", "--port", str(srv.port), "-U", "alice",
                             "--rpc-auth", level, "--level", "502", "--format", "json"],
                            capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert [row["user_name"] for row in json.loads(result.stdout)] == ["alice"]
    bad = subprocess.run([command, "enum", "127.0.0.1", "--rpc-auth", "loud"], capture_output=True,
                         text=True, env=env, timeout=60, check=False)
    assert bad.returncode == 2 and "--rpc-auth" in bad.stderr


@pytest.mark.parametrize("level", [4, 5, 6])  # PKT, PKT_INTEGRITY, PKT_PRIVACY
def test_impacket_with_rpc_auth_gets_the_same_answer_from_samba_and_ours(
    srv: Running, samba: SambaServer, level: int
) -> None:
    """Samba is the reference for what RPC-level auth looks like from impacket's side.

    (At CONNECT Samba refuses srvsvc calls: its "allow dcerpc auth level connect" defaults to no.
    Windows allows CONNECT; so does our server.)
    """
    from impacket.dcerpc.v5 import srvs, transport

    def statuses(host: str, port: int, user: str, password: str) -> list[int]:
        rpc = transport.SMBTransport(host, dstport=port, filename=r"\srvsvc", username=user, password=password)
        dce = rpc.get_dce_rpc()
        dce.set_credentials(user, password)
        dce.set_auth_level(level)
        dce.connect()
        try:
            dce.bind(srvs.MSRPC_UUID_SRVS)
            enum = srvs.hNetrSessionEnum(dce, "\0", "\0", 1)
            shares = srvs.hNetrShareEnum(dce, 1)
            return [enum["ErrorCode"], int(enum["TotalEntries"] >= 1), shares["ErrorCode"]]
        finally:
            dce.disconnect()

    theirs = statuses(samba.host, samba.port, samba.admin.name, samba.admin.password)
    ours = statuses("127.0.0.1", srv.port, "alice", ACCOUNTS["alice"][0])
    assert theirs == ours == [0, 1, 0]


@pytest.mark.parametrize(("smb_user", "rpc_user", "status"), [("bob", "alice", 0), ("alice", "bob", 5)])
def test_the_rpc_identity_is_the_caller_not_the_smb_session(
    srv: Running, smb_user: str, rpc_user: str, status: int
) -> None:
    from impacket.dcerpc.v5 import srvs, transport

    rpc = transport.SMBTransport("127.0.0.1", dstport=srv.port, filename=r"\srvsvc", username=smb_user,
                                 password=ACCOUNTS[smb_user][0])
    dce = rpc.get_dce_rpc()
    dce.set_credentials(rpc_user, ACCOUNTS[rpc_user][0])
    dce.set_auth_level(5)
    dce.connect()
    try:
        dce.bind(srvs.MSRPC_UUID_SRVS)
        request = srvs.NetrSessionEnum()
        request["ServerName"] = "\0"
        request["ClientName"] = "\0"
        request["UserName"] = "\0"
        request["InfoStruct"]["Level"] = 502
        request["InfoStruct"]["SessionInfo"]["tag"] = 502
        request["InfoStruct"]["SessionInfo"]["Level502"]["Buffer"] = srvs.NULL
        request["PreferedMaximumLength"] = 0xFFFFFFFF
        request["ResumeHandle"] = srvs.NULL
        answer = dce.request(request, checkError=False)
        assert answer["ErrorCode"] == status
    finally:
        dce.disconnect()


# --------------------------------------------------------------------------- Samba's Python bindings

_SAMBA_PY_SCRIPT = r"""
import json, sys
from samba import credentials, param
from samba.dcerpc import srvsvc

args = json.load(sys.stdin)
lp = param.LoadParm()
lp.load(args["conf"])
lp.set("smb ports", str(args["port"]))
creds = credentials.Credentials()
creds.guess(lp)
creds.set_username(args["user"])
creds.set_password(args["password"])
conn = srvsvc.srvsvc("ncacn_np:127.0.0.1[%s]" % args["binding"], lp, creds)
out = {"shares": {}, "info": {}}
for level in (0, 1, 2, 501, 502):
    ctr = srvsvc.NetShareInfoCtr()
    ctr.level = level
    ctr.ctr = getattr(srvsvc, "NetShareCtr%d" % level)()
    ctr_out, total, resume = conn.NetShareEnumAll("\\\\127.0.0.1", ctr, 0xFFFFFFFF, 0)
    out["shares"][str(level)] = [
        [entry.name, getattr(entry, "type", None), getattr(entry, "comment", None), getattr(entry, "path", None)]
        for entry in ctr_out.ctr.array]
for level in (100, 101, 102):
    info = conn.NetSrvGetInfo("\\\\127.0.0.1", level)
    out["info"][str(level)] = [info.platform_id, info.server_name, getattr(info, "version_major", None),
                               getattr(info, "server_type", None), getattr(info, "comment", None)]
share = conn.NetShareGetInfo("\\\\127.0.0.1", "admin$", 502)
out["admin"] = [share.name, share.type, share.path]
tod = conn.NetRemoteTOD("\\\\127.0.0.1")
out["tod_year"] = tod.year
print(json.dumps(out))
"""


@pytest.mark.parametrize("binding", ["smb2", "smb2,sign", "smb2,seal"])
def test_samba_python_bindings_read_every_level(srv: Running, binding: str) -> None:
    import json

    from ..peers.samba_py import SYSTEM_PYTHON, require_samba_py
    from .test_server_srvsvc import COMMENT, SERVER_NAME

    require_samba_py()
    request = {"conf": str(srv.conf), "port": srv.port, "user": "alice", "password": ACCOUNTS["alice"][0],
               "binding": binding}
    result = subprocess.run([SYSTEM_PYTHON, "-c", _SAMBA_PY_SCRIPT], input=json.dumps(request),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    for level, rows in out["shares"].items():
        assert [row[0] for row in rows] == SHARE_NAMES, level
        if level != "0":
            assert rows[0][1:3] == [0x80000003, "Remote IPC"]
    assert out["shares"]["502"][1][3] == "C:\\Windows"
    assert out["info"] == {
        "100": [500, SERVER_NAME, None, None, None],
        "101": [500, SERVER_NAME, 10, 0x9003, COMMENT],
        "102": [500, SERVER_NAME, 10, 0x9003, COMMENT],
    }
    assert out["admin"] == ["ADMIN$", 0x80000000, "C:\\Windows"]
    assert out["tod_year"] >= 2024


def test_our_client_names_the_refusal_of_a_server_without_rpc_auth(srv: Running) -> None:
    # Our own server refuses an unknown auth type; the client's error names the reason.
    from smbsessions.dcerpc import RpcClientConnection
    from smbsessions.status import ProtocolError

    class Kerberos:
        auth_type: int = AuthType.GSS_KERBEROS

        def step(self, token: bytes | None) -> bytes | None:
            return b"\x60\x10" + b"\0" * 16

        def packet_security(self) -> Any:
            raise AssertionError("never reached")

    rpc = RpcClientConnection(auth=Kerberos(), auth_level=5)
    pipe = SmbPipe.open("127.0.0.1", srv.port, credentials=ALICE, timeout=10)
    try:
        with pytest.raises(ProtocolError, match="bind_nak reason 8, authentication_type_not_recognized"):
            rpc.receive_bind_ack(pipe.transceive(rpc.bind(), 4280))
    finally:
        pipe.close()
