"""Our SMB server core (smbsessions.server.shell + smb2/) against real clients.

impacket's SMBConnection and smbprotocol connect to a server started here on
loopback (ports 4461-4462), from distinct source addresses. The srvsvc pipe is
answered by test doubles of ``PipeEndpoint`` (the real endpoint is srvsvc.py),
which is enough to check what the core owns: the session table, disconnects,
and message-mode pipe I/O.

Ported from the impacket-engine era: the disk-share cases (files counted in
num_opens, impacket's own file handlers), the SMB1 pipe reads and impacket's
stock srvsvc answers are gone with the engine (no file serving, SMB1 only to
upgrade, srvsvc answered by srvsvc.py).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from impacket import smb3structs as smb2
from impacket.smbconnection import SessionError, SMBConnection

from smbsessions.levels import SessionInfo
from smbsessions.rules import canonical_client_name
from smbsessions.server.shell import SessionServer, build_server
from smbsessions.server.types import CallerInfo, PipeEndpoint, ServerControl

from ..peers.holders import SessionHolder

pytestmark = pytest.mark.timeout(60)

PORT_V4 = 4461  # H1b's interop range (4460-4464)
PORT_V6 = 4462
STATUS_BUFFER_OVERFLOW = 0x80000005
PIPE_DESIRED_ACCESS = 0x0012019F  # what Windows and smbprotocol clients ask for a pipe
MESSAGE_SIZE = 6000  # bigger than the small reads below
ACCOUNTS = ["alice:alicepw:admin", "bob:bobpw"]


class EchoEndpoint:
    """Answers every write with three messages: ``bytes([i]) * MESSAGE_SIZE + data``."""

    def __init__(self, caller: CallerInfo) -> None:
        self.caller = caller
        self.closed = False
        self._queue: deque[bytes] = deque()

    def write(self, data: bytes) -> None:
        for i in range(3):
            self._queue.append(bytes([i]) * MESSAGE_SIZE + data)

    def read(self, max_len: int) -> tuple[bytes, bool]:
        if not self._queue:
            return b"", False
        message = self._queue[0]
        if len(message) <= max_len:
            self._queue.popleft()
            return message, False
        self._queue[0] = message[max_len:]
        return message[:max_len], True

    def close(self) -> None:
        self.closed = True


def expected_messages(data: bytes) -> list[bytes]:
    return [bytes([i]) * MESSAGE_SIZE + data for i in range(3)]


class SelfDisconnectEndpoint(EchoEndpoint):
    """Like NetrSessionDel of the caller's own session: disconnect, then reply."""

    def __init__(self, caller: CallerInfo, control: ServerControl) -> None:
        super().__init__(caller)
        self._control = control

    def write(self, data: bytes) -> None:
        key = self.caller.session_key
        self._control.disconnect([key], defer_for=key)
        super().write(data)


class Pipes:
    """The pipe factory given to the server; records every endpoint it made."""

    def __init__(self, control: ServerControl) -> None:
        self.control = control
        self.kind = "echo"
        self.made: list[EchoEndpoint] = []

    def __call__(self, caller: CallerInfo) -> PipeEndpoint:
        endpoint = (
            SelfDisconnectEndpoint(caller, self.control)
            if self.kind == "self-disconnect"
            else EchoEndpoint(caller)
        )
        self.made.append(endpoint)
        return endpoint


DIALECT_LABELS = {0x0202: "SMB 2.0.2", 0x0210: "SMB 2.1", 0x0300: "SMB 3.0", 0x0302: "SMB 3.0.2",
                  0x0311: "SMB 3.1.1"}


@pytest.fixture
def start_server() -> Iterator[Callable[..., tuple[SessionServer, Pipes]]]:
    started: list[SessionServer] = []

    def start(
        bind: str = "127.0.0.1", port: int = PORT_V4, **kwargs: Any
    ) -> tuple[SessionServer, Pipes]:
        holder: list[Pipes] = []

        def make_factory(control: ServerControl) -> Pipes:
            holder.append(Pipes(control))
            return holder[0]

        kwargs.setdefault("accounts", ACCOUNTS)
        server = build_server(bind, port, make_pipe_factory=make_factory, **kwargs)
        started.append(server)
        server.start()
        return server, holder[0]

    try:
        yield start
    finally:
        for server in started:
            server.stop()


def impacket_connect(
    host: str, port: int, user: str, password: str, dialect: str | None = None
) -> SMBConnection:
    conn = SMBConnection(host, host, sess_port=port, timeout=10, preferredDialect=dialect)
    conn.login(user, password)
    return conn


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def is_cut_off(conn: SMBConnection, tree: Any) -> bool:
    """True if a request that needs a round trip fails (impacket caches tree connects)."""
    try:
        conn.openFile(tree, "srvsvc")
    except Exception:
        return True
    return False


def rows(server: SessionServer) -> list[SessionInfo]:
    return [info for _, info in server.snapshot()]


# -- the session table ------------------------------------------------------


def test_snapshot_lists_each_session_with_its_client_user_and_opens(
    start_server: Callable[..., tuple[SessionServer, Pipes]],
) -> None:
    server, _ = start_server()
    holder = SessionHolder(
        "127.0.0.1",
        PORT_V4,
        2,
        credentials=[("alice", "alicepw"), ("bob", "bobpw")],
        source_ips=["127.0.0.2", "127.0.0.3"],
        open_files=1,
        share="IPC$",
    )
    with holder:
        snapshot = server.snapshot()
        keys = [key for key, _ in snapshot]
        assert keys == sorted(keys) and len(set(keys)) == 2
        by_user = {info.username: info for _, info in snapshot}
        assert set(by_user) == {"alice", "bob"}
        for user, cname in (("alice", r"\\127.0.0.2"), ("bob", r"\\127.0.0.3")):
            info = by_user[user]
            assert info.cname == cname
            assert info.num_opens == 1
            assert info.user_flags == 0
            assert info.cltype_name == DIALECT_LABELS[int(holder.sessions[0].dialect)]
            assert info.transport == f"tcp:127.0.0.1:{PORT_V4}"

        # Seconds since setup grow; only the session that spoke is no longer idle.
        time.sleep(1.1)
        holder.connection(0).getSMBServer().echo()
        later = {info.username: info for info in rows(server)}
        assert later["alice"].time is not None and later["alice"].time >= 1
        assert later["bob"].time is not None and later["bob"].time >= 1
        assert later["alice"].idle_time == 0
        assert later["bob"].idle_time is not None and later["bob"].idle_time >= 1
    assert wait_for(lambda: rows(server) == [])


def test_closing_a_pipe_lowers_num_opens(
    start_server: Callable[..., tuple[SessionServer, Pipes]],
) -> None:
    server, _ = start_server()
    conn = impacket_connect("127.0.0.1", PORT_V4, "bob", "bobpw")
    try:
        ipc = conn.connectTree("IPC$")
        # Two spellings: impacket keys its own open table by name.
        pipe_ids = [conn.openFile(ipc, name) for name in ("srvsvc", "\\PIPE\\srvsvc")]
        assert [info.num_opens for info in rows(server)] == [2]
        conn.closeFile(ipc, pipe_ids[0])
        assert [info.num_opens for info in rows(server)] == [1]
        conn.closeFile(ipc, pipe_ids[1])
        assert [info.num_opens for info in rows(server)] == [0]
    finally:
        conn.close()


def test_logoff_ends_the_session_while_tcp_stays(
    start_server: Callable[..., tuple[SessionServer, Pipes]],
) -> None:
    server, _ = start_server()
    # SMB 2.1: impacket 0.13 keeps sealing with a logged-off 3.x session's keys.
    conn = impacket_connect("127.0.0.1", PORT_V4, "bob", "bobpw", smb2.SMB2_DIALECT_21)
    try:
        assert len(rows(server)) == 1
        conn.logoff()
        assert rows(server) == []
        conn.login("alice", "alicepw")
        assert [info.username for info in rows(server)] == ["alice"]
    finally:
        conn.close()


def test_ipv6_session_has_bracketed_cname(
    start_server: Callable[..., tuple[SessionServer, Pipes]],
) -> None:
    server, _ = start_server("::1", PORT_V6)
    conn = impacket_connect("::1", PORT_V6, "alice", "alicepw")
    try:
        [info] = rows(server)
        assert info.cname == r"\\[::1]"
        assert info.transport == f"tcp:[::1]:{PORT_V6}"
    finally:
        conn.close()


def test_cname_strips_ipv4_mapped_prefix() -> None:
    assert canonical_client_name("::ffff:127.0.0.2") == r"\\127.0.0.2"
    assert canonical_client_name("::1") == r"\\[::1]"
    assert canonical_client_name("127.0.0.3") == r"\\127.0.0.3"


def test_null_session_is_listed_as_guest(
    start_server: Callable[..., tuple[SessionServer, Pipes]],
) -> None:
    server, _ = start_server()
    conn = impacket_connect("127.0.0.1", PORT_V4, "", "")
    try:
        [info] = rows(server)
        assert info.username == ""
        assert info.user_flags == 1  # SESS_GUEST
    finally:
        conn.close()


def test_null_session_refused_when_anonymous_disabled(
    start_server: Callable[..., tuple[SessionServer, Pipes]],
) -> None:
    server, _ = start_server(allow_anonymous=False)
    with pytest.raises(SessionError):
        impacket_connect("127.0.0.1", PORT_V4, "", "")
    assert rows(server) == []


def test_wrong_password_gives_no_session_and_no_access(
    start_server: Callable[..., tuple[SessionServer, Pipes]],
) -> None:
    server, _ = start_server()
    conn = SMBConnection("127.0.0.1", "127.0.0.1", sess_port=PORT_V4, timeout=10)
    try:
        with pytest.raises(SessionError):
            conn.login("bob", "wrong")
        assert rows(server) == []
        # impacket alone would serve this after a failed logon.
        with pytest.raises(SessionError):
            conn.connectTree("IPC$")
    finally:
        conn.getSMBServer().get_socket().close()


def test_pipe_factory_learns_the_caller(
    start_server: Callable[..., tuple[SessionServer, Pipes]],
) -> None:
    server, pipes = start_server()
    holder = SessionHolder(
        "127.0.0.1",
        PORT_V4,
        2,
        credentials=[("alice", "alicepw"), ("bob", "bobpw")],
        source_ips=["127.0.0.2", "127.0.0.3"],
    )
    with holder:
        for index in (0, 1):
            conn = holder.connection(index)
            conn.openFile(conn.connectTree("IPC$"), "srvsvc")
        keys = {info.username: key for key, info in server.snapshot()}
        callers = {e.caller.username: e.caller for e in pipes.made}
        assert callers["alice"].is_admin and not callers["bob"].is_admin
        assert callers["alice"].client_address == "127.0.0.2"
        assert callers["bob"].client_address == "127.0.0.3"
        assert callers["alice"].session_key == keys["alice"]
        assert not callers["alice"].is_guest
    assert wait_for(lambda: all(e.closed for e in pipes.made))


# -- disconnect ---------------------------------------------------------------


def test_disconnect_cuts_the_client_off(
    start_server: Callable[..., tuple[SessionServer, Pipes]],
) -> None:
    decoy = SessionInfo(r"\\10.9.9.9", "decoy", 0, 5, 5, 0, "", "")
    server, _ = start_server(decoys=[decoy])
    holder = SessionHolder(
        "127.0.0.1",
        PORT_V4,
        2,
        credentials=[("alice", "alicepw"), ("bob", "bobpw")],
        source_ips=["127.0.0.2", "127.0.0.3"],
    )
    with holder:
        snapshot = server.snapshot()
        # The holder logs on in parallel threads: live order is creation order, decoys last.
        assert sorted(info.username for _, info in snapshot[:2]) == ["alice", "bob"]
        assert snapshot[2][1] == decoy
        keys = {info.username: key for key, info in snapshot}
        bob_key, decoy_key = keys["bob"], keys["decoy"]
        assert decoy_key < 0
        assert server.disconnect([bob_key, decoy_key, 12345]) == [bob_key, decoy_key]
        assert [info.username for info in rows(server)] == ["alice"]
        bob = holder.connection(1)
        with pytest.raises(Exception):  # noqa: B017 (whatever impacket raises on a dead socket)
            bob.connectTree("IPC$")
        assert holder.alive(0)


def test_disconnecting_the_caller_sends_the_reply_first(
    start_server: Callable[..., tuple[SessionServer, Pipes]],
) -> None:
    server, pipes = start_server()
    pipes.kind = "self-disconnect"
    conn = impacket_connect("127.0.0.1", PORT_V4, "alice", "alicepw")
    tree = conn.connectTree("IPC$")
    pipe = conn.openFile(tree, "srvsvc")
    assert rows(server) != []
    conn.writeFile(tree, pipe, b"bye")
    # The session is gone from the table at once, but the queued reply still arrives.
    assert rows(server) == []
    assert [conn.readFile(tree, pipe) for _ in range(3)] == expected_messages(b"bye")
    assert is_cut_off(conn, tree)
    conn.getSMBServer().get_socket().close()


def test_disconnecting_the_caller_during_transceive(
    start_server: Callable[..., tuple[SessionServer, Pipes]],
) -> None:
    _, pipes = start_server()
    pipes.kind = "self-disconnect"
    conn = impacket_connect("127.0.0.1", PORT_V4, "alice", "alicepw")
    tree = conn.connectTree("IPC$")
    pipe = conn.openFile(tree, "srvsvc")
    first = conn.transactNamedPipe(tree, pipe, b"bye")
    assert first == expected_messages(b"bye")[0]
    # Two messages are still queued: the connection stays until they are read.
    assert conn.readFile(tree, pipe) == expected_messages(b"bye")[1]
    assert conn.readFile(tree, pipe) == expected_messages(b"bye")[2]
    assert is_cut_off(conn, tree)
    conn.getSMBServer().get_socket().close()


# -- message-mode pipe I/O -------------------------------------------------------


def _read_message_smb2(conn: SMBConnection, tree: Any, pipe: Any, size: int) -> tuple[bytes, int]:
    """One whole message through SMB2 READs of ``size`` bytes; returns it and the read count."""
    parts: list[bytes] = []
    for reads in range(1, 1000):
        try:
            parts.append(conn.getSMBServer().read(tree, pipe, 0, size))
            return b"".join(parts), reads
        except Exception as exc:
            if getattr(exc, "get_error_code", lambda: None)() != STATUS_BUFFER_OVERFLOW:
                raise
            response = smb2.SMB2Read_Response(exc.get_error_packet()["Data"])  # type: ignore[attr-defined]
            assert len(response["Buffer"]) == size
            parts.append(response["Buffer"])
    raise AssertionError("message never ended")


@pytest.mark.parametrize("dialect", [smb2.SMB2_DIALECT_002, smb2.SMB2_DIALECT_21, smb2.SMB2_DIALECT_30, None])
def test_small_reads_return_one_message_at_a_time(
    start_server: Callable[..., tuple[SessionServer, Pipes]], dialect: int | None
) -> None:
    _, pipes = start_server()
    read_message = _read_message_smb2
    conn = impacket_connect("127.0.0.1", PORT_V4, "bob", "bobpw", dialect)  # type: ignore[arg-type]
    try:
        tree = conn.connectTree("IPC$")
        pipe = conn.openFile(tree, "\\srvsvc")
        conn.writeFile(tree, pipe, b"ping")
        size = 1000
        got = [read_message(conn, tree, pipe, size) for _ in range(3)]
        assert [message for message, _ in got] == expected_messages(b"ping")
        assert [reads for _, reads in got] == [-(-(MESSAGE_SIZE + 4) // size)] * 3
        conn.closeFile(tree, pipe)
        assert pipes.made[0].closed
    finally:
        conn.close()


def test_impacket_transceive_then_reads_of_the_remaining_messages(
    start_server: Callable[..., tuple[SessionServer, Pipes]],
) -> None:
    start_server()
    conn = impacket_connect("127.0.0.1", PORT_V4, "alice", "alicepw")
    try:
        tree = conn.connectTree("IPC$")
        pipe = conn.openFile(tree, "srvsvc")
        messages = expected_messages(b"x" * 3000)
        assert conn.transactNamedPipe(tree, pipe, b"x" * 3000) == messages[0]
        # Whole-message reads: each returns exactly one message, never two.
        assert conn.readFile(tree, pipe) == messages[1]
        assert conn.readFile(tree, pipe) == messages[2]
    finally:
        conn.close()


def test_impacket_dcerpc_layer_binds_through_our_pipe(
    start_server: Callable[..., tuple[SessionServer, Pipes]],
) -> None:
    """impacket's DCE/RPC transport (write + read) against a pipe that answers in fragments."""
    from impacket.dcerpc.v5 import transport

    start_server()
    rpc = transport.SMBTransport(
        "127.0.0.1", dstport=PORT_V4, filename=r"\srvsvc", username="bob", password="bobpw"
    )
    rpc.set_connect_timeout(10)
    rpc.connect()
    try:
        rpc.send(b"abc")
        assert [rpc.recv() for _ in range(3)] == expected_messages(b"abc")
    finally:
        rpc.disconnect()


def _smbprotocol_pipe(host: str, port: int, user: str, password: str) -> Any:
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

    connection = Connection(uuid.uuid4(), host, port, require_signing=True)
    connection.connect(timeout=10)
    session = Session(connection, user, password, require_encryption=False)
    session.connect()
    tree = TreeConnect(session, rf"\\{host}\IPC$")
    tree.connect()
    handle = Open(tree, "srvsvc")
    handle.create(
        ImpersonationLevel.Impersonation,
        PIPE_DESIRED_ACCESS,
        0,
        ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE,
        CreateDisposition.FILE_OPEN,
        CreateOptions.FILE_NON_DIRECTORY_FILE,
    )
    return connection, session, tree, handle


def _smbprotocol_transceive(parts: Any, data: bytes, max_output: int) -> tuple[bytes, bool]:
    from smbprotocol.exceptions import BufferOverflow
    from smbprotocol.ioctl import CtlCode, IOCTLFlags, SMB2IOCTLRequest, SMB2IOCTLResponse

    connection, session, tree, handle = parts
    request = SMB2IOCTLRequest()
    request["ctl_code"] = CtlCode.FSCTL_PIPE_TRANSCEIVE
    request["file_id"] = handle.file_id
    request["max_output_response"] = max_output
    request["flags"] = IOCTLFlags.SMB2_0_IOCTL_IS_FSCTL
    request["buffer"] = data
    sent = connection.send(request, session.session_id, tree.tree_connect_id)
    try:
        header, more = connection.receive(sent), False
    except BufferOverflow as exc:
        header, more = exc.header, True
    response = SMB2IOCTLResponse()
    response.unpack(header["data"].get_value())
    return bytes(response["buffer"].get_value()), more


@pytest.mark.parametrize(("host", "port"), [("127.0.0.1", PORT_V4), ("::1", PORT_V6)])
def test_smbprotocol_opens_the_pipe_and_transceives(
    start_server: Callable[..., tuple[SessionServer, Pipes]], host: str, port: int
) -> None:
    server, _ = start_server(host, port)
    parts = _smbprotocol_pipe(host, port, "alice", "alicepw")
    connection, _, _, handle = parts
    try:
        messages = expected_messages(b"hi")
        assert _smbprotocol_transceive(parts, b"hi", 65536) == (messages[0], False)
        assert handle.read(0, 65536) == messages[1]
        assert handle.read(0, 65536) == messages[2]
        # A reply bigger than the output buffer: STATUS_BUFFER_OVERFLOW, rest by reads.
        chunk, more = _smbprotocol_transceive(parts, b"hi", 1024)
        assert (chunk, more) == (messages[0][:1024], True)
        [info] = rows(server)
        assert info.username == "alice" and info.num_opens == 1
    finally:
        connection.disconnect()


# -- shutdown (impacket's stock srvsvc answers are gone: srvsvc.py answers every opnum)


def test_stop_closes_clients_and_leaves_no_threads() -> None:
    before = set(threading.enumerate())
    server = build_server(
        "127.0.0.1", PORT_V4, accounts=ACCOUNTS, make_pipe_factory=lambda control: EchoEndpoint
    )
    server.start()
    conns = [impacket_connect("127.0.0.1", PORT_V4, "bob", "bobpw") for _ in range(3)]
    trees = [conn.connectTree("IPC$") for conn in conns]
    conns[0].openFile(trees[0], "srvsvc")
    assert len(rows(server)) == 3
    server.stop()
    assert set(threading.enumerate()) == before
    for conn, tree in zip(conns, trees, strict=True):
        assert is_cut_off(conn, tree)
        conn.getSMBServer().get_socket().close()
    # The port is free again at once.
    again = build_server("127.0.0.1", PORT_V4, accounts=ACCOUNTS)
    again.stop()
