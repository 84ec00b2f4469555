"""Regression tests for the attacks that took impacket's engine down (issue #8), against our core.

Each attack runs while an administrator enumerates; each test bounds the server's
memory (RSS of this process, server in-process) and the administrator's latency.
The bounds are generous on purpose (a shared 2-core machine): they catch a server
that falls over or grows without limit, not a slow one.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from smbsessions.auth import Credentials
from smbsessions.client import SessionClient
from smbsessions.rules import SessionInfoPolicy
from smbsessions.server.shell import SessionServer, build_server
from smbsessions.server.srvsvc import srvsvc_factory

pytestmark = pytest.mark.timeout(180)

ACCOUNTS = ["alice:alicepw:admin", "bob:bobpw"]
ADMIN_LATENCY_BOUND = 10.0  # seconds for connect + logon + bind + one enumeration
MEMORY_BOUND = 150 << 20  # bytes of RSS growth during one attack


def rss() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def start() -> Iterator[Callable[..., SessionServer]]:
    started: list[SessionServer] = []

    def run(**kwargs: Any) -> SessionServer:
        kwargs.setdefault("accounts", ACCOUNTS)
        server = build_server(
            "127.0.0.1", 0, make_pipe_factory=lambda control: srvsvc_factory(control, SessionInfoPolicy.ADMINS),
            **kwargs)
        server.start()
        started.append(server)
        return server

    try:
        yield run
    finally:
        for server in started:
            server.stop()


def admin_enumerates(server: SessionServer) -> float:
    """Seconds for an administrator to connect and enumerate (raises if it cannot)."""
    host, port = server.address
    began = time.monotonic()
    with SessionClient(host, port, credentials=Credentials(username="alice", password="alicepw"),
                       timeout=ADMIN_LATENCY_BOUND) as client:
        list(client.enum(10))
    return time.monotonic() - began


def negotiate_frame() -> bytes:
    body = struct.pack("<HHHHI16sIHH", 36, 1, 1, 0, 0, bytes(16), 0, 0, 0) + struct.pack("<H", 0x0202)
    header = b"\xfeSMB" + struct.pack("<HHIHHIIQIIQ", 64, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0) + bytes(16)
    message = header + body
    return len(message).to_bytes(4, "big") + message


def open_sockets(server: SessionServer, count: int, source: str = "127.0.0.1",
                 first: bytes = b"") -> list[socket.socket]:
    host, port = server.address
    socks = []
    for _ in range(count):
        try:
            sock = socket.create_connection((host, port), timeout=5, source_address=(source, 0))
        except OSError:
            continue
        socks.append(sock)
        if first:
            with contextlib.suppress(OSError):
                sock.sendall(first)
    return socks


def closed_by_server(sock: socket.socket, wait: float = 0.0) -> bool:
    sock.settimeout(wait)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except TimeoutError:
        return False
    except OSError:
        return True


def close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


# ---------------------------------------------------------------- connection floods


def test_connection_flood_leaves_room_for_an_administrator(start: Callable[..., SessionServer]) -> None:
    server = start(max_connections=120, max_per_address=1000)
    before = rss()
    attackers = open_sockets(server, 200, first=negotiate_frame())
    try:
        assert wait_until(lambda: server.connection_count() <= 120, 10)
        # The unauthenticated slots are full; the administrator's connection takes the
        # place of the oldest of them and logs on.
        assert admin_enumerates(server) < ADMIN_LATENCY_BOUND
        assert rss() - before < MEMORY_BOUND
    finally:
        close_all(attackers)


def test_one_address_cannot_take_every_slot(start: Callable[..., SessionServer]) -> None:
    server = start(max_connections=200, max_per_address=16)
    attackers = open_sockets(server, 60, source="127.0.0.5", first=negotiate_frame())
    try:
        assert wait_until(lambda: sum(closed_by_server(s) for s in attackers) >= 60 - 16, 10)
        assert admin_enumerates(server) < ADMIN_LATENCY_BOUND
    finally:
        close_all(attackers)


def test_null_session_exhaustion(start: Callable[..., SessionServer]) -> None:
    from ..peers.holders import ANONYMOUS, SessionHolder

    server = start(max_connections=80, max_per_address=1000)
    before = rss()
    holder = SessionHolder(*server.address, 70, credentials=[ANONYMOUS], source_ips=["127.0.0.6"],
                           workers=8)
    holder.open()
    try:
        # Null sessions are not authenticated sessions: the reserved slots stay free.
        assert admin_enumerates(server) < ADMIN_LATENCY_BOUND
        assert rss() - before < MEMORY_BOUND
    finally:
        holder.close()


# ---------------------------------------------------------------- slowloris and huge frames


def test_slowloris_is_cut_off_and_the_admin_is_served(start: Callable[..., SessionServer]) -> None:
    server = start(preauth_timeout=2.0, idle_timeout=4.0)
    # Half a frame header, then nothing, from 100 connections of one address.
    attackers = open_sockets(server, 100, source="127.0.0.7", first=b"\x00\x00")
    try:
        assert admin_enumerates(server) < ADMIN_LATENCY_BOUND
        assert wait_until(lambda: all(closed_by_server(s) for s in attackers), 15)
    finally:
        close_all(attackers)


def test_huge_netbios_lengths_are_refused_before_allocation(start: Callable[..., SessionServer]) -> None:
    server = start()
    before = rss()
    attackers = open_sockets(server, 50, first=b"\x00\xff\xff\xff" + b"A" * 1000)
    try:
        assert wait_until(lambda: all(closed_by_server(s) for s in attackers), 10)
        assert rss() - before < 20 << 20
        assert admin_enumerates(server) < ADMIN_LATENCY_BOUND
    finally:
        close_all(attackers)


# ---------------------------------------------------------------- pipes x unfinished fragments


def test_pipes_with_unfinished_fragments_are_capped_and_released(start: Callable[..., SessionServer]) -> None:
    from impacket.smbconnection import SessionError, SMBConnection

    server = start()
    host, port = server.address
    before = rss()
    # A DCE/RPC request fragment header announcing 65535 bytes, followed by part of them.
    fragment = struct.pack("<BBBBIHHI", 5, 0, 0, 3, 0x10, 65535, 0, 1) + b"x" * 4000
    conns = []
    try:
        for _ in range(4):
            conn = SMBConnection(host, host, sess_port=port, timeout=10)
            conn.login("bob", "bobpw")
            conns.append(conn)
            tree = conn.connectTree("IPC$")
            opened = 0
            for _ in range(70):
                try:
                    fid = conn.openFile(tree, "srvsvc", desiredAccess=0x0012019F)
                except SessionError as exc:
                    assert exc.getErrorCode() == 0xC000009A  # STATUS_INSUFFICIENT_RESOURCES
                    break
                opened += 1
                with contextlib.suppress(SessionError):
                    conn.writeFile(tree, fid, fragment)
            assert opened == 64
        assert rss() - before < MEMORY_BOUND
        assert admin_enumerates(server) < ADMIN_LATENCY_BOUND
    finally:
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()
    budget = server.core_config.pipe_budget
    assert wait_until(lambda: budget.used == 0, 10)
