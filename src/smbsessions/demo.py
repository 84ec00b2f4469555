"""``make demo``: the main job end to end on loopback, nothing outside this machine.

1. Start our SMB server on 127.0.0.1 (a free port) with an admin and a user.
2. Hold sessions as alice from 127.0.0.2 and bob from 127.0.0.3, each with the
   srvsvc pipe open (it counts in num_opens, as on Windows), plus a null
   session from 127.0.0.4.
3. Enumerate at level 502 with our client (table).
4. Delete bob's sessions; show that bob's client was really cut off.
5. Enumerate again, stop everything.

Every step prints the ``smbsessions`` command that does the same from a shell.
Held sessions use our own client stack (smbprotocol underneath), on sockets
bound to the wanted loopback source address.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import IO, Any

from smbsessions.auth import ANONYMOUS, Credentials
from smbsessions.client import SessionClient
from smbsessions.output import session_table
from smbsessions.rules import SessionInfoPolicy
from smbsessions.status import NetApiError, SmbSessionsError

ADMIN = ("alice", "demo-alice-pw")
USER = ("bob", "demo-bob-pw")

# smbprotocol's Tcp transport connects with ``socket.create_connection`` and has no
# source-address option. The one private name used: ``smbprotocol.transport.socket``
# (the module it calls), swapped for the length of one connect under a lock.
_source_lock = threading.Lock()


class _SourceSocket(ModuleType):
    def __init__(self, source: str) -> None:
        super().__init__("socket")
        self._source = source

    def __getattr__(self, name: str) -> Any:
        return getattr(socket, name)

    def create_connection(self, address: tuple[str, int], timeout: float | None = None,
                          *args: Any, **kwargs: Any) -> socket.socket:
        return socket.create_connection(address, timeout, source_address=(self._source, 0))


@contextmanager
def _from_source(source: str) -> Iterator[None]:
    import smbprotocol.transport as smb_transport

    with _source_lock:
        original = smb_transport.socket
        smb_transport.socket = _SourceSocket(source)
        try:
            yield
        finally:
            smb_transport.socket = original


class HeldSession:
    """An SMB session from a chosen loopback source address with the srvsvc pipe open."""

    def __init__(self, host: str, port: int, source: str, user: str, password: str) -> None:
        credentials = Credentials(username=user, password=password) if user else ANONYMOUS
        with _from_source(source):
            self.client = SessionClient(host, port, credentials=credentials).open()

    def alive(self) -> bool:
        """True while the server still answers this session (a refusal is an answer)."""
        try:
            self.client.enum(0)
        except NetApiError:
            return True
        except SmbSessionsError:
            return False
        return True

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already cut off by the server
            self.client.close()


@contextmanager
def demo_server() -> Iterator[tuple[str, int]]:
    from smbsessions.server.shell import build_server
    from smbsessions.server.srvsvc import srvsvc_factory

    server = build_server(
        "127.0.0.1", 0,
        accounts=[f"{ADMIN[0]}:{ADMIN[1]}:admin", f"{USER[0]}:{USER[1]}"],
        make_pipe_factory=lambda control: srvsvc_factory(control, SessionInfoPolicy.ADMINS),
    )
    server.start()
    try:
        yield server.address
    finally:
        server.stop()


def run(out: IO[str]) -> int:
    def say(text: str = "") -> None:
        out.write(text + "\n")
        out.flush()

    with demo_server() as (host, port):
        target = f"{host} --port {port} -U {ADMIN[0]}"
        say(f"1. smbsessions server listening on {host}:{port} (accounts: alice = admin, bob = user)")
        say(f"   $ smbsessions serve --bind {host} --port {port} --accounts-file accounts.txt")
        held = [
            HeldSession(host, port, "127.0.0.2", *ADMIN),
            HeldSession(host, port, "127.0.0.3", *USER),
            HeldSession(host, port, "127.0.0.4", "", ""),
        ]
        bob = held[1]
        say("2. holding sessions: alice from 127.0.0.2 and bob from 127.0.0.3 (each with \\PIPE\\srvsvc "
            "open), a null session from 127.0.0.4")
        time.sleep(1.1)  # let the sessions age: the time column then counts seconds
        credentials = Credentials(username=ADMIN[0], password=ADMIN[1])
        with SessionClient(host, port, credentials=credentials) as client:
            result = client.enum()
            records = [s.to_dict() for s in result]
            say(f"\n3. NetrSessionEnum as alice: level {result.level}, {len(records)} sessions "
                "(the last is our own enumerating session)")
            say(f"   $ smbsessions enum {target}\n")
            say(session_table(records, result.level))
            client.delete(user=USER[0])
            say("\n4. NetrSessionDel user=bob")
            say(f"   $ smbsessions delete {target} --user bob --yes")
            say(f"   done; bob's client still connected? "
                f"{'yes' if bob.alive() else 'no, cut off by the server'}")
            result = client.enum(502)
            records = [s.to_dict() for s in result]
            say(f"\n5. NetrSessionEnum again: {len(records)} sessions")
            say(f"   $ smbsessions enum {target} --level 502\n")
            say(session_table(records, 502))
        for session in held:
            session.close()
    say("\nserver stopped; demo complete")
    return 0


def main() -> int:
    return run(sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
