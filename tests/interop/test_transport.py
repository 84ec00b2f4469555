"""SmbPipe against a real Samba smbd: logons, the srvsvc pipe end to end, errors.

The pipe is proven with a DCE/RPC bind built by hand (C706 12.6.4.3): a
bind_ack (PTYPE 12) must come back for srvsvc 3.0 over NDR.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from smbsessions.auth import ANONYMOUS, Credentials, nt_hash_of
from smbsessions.status import (
    AuthenticationError,
    HostTimeoutError,
    TransportError,
    UnsupportedDialectError,
)
from smbsessions.transport import SmbPipe

from ..peers.samba import PortInUseError, SambaServer, port_is_free, unavailable_reason
from .conftest import interop_ports

SRVSVC = uuid.UUID("4B324FC8-1670-01D3-1278-5A47BF6EE188")
NDR20 = uuid.UUID("8A885D04-1CEB-11C9-9FE8-08002B104860")
PTYPE_BIND_ACK = 12
STATUS_LOGON_FAILURE = 0xC000006D
STATUS_ACCOUNT_DISABLED = 0xC0000072
STATUS_ACCESS_DENIED = 0xC0000022
STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034
SMB_3_1_1 = 0x0311
TIMEOUT = 10.0

SambaFactory = Callable[..., SambaServer]


def srvsvc_bind(call_id: int = 1) -> bytes:
    """A DCE/RPC bind for srvsvc v3.0, NDR 2.0, one presentation context."""
    abstract = SRVSVC.bytes_le + struct.pack("<HH", 3, 0)
    transfer = NDR20.bytes_le + struct.pack("<I", 2)
    body = (
        struct.pack("<HHI", 4280, 4280, 0)  # max_xmit_frag, max_recv_frag, assoc_group
        + struct.pack("<B3x", 1)  # one context item
        + struct.pack("<HBx", 0, 1)  # context id 0, one transfer syntax
        + abstract
        + transfer
    )
    header = struct.pack("<BBBB4sHHI", 5, 0, 11, 0x03, b"\x10\x00\x00\x00", 16 + len(body), 0, call_id)
    return header + body


def assert_bind_ack(reply: bytes, call_id: int = 1) -> None:
    assert reply[0] == 5 and reply[2] == PTYPE_BIND_ACK
    frag_length, _auth_length, reply_call_id = struct.unpack_from("<HHI", reply, 8)
    assert frag_length == len(reply)
    assert reply_call_id == call_id


def alice(samba: SambaServer) -> Credentials:
    return Credentials(samba.admin.name, password=samba.admin.password)


def bob(samba: SambaServer) -> Credentials:
    return Credentials(samba.user.name, password=samba.user.password)


def smb_worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("msg_worker") and t.is_alive()]


# ---------------------------------------------------------------- logons and the pipe


def test_password_logon_binds_srvsvc(samba: SambaServer) -> None:
    with SmbPipe.open(samba.host, samba.port, credentials=alice(samba), timeout=TIMEOUT) as pipe:
        assert pipe.dialect == SMB_3_1_1
        assert pipe.dialect_name == "SMB 3.1.1"
        assert pipe.signing  # mandatory for a 3.1.1 tree connect
        assert not pipe.encryption
        assert pipe.server_address == (samba.host, samba.port)
        assert pipe.local_address[0] == samba.host
        assert pipe.pipe == "srvsvc"
        assert_bind_ack(pipe.transceive(srvsvc_bind()))
    assert pipe.closed


def test_plain_user_opens_the_pipe_too(samba: SambaServer) -> None:
    with SmbPipe.open(samba.host, samba.port, credentials=bob(samba), timeout=TIMEOUT) as pipe:
        assert_bind_ack(pipe.transceive(srvsvc_bind()))


def test_nt_hash_logon(samba: SambaServer) -> None:
    creds = Credentials(samba.admin.name, nt_hash=nt_hash_of(samba.admin.password))
    with SmbPipe.open(samba.host, samba.port, credentials=creds, timeout=TIMEOUT) as pipe:
        assert_bind_ack(pipe.transceive(srvsvc_bind()))


def test_domain_qualified_logon(samba: SambaServer) -> None:
    creds = Credentials(samba.admin.name, "SMBSESSIONS", password=samba.admin.password)
    with SmbPipe.open(samba.host, samba.port, credentials=creds, timeout=TIMEOUT) as pipe:
        assert_bind_ack(pipe.transceive(srvsvc_bind()))


def test_anonymous_null_session(samba: SambaServer) -> None:
    with SmbPipe.open(samba.host, samba.port, credentials=ANONYMOUS, timeout=TIMEOUT) as pipe:
        assert pipe.anonymous
        assert not pipe.signing
        assert_bind_ack(pipe.transceive(srvsvc_bind()))


def test_ipv6_loopback(samba: SambaServer) -> None:
    if "::1" not in samba.bind_addrs:
        pytest.skip("this smbd does not listen on ::1")
    with SmbPipe.open("::1", samba.port, credentials=alice(samba), timeout=TIMEOUT) as pipe:
        assert pipe.server_address == ("::1", samba.port)
        assert_bind_ack(pipe.transceive(srvsvc_bind()))


def test_required_encryption(samba: SambaServer) -> None:
    with SmbPipe.open(
        samba.host, samba.port, credentials=alice(samba), timeout=TIMEOUT, require_encryption=True
    ) as pipe:
        assert pipe.encryption
        assert_bind_ack(pipe.transceive(srvsvc_bind()))


def test_overflowing_reply_is_completed_with_reads(samba: SambaServer) -> None:
    with SmbPipe.open(samba.host, samba.port, credentials=alice(samba), timeout=TIMEOUT) as pipe:
        # 16 bytes fit only the PDU header: STATUS_BUFFER_OVERFLOW, then reads.
        assert_bind_ack(pipe.transceive(srvsvc_bind(), max_output=16))


def test_write_then_read(samba: SambaServer) -> None:
    with SmbPipe.open(samba.host, samba.port, credentials=alice(samba), timeout=TIMEOUT) as pipe:
        bind = srvsvc_bind(call_id=7)
        assert pipe.write(bind) == len(bind)
        head = pipe.read(10)  # a short read of a longer message is not an error
        rest = pipe.read()
        assert_bind_ack(head + rest, call_id=7)


def test_close_is_idempotent_and_final(samba: SambaServer) -> None:
    pipe = SmbPipe.open(samba.host, samba.port, credentials=alice(samba), timeout=TIMEOUT)
    pipe.close()
    pipe.close()
    with pytest.raises(TransportError, match="closed"):
        pipe.transceive(srvsvc_bind())


def test_no_thread_or_fd_left_after_many_opens(samba: SambaServer) -> None:
    before_fds = _open_fds()
    wrong = Credentials(samba.admin.name, password="wrong")
    for _ in range(20):
        with SmbPipe.open(samba.host, samba.port, credentials=alice(samba), timeout=TIMEOUT) as p:
            p.transceive(srvsvc_bind())
        with pytest.raises(AuthenticationError):
            SmbPipe.open(samba.host, samba.port, credentials=wrong, timeout=TIMEOUT)
    assert smb_worker_threads() == []
    assert _open_fds() <= before_fds


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("user", ["alice", "nosuchuser"])
def test_bad_logon_is_authentication_error(samba: SambaServer, user: str) -> None:
    secret = "Wr0ng-Pa55"
    creds = Credentials(user, password=secret)
    with pytest.raises(AuthenticationError) as info:
        SmbPipe.open(samba.host, samba.port, credentials=creds, timeout=TIMEOUT)
    assert info.value.ntstatus == STATUS_LOGON_FAILURE
    assert "STATUS_LOGON_FAILURE" in str(info.value)
    assert secret not in str(info.value)
    assert smb_worker_threads() == []


def test_missing_pipe_is_transport_error_with_status(samba: SambaServer) -> None:
    with pytest.raises(TransportError) as info:
        SmbPipe.open(samba.host, samba.port, credentials=alice(samba), timeout=TIMEOUT, pipe="nosuchpipe")
    assert info.value.ntstatus == STATUS_OBJECT_NAME_NOT_FOUND
    assert "STATUS_OBJECT_NAME_NOT_FOUND" in str(info.value)


def test_read_on_an_idle_pipe_times_out_and_closes(samba: SambaServer) -> None:
    pipe = SmbPipe.open(samba.host, samba.port, credentials=alice(samba), timeout=TIMEOUT)
    with pytest.raises(HostTimeoutError, match="read"):
        pipe.read(timeout=0.5)
    assert pipe.closed
    assert smb_worker_threads() == []


@contextmanager
def stalling_relay(target: tuple[str, int], replies_to_pass: int, cut: bool = False) -> Iterator[int]:
    """A loopback TCP relay that forwards the first ``replies_to_pass`` server
    messages to the client and then swallows everything: a server gone silent.
    With ``cut``, it forwards half of the next message instead and closes the
    connection cleanly: a server closing mid-reply."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    stop = threading.Event()

    def run() -> None:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        with client, socket.create_connection(target, timeout=5) as server:
            pending = b""
            passed = 0
            for _ in range(100_000):  # bounded; each select waits at most 0.05 s
                if stop.is_set():
                    return
                readable, _, _ = select.select([client, server], [], [], 0.05)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        server.sendall(data)
                        continue
                    pending += data
                    while passed < replies_to_pass and len(pending) >= 4:
                        size = 4 + struct.unpack(">I", pending[:4])[0]
                        if len(pending) < size:
                            break
                        client.sendall(pending[:size])
                        pending = pending[size:]
                        passed += 1
                    if cut and passed == replies_to_pass and len(pending) >= 8:
                        client.sendall(pending[: len(pending) // 2])
                        client.shutdown(socket.SHUT_RDWR)
                        return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@pytest.mark.parametrize(
    ("replies", "phase"),
    [(1, "session setup"), (3, "tree connect"), (4, "opening pipe")],
)
def test_server_going_silent_mid_open_times_out(samba: SambaServer, replies: int, phase: str) -> None:
    # Replies: 1 negotiate, 2 and 3 the two session setup legs, 4 tree connect.
    with (
        stalling_relay((samba.host, samba.port), replies) as port,
        pytest.raises(HostTimeoutError, match=phase),
    ):
        SmbPipe.open("127.0.0.1", port, credentials=alice(samba), timeout=1.0)
    assert smb_worker_threads() == []


@pytest.mark.parametrize(
    ("replies", "phase"),
    [(1, "session setup"), (3, "tree connect"), (4, "opening pipe")],
)
def test_server_closing_mid_reply_says_so(samba: SambaServer, replies: int, phase: str) -> None:
    with (
        stalling_relay((samba.host, samba.port), replies, cut=True) as port,
        pytest.raises(TransportError, match=f"closed the connection during {phase}") as info,
    ):
        SmbPipe.open("127.0.0.1", port, credentials=alice(samba), timeout=TIMEOUT)
    assert "TypeError" not in str(info.value)
    assert smb_worker_threads() == []


def test_server_closing_mid_reply_to_transceive_says_so(samba: SambaServer) -> None:
    with stalling_relay((samba.host, samba.port), 5, cut=True) as port:
        pipe = SmbPipe.open("127.0.0.1", port, credentials=alice(samba), timeout=TIMEOUT)
        with pytest.raises(TransportError, match="connection lost") as info:
            pipe.transceive(srvsvc_bind())
        assert "TypeError" not in str(info.value)
        assert pipe.closed
    assert smb_worker_threads() == []


def test_server_going_silent_during_transceive_times_out(samba: SambaServer) -> None:
    with stalling_relay((samba.host, samba.port), 5) as port:
        pipe = SmbPipe.open("127.0.0.1", port, credentials=alice(samba), timeout=TIMEOUT)
        with pytest.raises(HostTimeoutError, match="transceive"):
            pipe.transceive(srvsvc_bind(), timeout=0.5)
        assert pipe.closed
    assert smb_worker_threads() == []


# ---------------------------------------------------------------- special servers


@contextmanager
def unwarmed_samba(**kwargs: object) -> Iterator[SambaServer]:
    """A private smbd without the fixtures' rpcclient warm-up, which needs SMB2."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"Samba interop peer unavailable: {reason}")
    for port in interop_ports():
        if not port_is_free(port):
            continue
        server = SambaServer(port, **kwargs)  # type: ignore[arg-type]
        try:
            server.start()
        except PortInUseError:
            continue
        try:
            yield server
        finally:
            server.stop()
        return
    pytest.fail("no free port for smbd (set SMBSESSIONS_INTEROP_PORTS)")


SMB1_ONLY = ["server min protocol = NT1", "server max protocol = NT1"]


def test_smb1_only_server() -> None:
    with (
        unwarmed_samba(extra_global=SMB1_ONLY) as server,
        pytest.raises(UnsupportedDialectError, match="SMB1 is not supported"),
    ):
        SmbPipe.open(server.host, server.port, credentials=alice(server), timeout=TIMEOUT)
    assert smb_worker_threads() == []


def test_server_requiring_encryption(samba_factory: SambaFactory) -> None:
    server = samba_factory(extra_global=["server smb encrypt = required"])
    with SmbPipe.open(server.host, server.port, credentials=alice(server), timeout=TIMEOUT) as pipe:
        assert pipe.encryption
        assert_bind_ack(pipe.transceive(srvsvc_bind()))
    with pytest.raises(AuthenticationError):
        SmbPipe.open(server.host, server.port, credentials=ANONYMOUS, timeout=TIMEOUT)


def test_restricted_anonymous_and_disabled_account(samba_factory: SambaFactory) -> None:
    server = samba_factory(extra_global=["restrict anonymous = 2"])
    with pytest.raises(TransportError) as denied:
        SmbPipe.open(server.host, server.port, credentials=ANONYMOUS, timeout=TIMEOUT)
    assert denied.value.ntstatus == STATUS_ACCESS_DENIED
    assert "tree connect" in str(denied.value)

    subprocess.run(
        ["smbpasswd", "-c", str(server.conf), "-d", server.user.name],
        env=server.tool_env(),
        check=True,
        capture_output=True,
        timeout=30,
    )
    with pytest.raises(AuthenticationError) as disabled:
        SmbPipe.open(server.host, server.port, credentials=bob(server), timeout=TIMEOUT)
    assert disabled.value.ntstatus == STATUS_ACCOUNT_DISABLED
    assert "STATUS_ACCOUNT_DISABLED" in str(disabled.value)
