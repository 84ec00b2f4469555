"""Independent clients against our server core at every dialect, signing and encryption.

Each client negotiates, signs and encrypts as asked, and the session it holds is listed
with the dialect it really negotiated (``sesi502_cltype_name``). The server's counters
prove signatures were verified and messages decrypted (not merely allowed).

Clients: Samba's rpcclient, smbclient and smbtorture (C, libsmb), Samba's Python
bindings, impacket, smbprotocol (our client's stack) and our client, aiosmb.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smbsessions.auth import Credentials
from smbsessions.client import SessionClient
from smbsessions.levels import SessionInfo

from ..peers.ourserver import ADMIN, RPCCLIENT, OurServer, parse_netsessenum_debug, running_server
from ..peers.samba_py import require_samba_py, samba_py_session_enum

pytestmark = pytest.mark.timeout(120)

# Samba's names for the dialects (client ipc max protocol), and what the server lists.
SAMBA_DIALECTS = {
    "SMB2_02": "SMB 2.0.2", "SMB2_10": "SMB 2.1", "SMB3_00": "SMB 3.0", "SMB3_02": "SMB 3.0.2",
    "SMB3_11": "SMB 3.1.1",
}
LABELS = {0x0202: "SMB 2.0.2", 0x0210: "SMB 2.1", 0x0300: "SMB 3.0", 0x0302: "SMB 3.0.2", 0x0311: "SMB 3.1.1"}
SMB3 = ["SMB3_00", "SMB3_02", "SMB3_11"]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OurServer]:
    with running_server(tmp_path_factory.mktemp("dialects")) as server:
        yield server


@pytest.fixture(scope="module")
def encrypted_srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OurServer]:
    from smbsessions.server.shell import build_server

    from ..peers.ourserver import ACCOUNTS, _factory

    workdir = tmp_path_factory.mktemp("encrypted")
    state = OurServer(None, workdir, workdir)  # type: ignore[arg-type]
    server = build_server("127.0.0.1", 0, accounts=ACCOUNTS, make_pipe_factory=_factory(state),
                          require_encryption=True)
    state.server = server
    server.start()
    try:
        yield state
    finally:
        server.stop()


def own_entry(entries: list[SessionInfo], user: str = "alice") -> SessionInfo:
    """The caller's own session in an enumeration (the only one from 127.0.0.1 as ``user``)."""
    mine = [e for e in entries if e.username == user and e.cname == "\\\\127.0.0.1"]
    assert len(mine) == 1, entries
    return mine[0]


def rpcclient(srv: OurServer, *options: str, user: tuple[str, str] = ADMIN,
              command: str = "netsessenum \\\\\\\\127.0.0.1 alice 502") -> subprocess.CompletedProcess[str]:
    argv = [RPCCLIENT, "-s", str(srv.client_conf), "-p", str(srv.port), "-U", user[0], "-d10"]
    for option in options:
        argv += ["--option", option]
    argv += [srv.host, "-c", command]
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PASSWD")}
    env["PASSWD"] = user[1]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)


# ---------------------------------------------------------------- Samba's C clients


@pytest.mark.parametrize("signing", ["default", "required"])
@pytest.mark.parametrize("dialect", list(SAMBA_DIALECTS))
def test_rpcclient_at_every_dialect(srv: OurServer, dialect: str, signing: str) -> None:
    before = srv.server.counters()
    result = rpcclient(srv, f"client ipc max protocol={dialect}", f"client ipc signing={signing}")
    answer = parse_netsessenum_debug(result.stderr)
    assert answer.status == 0
    assert own_entry(answer.entries).cltype_name == SAMBA_DIALECTS[dialect]
    after = srv.server.counters()
    # An authenticated session signs when either side requires it: rpcclient always
    # requires IPC signing by default on SMB2+, so both rows are signed.
    assert after.get("signed", 0) > before.get("signed", 0)


@pytest.mark.parametrize("dialect", SMB3)
def test_rpcclient_with_encryption_required(srv: OurServer, dialect: str) -> None:
    before = srv.server.counters()
    result = rpcclient(srv, f"client ipc max protocol={dialect}", "client smb encrypt=required")
    answer = parse_netsessenum_debug(result.stderr)
    assert answer.status == 0
    assert own_entry(answer.entries).cltype_name == SAMBA_DIALECTS[dialect]
    assert srv.server.counters().get("encrypted", 0) > before.get("encrypted", 0)


@pytest.mark.parametrize("dialect", ["SMB2_02", "SMB3_11"])
def test_smbclient_lists_the_shares(srv: OurServer, dialect: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PASSWD")}
    env["PASSWD"] = ADMIN[1]
    result = subprocess.run(
        ["/usr/bin/smbclient", "-s", str(srv.client_conf), "-p", str(srv.port), "-U", ADMIN[0],
         "--option", f"client max protocol={dialect}", "--option", f"client ipc max protocol={dialect}",
         "-L", srv.host],
        capture_output=True, text=True, env=env, timeout=60, check=False)
    assert "IPC$" in result.stdout, result.stdout + result.stderr


def test_smbtorture_netsessenum(srv: OurServer) -> None:
    torture = shutil.which("smbtorture")
    if torture is None:
        pytest.skip("smbtorture not installed (Debian package samba-testsuite)")
    result = subprocess.run(
        [torture, "-s", str(srv.client_conf), "-p", str(srv.port), "-U", f"{ADMIN[0]}%{ADMIN[1]}",
         f"ncacn_np:{srv.host}", "rpc.srvsvc.srvsvc (admin access).NetSessEnum"],
        capture_output=True, text=True, timeout=120, check=False)
    assert "success: srvsvc (admin access).NetSessEnum" in result.stdout, result.stdout[-2000:]


@pytest.mark.parametrize("dialect", ["SMB2_02", "SMB3_00", "SMB3_11"])
def test_samba_python_bindings(srv: OurServer, dialect: str, tmp_path: Path) -> None:
    require_samba_py()
    conf = tmp_path / "client.conf"
    conf.write_text(srv.client_conf.read_text() + f"  client ipc max protocol = {dialect}\n")
    out = samba_py_session_enum(srv.host, srv.port, *ADMIN, 502, None, None, 0xFFFFFFFF, 0, conf=conf)
    assert out["werror"] == 0, out
    mine = [e for e in out["entries"] if e["user"] == "alice" and e["client"] == "\\\\127.0.0.1"]
    assert [e["client_type"] for e in mine] == [SAMBA_DIALECTS[dialect]]


# ---------------------------------------------------------------- impacket


@pytest.mark.parametrize("dialect", [0x0202, 0x0210, 0x0300, 0x0311, None])
def test_impacket_at_every_dialect(srv: OurServer, dialect: int | None) -> None:
    from impacket.dcerpc.v5 import srvs, transport
    from impacket.smbconnection import SMBConnection

    srv.wait_live(0)  # earlier tests' sessions leave asynchronously
    conn = SMBConnection(srv.host, srv.host, sess_port=srv.port, timeout=10,
                         preferredDialect=dialect)  # type: ignore[arg-type]
    conn.login(*ADMIN)
    rpc = transport.SMBTransport(srv.host, dstport=srv.port, filename=r"\srvsvc", smb_connection=conn)
    dce = rpc.get_dce_rpc()
    try:
        dce.connect()
        dce.bind(srvs.MSRPC_UUID_SRVS)
        answer = srvs.hNetrSessionEnum(dce, "\\\\127.0.0.1\x00", "alice\x00", 502)
        [entry] = answer["InfoStruct"]["SessionInfo"]["Level502"]["Buffer"]
        assert str(entry["sesi502_cltype_name"]).rstrip("\x00") == LABELS[conn.getDialect()]
        if dialect is not None:
            assert conn.getDialect() == dialect
    finally:
        dce.disconnect()
        conn.close()


# ---------------------------------------------------------------- smbprotocol and our client


@pytest.mark.parametrize("dialect", [0x0202, 0x0210, 0x0300, 0x0302, 0x0311])
def test_smbprotocol_signs_and_encrypts_at_every_dialect(srv: OurServer, dialect: int) -> None:
    from smbprotocol.connection import Connection
    from smbprotocol.open import CreateDisposition, CreateOptions, ImpersonationLevel, Open, ShareAccess
    from smbprotocol.session import Session
    from smbprotocol.tree import TreeConnect

    encrypt = dialect >= 0x0300
    srv.wait_live(0)  # earlier tests' sessions leave asynchronously
    before = srv.server.counters()
    connection = Connection(uuid.uuid4(), srv.host, srv.port, require_signing=True)
    connection.connect(dialect=dialect, timeout=10)
    try:
        session = Session(connection, *ADMIN, require_encryption=encrypt)
        session.connect()
        tree = TreeConnect(session, rf"\\{srv.host}\IPC$")
        tree.connect()
        handle = Open(tree, "srvsvc")
        handle.create(ImpersonationLevel.Impersonation, 0x0012019F, 0,
                      ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE,
                      CreateDisposition.FILE_OPEN, CreateOptions.FILE_NON_DIRECTORY_FILE)
        [mine] = [info for info in srv.live() if info.username == "alice"]
        assert (mine.cltype_name, mine.num_opens) == (LABELS[dialect], 1)
        after = srv.server.counters()
        key = "encrypted" if encrypt else "signed"
        assert after.get(key, 0) > before.get(key, 0)
    finally:
        connection.disconnect(True)


def test_our_client_with_encryption(srv: OurServer) -> None:
    before = srv.server.counters().get("encrypted", 0)
    client = SessionClient(srv.host, srv.port, credentials=Credentials(username=ADMIN[0], password=ADMIN[1]),
                           require_encryption=True)
    with client:
        entries = list(client.enum(502))
    assert own_entry([s.info for s in entries]).cltype_name == "SMB 3.1.1"
    assert srv.server.counters().get("encrypted", 0) > before


# ---------------------------------------------------------------- aiosmb


def test_aiosmb_lists_sessions(srv: OurServer) -> None:
    if importlib.util.find_spec("aiosmb") is None:
        pytest.skip("aiosmb not installed")
    from aiosmb.commons.connection.factory import SMBConnectionFactory
    from aiosmb.commons.interfaces.machine import SMBMachine

    async def run() -> list[Any]:
        url = f"smb2+ntlm-password://{ADMIN[0]}:{ADMIN[1]}@{srv.host}:{srv.port}"
        connection = SMBConnectionFactory.from_url(url).get_connection()
        async with connection:
            _, err = await connection.login()
            assert err is None, err
            found = []
            async for session, error in SMBMachine(connection).list_sessions(level=10):
                assert error is None, error
                found.append(session)
            return found

    sessions = asyncio.run(run())
    assert ("alice", "127.0.0.1") in {(s.username, s.ip_addr) for s in sessions}


# ---------------------------------------------------------------- serve --encrypt


def test_encrypt_server_refuses_smb2_and_serves_smb3_sealed(encrypted_srv: OurServer) -> None:
    refused = rpcclient(encrypted_srv, "client ipc max protocol=SMB2_10")
    assert "NT_STATUS_ACCESS_DENIED" in refused.stdout + refused.stderr
    before = encrypted_srv.server.counters().get("encrypted", 0)
    answer = parse_netsessenum_debug(rpcclient(encrypted_srv, "client ipc max protocol=SMB3_11").stderr)
    assert answer.status == 0 and own_entry(answer.entries).cltype_name == "SMB 3.1.1"
    assert encrypted_srv.server.counters().get("encrypted", 0) > before
