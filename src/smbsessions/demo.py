"""``make demo``: the main job end to end on loopback, nothing outside this machine.

1. Start our SMB server on 127.0.0.1 (a free port) with an admin and a user.
2. Hold sessions as alice from 127.0.0.2 and bob from 127.0.0.3, each with a
   file open, plus a null session from 127.0.0.4 (a guest).
3. Enumerate at level 502 with our client (table).
4. Delete bob's sessions; show that bob's client was really cut off.
5. Enumerate again, stop everything.

Held sessions use impacket's SMB client (the server already depends on
impacket), on sockets bound to the wanted loopback source address.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from smbsessions.auth import Credentials
from smbsessions.client import SessionClient
from smbsessions.output import session_table
from smbsessions.rules import SessionInfoPolicy

ADMIN = ("alice", "demo-alice-pw")
USER = ("bob", "demo-bob-pw")


class HeldSession:
    """An SMB session from a chosen loopback source address, optionally with a file open."""

    def __init__(self, host: str, port: int, source: str, user: str, password: str,
                 share: str | None = None, path: str | None = None) -> None:
        from impacket import nmb, smb3
        from impacket.smbconnection import SMBConnection

        sock = socket.create_connection((host, port), timeout=5, source_address=(source, 0))
        # A real name, not "*SMBSERVER": that would send a NetBIOS name query and wait 4 s.
        netbios = nmb.NetBIOSTCPSession("", host, host, sess_port=port, sock=sock)
        self.connection: Any = SMBConnection(
            host, host, sess_port=port,
            existingConnection=smb3.SMB3(host, host, sess_port=port, session=netbios),
        )
        self.connection.login(user, password)
        if share and path:
            self.connection.openFile(self.connection.connectTree(share), path)

    def alive(self) -> bool:
        """True while the server still answers this session."""
        try:
            self.connection.listPath("IPC$", "*")
        except Exception:  # any failure means the session is gone
            return False
        return True

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already cut off by the server
            self.connection.close()


@contextmanager
def demo_server(share_dir: str) -> Iterator[tuple[str, int]]:
    from smbsessions.server.engine import build_server
    from smbsessions.server.srvsvc import srvsvc_factory

    server = build_server(
        "127.0.0.1", 0,
        accounts=[f"{ADMIN[0]}:{ADMIN[1]}:admin", f"{USER[0]}:{USER[1]}"],
        shares=[f"data={share_dir}"],
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

    with tempfile.TemporaryDirectory(prefix="smbsessions-demo-") as share_dir:
        Path(share_dir, "report.txt").write_text("quarterly numbers\n", encoding="utf-8")
        with demo_server(share_dir) as (host, port):
            say(f"1. smbsessions server listening on {host}:{port} (accounts: alice = admin, bob = user)")
            held = [
                HeldSession(host, port, "127.0.0.2", *ADMIN, share="data", path="report.txt"),
                HeldSession(host, port, "127.0.0.3", *USER, share="data", path="report.txt"),
                HeldSession(host, port, "127.0.0.4", "", ""),
            ]
            bob = held[1]
            say("2. holding sessions: alice from 127.0.0.2 and bob from 127.0.0.3 (each with "
                "data\\report.txt open), a null session from 127.0.0.4")
            credentials = Credentials(username=ADMIN[0], password=ADMIN[1])
            with SessionClient(host, port, credentials=credentials) as client:
                result = client.enum()
                records = [s.to_dict() for s in result]
                say(f"\n3. NetrSessionEnum as alice: level {result.level}, {len(records)} sessions "
                    "(the last is our own enumerating session)\n")
                say(session_table(records, result.level))
                client.delete(user=USER[0])
                say(f"\n4. NetrSessionDel user=bob: done; bob's client still connected? "
                    f"{'yes' if bob.alive() else 'no, cut off by the server'}")
                result = client.enum(502)
                records = [s.to_dict() for s in result]
                say(f"\n5. NetrSessionEnum again: {len(records)} sessions\n")
                say(session_table(records, 502))
            for session in held:
                session.close()
        say("\nserver stopped; demo complete")
    return 0


def main() -> int:
    return run(sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
