"""Our server's srvsvc share, server-info and time-of-day calls, through clients we did not write.

Opnums 15 NetrShareEnum, 16 NetrShareGetInfo, 20 NetrShareCheck, 21 NetrServerGetInfo,
28 NetrRemoteTOD, 36 NetrShareEnumSticky: Samba's rpcclient (every level it can
print), smbtorture's rpc.srvsvc (admin and anonymous test cases), ``smbclient -L``
and impacket's srvs. Every answer comes at the level asked, or ERROR_INVALID_LEVEL.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from smbsessions.rules import SessionInfoPolicy
from smbsessions.server.shell import SessionServer, build_server
from smbsessions.server.srvsvc import srvsvc_factory
from smbsessions.server.types import PipeFactory, ServerControl

ACCOUNTS = {"alice": ("alicepw", True), "bob": ("bobpw", False)}
DECOY_SHARES = ["ADMIN$", "C$", "Finance:Team data", "lower case"]
SHARE_NAMES = ["IPC$", "ADMIN$", "C$", "Finance", "lower case"]
SERVER_NAME = "FileSrv-h5"
COMMENT = "Finance file server"
RPCCLIENT = shutil.which("rpcclient")
SMBCLIENT = shutil.which("smbclient")
SMBTORTURE = shutil.which("smbtorture")


@dataclass
class Running:
    server: SessionServer
    workdir: Path

    @property
    def port(self) -> int:
        return self.server.address[1]

    @property
    def conf(self) -> Path:
        conf = self.workdir / "client.conf"
        if not conf.exists():
            state = self.workdir / "state"
            state.mkdir(exist_ok=True)
            conf.write_text("[global]\n" + "".join(
                f"  {key} = {state}\n" for key in ("lock directory", "state directory", "cache directory",
                                                   "private dir", "pid directory", "ncalrpc dir")))
        return conf

    def run(self, argv: list[str], password: str | None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PASSWD")}
        if password is not None:
            env["PASSWD"] = password
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)

    def rpcclient(self, cmd: str, user: str = "alice", extra: tuple[str, ...] = ()) -> str:
        assert RPCCLIENT
        password = ACCOUNTS[user][0] if user else None
        who = ["-U", user] if user else ["-N", "-U", ""]
        result = self.run([RPCCLIENT, "-s", str(self.conf), "-p", str(self.port), *who, *extra, "127.0.0.1",
                           "-c", cmd], password)
        return result.stdout + result.stderr


def start_server(workdir: Path) -> Running:
    def make(control: ServerControl) -> PipeFactory:
        return srvsvc_factory(control, SessionInfoPolicy.ADMINS)

    server = build_server("127.0.0.1", 0, accounts=["alice:alicepw:admin", "bob:bobpw"], server_name=SERVER_NAME,
                          domain="CORP", comment=COMMENT, decoy_shares=DECOY_SHARES, make_pipe_factory=make)
    server.start()
    return Running(server, workdir)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = start_server(tmp_path_factory.mktemp("srvsvc"))
    try:
        yield running
    finally:
        running.server.stop()


needs_rpcclient = pytest.mark.skipif(RPCCLIENT is None, reason="rpcclient not installed")


def _netnames(output: str) -> list[str]:
    return re.findall(r"^netname: (.*)$", output, re.M)


# --------------------------------------------------------------------------- rpcclient


@needs_rpcclient
@pytest.mark.parametrize("command", ["netshareenumall", "netshareenum"])
@pytest.mark.parametrize("level", [1, 2, 502])
def test_rpcclient_share_enum_at_each_level(srv: Running, command: str, level: int) -> None:
    output = srv.rpcclient(f"{command} {level}")
    assert _netnames(output) == SHARE_NAMES, output
    if level == 502:
        types = re.findall(r"^\ttype:\t(0x[0-9a-f]+)$", output, re.M)
        assert types == ["0x80000003", "0x80000000", "0x80000000", "0x0", "0x0"]
    if level >= 2:
        assert "\tpath:\tC:\\Windows" in output


@needs_rpcclient
@pytest.mark.parametrize("level", [2, 502])
def test_rpcclient_admin_levels_are_denied_to_plain_users(srv: Running, level: int) -> None:
    assert "WERR_ACCESS_DENIED" in srv.rpcclient(f"netshareenumall {level}", user="bob")
    assert _netnames(srv.rpcclient("netshareenumall 1", user="bob")) == SHARE_NAMES


@needs_rpcclient
@pytest.mark.parametrize("level", [1, 2, 502])
def test_rpcclient_share_get_info(srv: Running, level: int) -> None:
    output = srv.rpcclient(f"netsharegetinfo 'Finance' {level}")
    assert _netnames(output) == ["Finance"], output
    assert "remark:\tTeam data" in output
    assert "WERR_NERR_NETNAMENOTFOUND" in srv.rpcclient(f"netsharegetinfo nosuchshare {level}")


@needs_rpcclient
def test_rpcclient_srvinfo_at_every_level(srv: Running) -> None:
    for level in (101, 102):
        output = srv.rpcclient(f"srvinfo {level}")
        assert SERVER_NAME in output and COMMENT in output, output
        assert re.search(r"platform_id\s+:\s+500", output)
        assert re.search(r"os version\s+:\s+10\.0", output)
        assert re.search(r"server type\s+:\s+0x9003", output)
    assert "user path" in srv.rpcclient("srvinfo 102")
    assert "WERR_ACCESS_DENIED" in srv.rpcclient("srvinfo 102", user="bob")
    # rpcclient cannot print level 100, but the call must succeed at that level.
    assert "unsupported info level 100" in srv.rpcclient("srvinfo 100")
    for level in (402, 502, 503):
        assert "WERR_INVALID_LEVEL" in srv.rpcclient(f"srvinfo {level}")


@needs_rpcclient
def test_rpcclient_levels_it_cannot_print_come_back_in_its_ndr_dump(srv: Running) -> None:
    # rpcclient has no printer for share level 0 and server level 100; its -d10 dump shows the answer.
    output = srv.rpcclient("netshareenumall 0", extra=("-d10",))
    assert "union srvsvc_NetShareCtr(case 0)" in output and re.search(r"result\s+: WERR_OK", output)
    assert re.findall(r"^\s+name\s+: '(.*)'$", output, re.M) == SHARE_NAMES
    output = srv.rpcclient("srvinfo 100", extra=("-d10",))
    assert "union srvsvc_NetSrvInfo(case 100)" in output and re.search(r"result\s+: WERR_OK", output)
    assert re.search(rf"server_name\s+: '{SERVER_NAME}'", output) and "PLATFORM_ID_NT (500)" in output


@pytest.mark.skipif(SMBCLIENT is None, reason="smbclient not installed")
def test_smbclient_lists_ipc_as_ipc(srv: Running) -> None:
    assert SMBCLIENT
    result = srv.run([SMBCLIENT, "-s", str(srv.conf), "-p", str(srv.port), "-U", "bob", "-L", "127.0.0.1"],
                     ACCOUNTS["bob"][0])
    rows = re.findall(r"^\t(\S.*?)\s{2,}(Disk|IPC|Printer)\s+(.*)$", result.stdout, re.M)
    assert rows[0] == ("IPC$", "IPC", "Remote IPC"), result.stdout
    assert [r[0] for r in rows] == SHARE_NAMES


# --------------------------------------------------------------------------- smbtorture

TORTURE_TESTS = ["NetSrvGetInfo", "NetShareGetInfo", "NetShareEnumAll", "NetShareEnum", "NetRemoteTOD",
                 "NetSessEnum"]


@pytest.mark.skipif(SMBTORTURE is None, reason="smbtorture not installed (samba-testsuite)")
@pytest.mark.parametrize("test", [
    *(f"srvsvc (admin access).{t}" for t in TORTURE_TESTS),
    *(f"srvsvc anonymous access.{t}" for t in ("NetShareEnumAll", "NetShareEnum", "NetShareGetInfo")),
])
def test_smbtorture_rpc_srvsvc(srv: Running, test: str) -> None:
    assert SMBTORTURE
    result = srv.run([SMBTORTURE, "-s", str(srv.conf), "ncacn_np:127.0.0.1[smb2]",
                      f"--option=smb ports={srv.port}", "-U", "alice%" + ACCOUNTS["alice"][0],
                      f"rpc.srvsvc.{test}"], None)
    assert f"success: {test}" in result.stdout, result.stdout + result.stderr


# --------------------------------------------------------------------------- impacket


def test_impacket_sees_every_level_and_the_time(srv: Running) -> None:
    from impacket.dcerpc.v5 import srvs, transport

    rpc = transport.SMBTransport("127.0.0.1", dstport=srv.port, filename=r"\srvsvc", username="alice",
                                 password=ACCOUNTS["alice"][0])
    dce = rpc.get_dce_rpc()
    dce.connect()
    try:
        dce.bind(srvs.MSRPC_UUID_SRVS)
        for level in (0, 1, 2, 501, 502, 503):
            answer = srvs.hNetrShareEnum(dce, level)
            buffer = answer["InfoStruct"]["ShareInfo"][f"Level{level}"]["Buffer"]
            assert [e[f"shi{level}_netname"][:-1] for e in buffer] == SHARE_NAMES
        info = srvs.hNetrServerGetInfo(dce, 102)["InfoStruct"]["ServerInfo102"]
        assert (info["sv102_name"][:-1], info["sv102_platform_id"], info["sv102_version_major"]) == (
            SERVER_NAME, 500, 10)
        # impacket's helpers send names as given: the NUL a [string] needs is the caller's to add.
        share = srvs.hNetrShareGetInfo(dce, "c$\0", 2)["InfoStruct"]["ShareInfo2"]
        assert (share["shi2_netname"][:-1], share["shi2_path"][:-1]) == ("C$", "C:\\")
        assert srvs.hNetrRemoteTOD(dce)["BufferPtr"]["tod_year"] >= 2024
        assert srvs.hNetrShareCheck(dce, "C:\\Windows\0")["Type"] == 0x80000000
    finally:
        dce.disconnect()
