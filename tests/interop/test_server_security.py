"""Hardening of our SMB server core (smbsessions.server.shell + smb2/) against hostile clients.

Each test is the loopback proof of concept of a flaw found in review, run
against a server started here (ports 4550-4559): what it must no longer get,
and what a well-behaved client must still get.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from impacket import ntlm
from impacket import smb3structs as smb2
from impacket.smbconnection import SessionError, SMBConnection

from smbsessions.server import cli, pipe
from smbsessions.server.nbss import MAX_MESSAGE
from smbsessions.server.shell import SessionServer, build_server
from smbsessions.server.smb2.codec import MAX_COMPOUND
from smbsessions.server.smb2.connection import CoreConfig, ServerConnection
from smbsessions.server.types import CallerInfo, PipeEndpoint, ServerControl

pytestmark = pytest.mark.timeout(60)

PORT = 4460  # H1b's interop range (4460-4464)
SECRET = b"the server's own secret\n"
STATUS_BAD_NETWORK_NAME = 0xC00000CC
ACCOUNTS = ["alice:alicepw:admin", "bob:bobpw"]
STATUS_ACCESS_DENIED = 0xC0000022
STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034
STATUS_PIPE_BUSY = 0xC00000AE
STATUS_INSUFFICIENT_RESOURCES = 0xC000009A
PIPE_ACCESS = 0x0012019F


class Echo:
    """A srvsvc stand-in: each write is answered with one message, the data itself."""

    def __init__(self, caller: CallerInfo) -> None:
        self.caller = caller
        self.closed = False
        self._queue: deque[bytes] = deque()

    def write(self, data: bytes) -> None:
        self._queue.append(b"echo:" + data)

    def read(self, max_len: int) -> tuple[bytes, bool]:
        if not self._queue:
            return b"", False
        message = self._queue.popleft()
        return message[:max_len], False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def start() -> Iterator[Callable[..., tuple[SessionServer, list[Echo]]]]:
    started: list[SessionServer] = []

    def run(**kwargs: Any) -> tuple[SessionServer, list[Echo]]:
        made: list[Echo] = []

        def factory(control: ServerControl) -> Callable[[CallerInfo], PipeEndpoint]:
            def open_pipe(caller: CallerInfo) -> Echo:
                made.append(Echo(caller))
                return made[-1]

            return open_pipe

        kwargs.setdefault("accounts", ACCOUNTS)
        server = build_server("127.0.0.1", PORT, make_pipe_factory=factory, **kwargs)
        started.append(server)
        server.start()
        return server, made

    try:
        yield run
    finally:
        for server in started:
            server.stop()


def connect(user: str = "", password: str = "", dialect: str | None = None) -> SMBConnection:
    conn = SMBConnection("127.0.0.1", "127.0.0.1", sess_port=PORT, timeout=10, preferredDialect=dialect)
    conn.login(user, password)
    return conn


CONNECTION_DROPPED = -1


def status_of(action: Callable[[], object]) -> int:
    """The NTSTATUS of a refusal, ``CONNECTION_DROPPED`` if the server closed instead (as MS-SMB2
    says for a request encrypted for a session that no longer exists), 0 on success."""
    from impacket.nmb import NetBIOSError

    try:
        action()
    except SessionError as exc:
        return int(exc.getErrorCode())
    except (NetBIOSError, OSError):
        return CONNECTION_DROPPED
    return 0


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# -- raw SMB2 --------------------------------------------------------------


def smb2_message(command: int, body: Any, message_id: int, tree_id: int = 0, session_id: int = 0,
                 related: bool = False) -> bytes:
    packet = smb2.SMB2Packet()
    packet["Command"] = command
    packet["CreditRequestResponse"] = 1
    packet["MessageID"] = message_id
    packet["TreeID"] = tree_id
    packet["SessionID"] = session_id
    packet["Flags"] = smb2.SMB2_FLAGS_RELATED_OPERATIONS if related else 0
    packet["Data"] = body.getData() if hasattr(body, "getData") else body
    data: bytes = packet.getData()
    return data


def compound(messages: list[bytes]) -> bytes:
    """Chain SMB2 messages with NextCommand, each padded to 8 bytes."""
    out = b""
    for i, message in enumerate(messages):
        if i + 1 < len(messages):
            message += b"\0" * (-len(message) % 8)
            message = message[:20] + struct.pack("<I", len(message)) + message[24:]
        out += message
    return out


def send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(len(payload).to_bytes(4, "big") + payload)


def recv_message(sock: socket.socket) -> bytes | None:
    """One SMB message; None once the server closed the connection."""
    def exact(size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            try:
                chunk = sock.recv(size - len(data))
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            data += chunk
        return data

    header = exact(4)
    if header is None:
        return None
    return exact(int.from_bytes(header[1:], "big"))


def negotiate(sock: socket.socket) -> bytes | None:
    request = smb2.SMB2Negotiate()
    request["Dialects"] = [smb2.SMB2_DIALECT_002]
    request["DialectCount"] = 1
    request["ClientGuid"] = os.urandom(16)
    send(sock, smb2_message(smb2.SMB2_NEGOTIATE, request, 0))
    return recv_message(sock)


def session_setup_body(token: bytes) -> Any:
    request = smb2.SMB2SessionSetup()
    request["SecurityBufferLength"] = len(token)
    request["Buffer"] = token
    return request


def raw_connection() -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    assert negotiate(sock) is not None
    return sock


def test_compound_before_logon_is_refused_and_reads_nothing(
    start: Callable[..., tuple[SessionServer, list[Echo]]],
) -> None:
    # The reviewer's proof of concept: NTLM round one, then a tree connect, an
    # open and a pipe read in the same message, with anonymous logons disabled
    # and no accounts: only the logon stands in the way.
    _, made = start(accounts=[], allow_anonymous=False)
    sock = raw_connection()
    try:
        type1 = ntlm.getNTLMSSPType1("", "", signingRequired=False)
        tree = smb2.SMB2TreeConnect()
        path = r"\\127.0.0.1\IPC$".encode("utf-16le")
        tree["PathLength"] = len(path)
        tree["Buffer"] = path
        create = smb2.SMB2Create()
        name = "srvsvc".encode("utf-16le")
        create["ImpersonationLevel"] = 2
        create["DesiredAccess"] = PIPE_ACCESS
        create["ShareAccess"] = 3
        create["CreateDisposition"] = 1
        create["NameLength"] = len(name)
        create["Buffer"] = name
        read = smb2.SMB2Read()
        read["Padding"] = 0x50
        read["Length"] = 1000
        read["FileID"] = b"\xff" * 16
        read["Buffer"] = b"\0"
        send(sock, compound([
            smb2_message(smb2.SMB2_SESSION_SETUP, session_setup_body(type1.getData()), 1),
            smb2_message(smb2.SMB2_TREE_CONNECT, tree, 2, related=True),
            smb2_message(smb2.SMB2_CREATE, create, 3, tree_id=1, related=True),
            smb2_message(smb2.SMB2_READ, read, 4, tree_id=1, related=True),
        ]))
        received = b""
        closed = False
        sock.settimeout(5)
        for _ in range(10):
            try:
                message = recv_message(sock)
            except TimeoutError:
                break
            if message is None:
                closed = True
                break
            received += message
        assert b"echo:" not in received and made == []
        assert closed
    finally:
        sock.close()


def _header(command: int, next_command: int = 0, message_id: int = 0) -> bytes:
    return (b"\xfeSMB" + struct.pack("<H", 64) + bytes(6) + struct.pack("<H", command) + bytes(6)
            + struct.pack("<IQ", next_command, message_id) + bytes(32))


def _chain(*commands: int) -> bytes:
    return b"".join(_header(c, 64 if i + 1 < len(commands) else 0, i + 1) for i, c in enumerate(commands))


def test_compound_rules() -> None:
    # The core drops the connection (MS-SMB2: disconnect) for each chain below; the
    # engine-era _check_compound moved into smb2.connection/codec. A lone command and,
    # after logon, an ordinary chain are served.
    def logged_on() -> ServerConnection:
        from smbsessions.ntlm import ntlm_anonymous_authenticate, ntlm_anonymous_negotiate

        conn = ServerConnection(CoreConfig("SRV", "WG", lambda u: None, lambda u: False))
        negotiate_body = smb2.SMB2Negotiate()
        negotiate_body["Dialects"] = [smb2.SMB2_DIALECT_002]
        negotiate_body["DialectCount"] = 1
        conn.receive_frame(smb2_message(smb2.SMB2_NEGOTIATE, negotiate_body, 0))
        out = conn.receive_frame(smb2_message(smb2.SMB2_SESSION_SETUP,
                                              session_setup_body(ntlm_anonymous_negotiate()), 1))
        sid = struct.unpack_from("<Q", out[0], 40)[0]
        body = out[0][64:]
        offset, length = struct.unpack_from("<HH", body, 4)
        token = ntlm_anonymous_authenticate(out[0][offset:offset + length])
        conn.receive_frame(smb2_message(smb2.SMB2_SESSION_SETUP, session_setup_body(token), 2,
                                        session_id=sid))
        assert conn.logged_on
        return conn

    def chain_after_logon(*commands: int) -> bytes:
        return b"".join(_header(c, 64 if i + 1 < len(commands) else 0, 3 + i) for i, c in enumerate(commands))

    conn = logged_on()
    conn.receive_frame(chain_after_logon(smb2.SMB2_ECHO, smb2.SMB2_ECHO))
    assert not conn.closed
    refused_before_logon = [
        _chain(smb2.SMB2_SESSION_SETUP, smb2.SMB2_TREE_CONNECT),
        _chain(smb2.SMB2_NEGOTIATE, smb2.SMB2_TREE_CONNECT),
        b"\xfeSMB" + bytes(20),  # truncated header
        b"\x00SMB" + bytes(60),  # not SMB at all
        b"\xffSMB" + bytes(4),  # a broken SMB1 message
    ]
    for data in refused_before_logon:
        fresh = ServerConnection(CoreConfig("SRV", "WG", lambda u: None, lambda u: False))
        assert fresh.receive_frame(data) == [] and fresh.closed, data
    refused_after_logon = [
        chain_after_logon(smb2.SMB2_READ, smb2.SMB2_SESSION_SETUP),  # re-logon inside a chain
        chain_after_logon(smb2.SMB2_READ, smb2.SMB2_NEGOTIATE),
        chain_after_logon(smb2.SMB2_LOGOFF, smb2.SMB2_TREE_CONNECT),  # commands after LOGOFF
        chain_after_logon(*[smb2.SMB2_ECHO] * (MAX_COMPOUND + 1)),  # too long
        _header(smb2.SMB2_ECHO, 8, 3) + bytes(64),  # NextCommand inside the header
        _header(smb2.SMB2_ECHO, 68, 3) + bytes(64),  # unaligned
        _header(smb2.SMB2_ECHO, 64, 3),  # points past the end
    ]
    for data in refused_after_logon:
        conn = logged_on()
        assert conn.receive_frame(data) == [] and conn.closed, data


def test_authenticated_compound_still_served(
    start: Callable[..., tuple[SessionServer, list[Echo]]],
) -> None:
    # smbprotocol can send CREATE + WRITE + READ + CLOSE as one related compound after logon.
    import uuid

    from smbprotocol.connection import Connection
    from smbprotocol.open import (
        CreateDisposition,
        CreateOptions,
        ImpersonationLevel,
        Open,
        ShareAccess,
    )
    from smbprotocol.session import Session
    from smbprotocol.tree import TreeConnect

    start()
    connection = Connection(uuid.uuid4(), "127.0.0.1", PORT, require_signing=True)
    connection.connect(timeout=10)
    try:
        session = Session(connection, "alice", "alicepw", require_encryption=False)
        session.connect()
        tree = TreeConnect(session, r"\\127.0.0.1\IPC$")
        tree.connect()
        handle = Open(tree, "srvsvc")
        requests = [
            handle.create(ImpersonationLevel.Impersonation, PIPE_ACCESS, 0,
                          ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE,
                          CreateDisposition.FILE_OPEN, CreateOptions.FILE_NON_DIRECTORY_FILE, send=False),
            handle.write(b"compound", 0, send=False),
            handle.read(0, 100, send=False),
            handle.close(False, send=False),
        ]
        sent = connection.send_compound([r[0] for r in requests], session.session_id, tree.tree_connect_id,
                                        related=True)
        responses = [requests[i][1](request) for i, request in enumerate(sent)]
        assert responses[2] == b"echo:compound"
    finally:
        connection.disconnect(True)


# -- IPC$ ----------------------------------------------------------------------
# The engine-era tests of IPC$ as a private empty directory are gone with the directory:
# the core has no filesystem at all. What remains true is checked here.


def test_ipc_serves_only_srvsvc(start: Callable[..., tuple[SessionServer, list[Echo]]]) -> None:
    start()
    conn = connect()
    try:
        tree = conn.connectTree("IPC$")
        for name in ("accounts.txt", "wkssvc", r"..\cwd\accounts.txt", "samr"):
            def open_it(file_name: str = name) -> object:
                return conn.openFile(tree, file_name)

            assert status_of(open_it) == STATUS_OBJECT_NAME_NOT_FOUND
        assert status_of(lambda: conn.listPath("IPC$", "*")) != 0
        # srvsvc itself still opens.
        fid = conn.openFile(tree, "srvsvc", desiredAccess=PIPE_ACCESS)
        conn.closeFile(tree, fid)
    finally:
        conn.close()


# -- shares: there are none but IPC$, for anybody ---------------------------------


@pytest.mark.parametrize("user", [("", ""), ("bob", "bobpw"), ("alice", "alicepw")])
def test_only_ipc_exists_for_every_logon(
    start: Callable[..., tuple[SessionServer, list[Echo]]], user: tuple[str, str]
) -> None:
    start()
    conn = connect(*user)
    try:
        for share in ("DATA", "C$", "ADMIN$", "share"):
            assert status_of(lambda s=share: conn.connectTree(s)) == STATUS_BAD_NETWORK_NAME  # type: ignore[misc]
        conn.connectTree("IPC$")
    finally:
        conn.close()


def test_file_shares_are_refused() -> None:
    with pytest.raises(ValueError, match="Samba or impacket-smbserver"):
        build_server("127.0.0.1", PORT, shares=["DATA=/tmp"])


# -- the pipe queue ----------------------------------------------------------------
# (The SMB1 variant of this test is gone: the core answers SMB1 only to upgrade to SMB2.)


def test_write_while_a_reply_is_unread_is_pipe_busy(
    start: Callable[..., tuple[SessionServer, list[Echo]]],
) -> None:
    start()
    conn = connect("bob", "bobpw")
    try:
        tree = conn.connectTree("IPC$")
        fid = conn.openFile(tree, "srvsvc", desiredAccess=PIPE_ACCESS)
        conn.writeFile(tree, fid, b"one")
        for _ in range(3):
            assert status_of(lambda: conn.writeFile(tree, fid, b"more")) == STATUS_PIPE_BUSY
        assert conn.readFile(tree, fid, 0, 1024) == b"echo:one"
        conn.writeFile(tree, fid, b"two")
        assert conn.readFile(tree, fid, 0, 1024) == b"echo:two"
    finally:
        conn.close()


class Flood:
    """An endpoint whose answer to one write is far larger than any legitimate one."""

    def __init__(self) -> None:
        self.closed = False
        self.reads = 0

    def write(self, data: bytes) -> None:
        pass

    def read(self, max_len: int) -> tuple[bytes, bool]:
        self.reads += 1
        return b"x" * min(max_len, 1000), False

    def close(self) -> None:
        self.closed = True


def test_reply_larger_than_the_queue_cap_closes_the_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipe, "MAX_QUEUED_BYTES", 50_000)
    endpoint = Flood()
    handle = pipe.PipeHandle(endpoint)
    with pytest.raises(pipe.PipeOverflowError):
        handle.write(b"request")
    assert endpoint.closed and endpoint.reads <= 51
    assert not handle.pending()


# -- logoff and re-logon end the old session's opens -------------------------------


@pytest.mark.parametrize("how", ["logoff", "new-logon"])
def test_old_pipe_dies_with_its_session(
    start: Callable[..., tuple[SessionServer, list[Echo]]], how: str
) -> None:
    server, made = start()
    conn = connect("alice", "alicepw")
    try:
        tree = conn.connectTree("IPC$")
        fid = conn.openFile(tree, "srvsvc", desiredAccess=PIPE_ACCESS)
        assert made[0].caller.is_admin
        if how == "logoff":
            conn.logoff()
            assert made[0].closed
            # impacket 0.13 keeps sealing with the logged-off session's keys, so the
            # server can only drop what follows (MS-SMB2 3.3.5.2.1.1); either way the
            # admin's handle is dead and no session is listed.
            assert status_of(lambda: conn.writeFile(tree, fid, b"enum")) != 0
            assert len(made) == 1 and server.snapshot() == []
            return
        conn.login("", "")
        assert made[0].closed
        # The admin's handle and tree are gone for the anonymous session.
        assert status_of(lambda: conn.writeFile(tree, fid, b"enum")) != 0
        assert status_of(lambda: conn.openFile(tree, "srvsvc", desiredAccess=PIPE_ACCESS)) != 0
        assert len(made) == 1
        assert [info.username for _, info in server.snapshot()] == [""]
    finally:
        conn.close()


def test_failed_relogon_leaves_no_session(
    start: Callable[..., tuple[SessionServer, list[Echo]]],
) -> None:
    server, _ = start()
    conn = connect("alice", "alicepw")
    try:
        tree = conn.connectTree("IPC$")
        with pytest.raises(SessionError):
            conn.login("alice", "wrong")
        assert server.snapshot() == []
        assert status_of(lambda: conn.openFile(tree, "srvsvc", desiredAccess=PIPE_ACCESS)) != 0
    finally:
        conn.getSMBServer().get_socket().close()


# -- frames, timeouts, connection cap --------------------------------------------


def test_oversized_frame_is_refused_but_full_sized_io_works(
    start: Callable[..., tuple[SessionServer, list[Echo]]],
) -> None:
    start()
    sock = raw_connection()
    try:
        sock.sendall((1 << 20).to_bytes(4, "big"))  # announce 1 MiB, send nothing more
        assert recv_message(sock) is None
    finally:
        sock.close()
    assert MAX_MESSAGE < 1 << 20
    # A write of the full negotiated size (64 KiB) and its echo come through.
    payload = os.urandom(65536 - 5)
    conn = connect("bob", "bobpw")
    try:
        tree = conn.connectTree("IPC$")
        fid = conn.openFile(tree, "srvsvc", desiredAccess=PIPE_ACCESS)
        conn.writeFile(tree, fid, payload)
        assert conn.readFile(tree, fid, 0, 65536) == b"echo:" + payload
    finally:
        conn.close()


def test_connection_without_logon_is_dropped(
    start: Callable[..., tuple[SessionServer, list[Echo]]],
) -> None:
    start(preauth_timeout=1.0)
    sock = raw_connection()
    try:
        assert recv_message(sock) is None  # within the 10 s socket timeout
    finally:
        sock.close()
    # A logged-on connection is not subject to it.
    conn = connect("bob", "bobpw")
    try:
        time.sleep(1.5)
        conn.connectTree("IPC$")
    finally:
        conn.close()


def test_trickled_frame_is_cut_off(start: Callable[..., tuple[SessionServer, list[Echo]]]) -> None:
    start(idle_timeout=2.0)
    sock = raw_connection()
    try:
        sock.sendall(b"\x00\x00\x00\x50")  # an 80-byte frame, sent a byte at a time
        cut = False
        for _ in range(100):
            try:
                sock.sendall(b"\x00")
            except OSError:
                cut = True
                break
            time.sleep(0.2)
            sock.settimeout(0.01)
            try:
                if sock.recv(1) == b"":
                    cut = True
                    break
            except TimeoutError:
                pass
            except OSError:
                cut = True
                break
            finally:
                sock.settimeout(10)
        assert cut
    finally:
        sock.close()


def test_connections_beyond_the_cap_are_closed(
    start: Callable[..., tuple[SessionServer, list[Echo]]],
) -> None:
    start(max_connections=2)
    held = [raw_connection(), raw_connection()]
    try:
        extra = socket.create_connection(("127.0.0.1", PORT), timeout=10)
        try:
            assert negotiate(extra) is None
        finally:
            extra.close()
        held.pop().close()

        def accepted() -> bool:
            probe = socket.create_connection(("127.0.0.1", PORT), timeout=10)
            try:
                return negotiate(probe) is not None
            except OSError:
                return False
            finally:
                probe.close()

        assert wait_for(accepted)
    finally:
        for sock in held:
            sock.close()


# -- the CLI ------------------------------------------------------------------------


def test_unreadable_accounts_file_is_a_usage_error(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["serve", "--port", str(PORT), "--accounts-file", str(tmp_path / "missing"),
                              "--quiet"])
    out, err = io.StringIO(), io.StringIO()
    assert cli.run(args, out, err) == cli.EXIT_USAGE
    assert "cannot read accounts file" in err.getvalue() and "cannot listen" not in err.getvalue()
