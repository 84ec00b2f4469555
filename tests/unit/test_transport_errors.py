"""SmbPipe's error mapping and timeouts against local fake servers (no Samba).

Every fake listens on 127.0.0.1 with an ephemeral port; every test bounds its own
run time through SmbPipe's timeout and the listener's bounded loops.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import pytest

from smbsessions import kerberos, transport
from smbsessions.auth import ANONYMOUS, Credentials
from smbsessions.ntlm import ntlm_anonymous_authenticate, ntlm_anonymous_negotiate
from smbsessions.status import (
    AuthenticationError,
    HostTimeoutError,
    HostUnreachableError,
    ProtocolError,
    TransportError,
    UnsupportedDialectError,
    ntstatus_name,
)
from smbsessions.transport import SmbPipe, dialect_name

ALICE = Credentials("alice", password="alicepw")
OPEN_TIMEOUT = 1.0
LISTENER_LIFETIME = 20.0  # hard stop for every fake server thread

Handler = Callable[[socket.socket, threading.Event], None]


@contextmanager
def fake_server(handler: Handler) -> Iterator[int]:
    """Accept connections on 127.0.0.1 and run ``handler(conn, stop)`` for each."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.05)
    stop = threading.Event()
    workers: list[threading.Thread] = []

    def accept_loop() -> None:
        deadline = threading.Event()
        timer = threading.Timer(LISTENER_LIFETIME, deadline.set)
        timer.start()
        try:
            while not stop.is_set() and not deadline.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                worker = threading.Thread(target=_serve, args=(handler, conn, stop), daemon=True)
                worker.start()
                workers.append(worker)
        finally:
            timer.cancel()

    acceptor = threading.Thread(target=accept_loop, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        acceptor.join(5)
        for worker in workers:
            worker.join(5)
        listener.close()


def _serve(handler: Handler, conn: socket.socket, stop: threading.Event) -> None:
    with conn, suppress(OSError):
        handler(conn, stop)


def silent(conn: socket.socket, stop: threading.Event) -> None:
    stop.wait(LISTENER_LIFETIME)


def trickle(conn: socket.socket, stop: threading.Event) -> None:
    # A plausible frame header for a huge message, one byte per second.
    for byte in b"\x00\x00\xff\xff\xfeSMB" * 4:
        if stop.wait(1.0):
            return
        conn.sendall(bytes([byte]))


def close_at_once(conn: socket.socket, stop: threading.Event) -> None:
    conn.recv(4096)


def garbage(conn: socket.socket, stop: threading.Event) -> None:
    # A well-framed message that is not SMB at all.
    conn.recv(4096)
    junk = b"HTTP/1.0 400 Bad Request\r\n\r\n".ljust(96, b"-")
    conn.sendall(struct.pack(">I", len(junk)) + junk)
    stop.wait(LISTENER_LIFETIME)


def _recv_frame(conn: socket.socket) -> bytes:
    conn.settimeout(5)
    header = b""
    while len(header) < 4:
        chunk = conn.recv(4 - len(header))
        if not chunk:
            return b""
        header += chunk
    (length,) = struct.unpack(">I", header)
    body = b""
    while len(body) < length:
        chunk = conn.recv(length - len(body))
        if not chunk:
            return b""
        body += chunk
    return body


def smb1_only(conn: socket.socket, stop: threading.Event) -> None:
    """Like Samba with ``server max protocol = NT1``: drop SMB2, answer SMB1."""
    message = _recv_frame(conn)
    if message[:4] != b"\xffSMB":
        return  # an SMB2 NEGOTIATE: hang up, as smbd does
    reply = b"\xffSMB\x72" + bytes(27) + b"\x11" + bytes(34) + b"\x00\x00"
    conn.sendall(struct.pack(">I", len(reply)) + reply)


@pytest.fixture
def threads_before() -> set[threading.Thread]:
    return set(threading.enumerate())


def assert_no_new_smb_threads(before: set[threading.Thread]) -> None:
    leftover = [
        t for t in set(threading.enumerate()) - before if t.name.startswith("msg_worker") and t.is_alive()
    ]
    assert leftover == []


def free_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = int(probe.getsockname()[1])
    probe.close()
    return port


# ---------------------------------------------------------------- unreachable


def test_refused_port_is_host_unreachable(threads_before: set[threading.Thread]) -> None:
    with pytest.raises(HostUnreachableError, match="refused"):
        SmbPipe.open("127.0.0.1", free_port(), credentials=ALICE, timeout=OPEN_TIMEOUT)
    assert_no_new_smb_threads(threads_before)


def test_unresolvable_name_is_host_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    # No real DNS query: the resolver itself is replaced.
    def no_such_name(*args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    with pytest.raises(HostUnreachableError, match="resolve"):
        SmbPipe.open("name.invalid", 445, credentials=ALICE, timeout=OPEN_TIMEOUT)


# ---------------------------------------------------------------- timeouts


def test_silent_host_times_out(threads_before: set[threading.Thread]) -> None:
    with fake_server(silent) as port, pytest.raises(HostTimeoutError, match="negotiate") as info:
        SmbPipe.open("127.0.0.1", port, credentials=ALICE, timeout=OPEN_TIMEOUT)
    assert isinstance(info.value, TransportError)
    assert_no_new_smb_threads(threads_before)


def test_trickling_host_times_out(threads_before: set[threading.Thread]) -> None:
    with fake_server(trickle) as port, pytest.raises(HostTimeoutError):
        SmbPipe.open("127.0.0.1", port, credentials=ALICE, timeout=OPEN_TIMEOUT)
    assert_no_new_smb_threads(threads_before)


def test_fractional_timeout_is_not_rounded_to_whole_seconds() -> None:
    # smbprotocol's own receive(timeout=...) truncates to int and waits at least 1 s;
    # the deadline here is the monotonic one, so the error names the given value.
    with fake_server(silent) as port, pytest.raises(HostTimeoutError, match=r"0\.3 s"):
        SmbPipe.open("127.0.0.1", port, credentials=ALICE, timeout=0.3)


# ---------------------------------------------------------------- dialects


def test_smb1_only_server_is_unsupported_dialect(threads_before: set[threading.Thread]) -> None:
    with (
        fake_server(smb1_only) as port,
        pytest.raises(UnsupportedDialectError, match="SMB1 is not supported"),
    ):
        SmbPipe.open("127.0.0.1", port, credentials=ALICE, timeout=OPEN_TIMEOUT * 3)
    assert_no_new_smb_threads(threads_before)


def test_server_hanging_up_during_negotiate_is_unreachable_not_a_dialect_error() -> None:
    with (
        fake_server(close_at_once) as port,
        pytest.raises(HostUnreachableError, match="closed the connection during negotiate"),
    ):
        SmbPipe.open("127.0.0.1", port, credentials=ALICE, timeout=OPEN_TIMEOUT * 3)


def test_non_smb_answer_is_a_protocol_error(threads_before: set[threading.Thread]) -> None:
    with fake_server(garbage) as port, pytest.raises(ProtocolError, match="not an SMB server") as info:
        SmbPipe.open("127.0.0.1", port, credentials=ALICE, timeout=OPEN_TIMEOUT * 3)
    assert "'HTTP/1.0 400 Bad Reques" in str(info.value)
    assert_no_new_smb_threads(threads_before)


# ---------------------------------------------------------------- refused before connecting


def test_missing_password_is_refused_before_connecting() -> None:
    with pytest.raises(AuthenticationError, match="no password"):
        SmbPipe.open("127.0.0.1", free_port(), credentials=Credentials("alice"))


def test_anonymous_cannot_require_encryption() -> None:
    with pytest.raises(AuthenticationError, match="anonymous"):
        SmbPipe.open("127.0.0.1", free_port(), credentials=ANONYMOUS, require_encryption=True)


def test_kerberos_without_gssapi_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = kerberos.errors.importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == "gssapi" else real_find_spec(name)

    monkeypatch.setattr(kerberos.errors.importlib.util, "find_spec", find_spec)
    with pytest.raises(AuthenticationError, match=r"gssapi.*smbsessions\[kerberos\].*libkrb5-dev"):
        SmbPipe.open("127.0.0.1", free_port(), credentials=Credentials("alice", kerberos=True))


def test_bad_timeout_and_pipe_name() -> None:
    with pytest.raises(ValueError):
        SmbPipe.open("127.0.0.1", free_port(), credentials=ALICE, timeout=0)
    with pytest.raises(ValueError):
        SmbPipe.open("127.0.0.1", free_port(), credentials=ALICE, pipe="\\PIPE\\")


# ---------------------------------------------------------------- small pure helpers


def test_ntstatus_and_dialect_names() -> None:
    assert ntstatus_name(0xC000006D) == "STATUS_LOGON_FAILURE"
    assert ntstatus_name(0xC0000072) == "STATUS_ACCOUNT_DISABLED"
    assert ntstatus_name(0xC0000022) == "STATUS_ACCESS_DENIED"
    assert ntstatus_name(0xC0DEC0DE) == "NTSTATUS_0xC0DEC0DE"
    assert dialect_name(0x0311) == "SMB 3.1.1"
    assert dialect_name(0x0202) == "SMB 2.0.2"
    assert dialect_name(0x0399) == "SMB dialect 0x0399"


def test_pipe_name_forms() -> None:
    assert transport._bare_pipe_name("srvsvc") == "srvsvc"
    assert transport._bare_pipe_name("\\PIPE\\srvsvc") == "srvsvc"
    assert transport._bare_pipe_name("\\pipe\\srvsvc") == "srvsvc"
    assert transport._bare_pipe_name("/pipe/srvsvc") == "srvsvc"


def test_ntlm_anonymous_negotiate_layout() -> None:
    message = ntlm_anonymous_negotiate()
    assert message[:8] == b"NTLMSSP\x00"
    assert struct.unpack_from("<I", message, 8) == (1,)
    assert len(message) == 32


def _challenge(flags: int) -> bytes:
    return b"NTLMSSP\x00" + struct.pack("<IHHII", 2, 0, 0, 48, flags) + bytes(8) + bytes(16)


def test_ntlm_anonymous_authenticate_layout() -> None:
    message = ntlm_anonymous_authenticate(_challenge(0x00088201))
    assert message[:8] == b"NTLMSSP\x00"
    assert struct.unpack_from("<I", message, 8) == (3,)
    fields = [struct.unpack_from("<HHI", message, 12 + 8 * i) for i in range(6)]
    lm, nt, domain, user, workstation, session_key = fields
    assert lm[0] == 1 and message[lm[2] : lm[2] + 1] == b"\x00"  # Z(1), MS-NLMP 3.1.5.1.2
    for empty in (nt, domain, user, workstation, session_key):
        assert empty[0] == 0 and empty[2] <= len(message)
    (flags,) = struct.unpack_from("<I", message, 60)
    assert flags & 0x00000800  # NTLMSSP_NEGOTIATE_ANONYMOUS
    assert flags & 0x00000001  # Unicode, as the server offered


def test_ntlm_anonymous_authenticate_rejects_non_challenge() -> None:
    with pytest.raises(TransportError):
        ntlm_anonymous_authenticate(b"NTLMSSP\x00" + struct.pack("<I", 1) + bytes(20))
    with pytest.raises(TransportError):
        ntlm_anonymous_authenticate(b"not ntlm")
