"""The live session table: the server's real state, as NetrSessionEnum shows it.

impacket keeps one SMB session per TCP connection (a new SESSION_SETUP on the
same connection replaces the old session), so a session is found either by its
key or by the connection it lives on. Every method takes the table lock:
connection threads update it while the srvsvc endpoint reads it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from smbsessions.addresses import plain_address
from smbsessions.levels import U32_MAX, SessionInfo, UserFlags
from smbsessions.rules import canonical_client_name
from smbsessions.server.types import SessionKey


def _seconds(start: float, now: float) -> int:
    return min(max(int(now - start), 0), U32_MAX)


@dataclass
class LiveSession:
    """One authenticated SMB session (mutable fields change under the table lock)."""

    key: SessionKey
    connection_id: str
    client_address: str  # plain IP, see addresses.plain_address()
    username: str
    domain: str
    is_guest: bool
    is_admin: bool
    client_type: str  # negotiated dialect, e.g. "SMB 2.0.2" or "NT LM 0.12"
    transport: str  # "tcp:<server address>:<port>" the session arrived on
    started: float  # time.monotonic() at session setup
    last_request: float  # time.monotonic() of the latest request on the session
    num_opens: int = 0
    cname: str = ""  # canonical_client_name(client_address), computed once at logon

    def info(self, now: float) -> SessionInfo:
        return SessionInfo(
            cname=self.cname or canonical_client_name(self.client_address),
            username=self.username,
            num_opens=self.num_opens,
            time=_seconds(self.started, now),
            idle_time=_seconds(self.last_request, now),
            user_flags=int(UserFlags.SESS_GUEST) if self.is_guest else 0,
            cltype_name=self.client_type,
            transport=self.transport,
        )


class SessionTable:
    """Live sessions in creation order, followed by the decoys."""

    def __init__(self, decoys: Sequence[SessionInfo] = ()) -> None:
        self._lock = threading.Lock()
        self._next_key: SessionKey = 1
        self._live: dict[SessionKey, LiveSession] = {}  # insertion order = creation order
        self._by_connection: dict[str, SessionKey] = {}
        self._decoys: dict[SessionKey, SessionInfo] = {}
        # The decoys as snapshot rows, rebuilt only when they change: an enumeration of
        # 10k decoys then copies one list instead of building 10k tuples per call.
        self._decoy_rows: list[tuple[SessionKey, SessionInfo]] = []
        self.set_decoys(decoys)

    def set_decoys(self, decoys: Sequence[SessionInfo]) -> None:
        """Replace the decoys; they get keys -1, -2, ... in the given order."""
        with self._lock:
            self._decoys = {-(i + 1): info for i, info in enumerate(decoys)}
            self._decoy_rows = list(self._decoys.items())

    def add(
        self,
        connection_id: str,
        *,
        client_address: str,
        username: str,
        domain: str,
        is_guest: bool,
        is_admin: bool,
        client_type: str,
        transport: str,
    ) -> LiveSession:
        """Record a new session on a connection, replacing the one it had."""
        now = time.monotonic()
        with self._lock:
            old = self._by_connection.pop(connection_id, None)
            if old is not None:
                self._live.pop(old, None)
            session = LiveSession(
                key=self._next_key,
                connection_id=connection_id,
                client_address=plain_address(client_address),
                cname=canonical_client_name(client_address),
                username=username,
                domain=domain,
                is_guest=is_guest,
                is_admin=is_admin,
                client_type=client_type,
                transport=transport,
                started=now,
                last_request=now,
            )
            self._next_key += 1
            self._live[session.key] = session
            self._by_connection[connection_id] = session.key
            return session

    def for_connection(self, connection_id: str) -> LiveSession | None:
        with self._lock:
            key = self._by_connection.get(connection_id)
            return None if key is None else self._live.get(key)

    def remove_connection(self, connection_id: str) -> LiveSession | None:
        """Forget the session of a connection (logoff, or the connection ended)."""
        with self._lock:
            key = self._by_connection.pop(connection_id, None)
            return None if key is None else self._live.pop(key, None)

    def remove(self, keys: Iterable[SessionKey]) -> tuple[list[LiveSession], list[SessionKey]]:
        """Remove live sessions and decoys; returns (live sessions removed, decoy keys removed)."""
        live: list[LiveSession] = []
        decoys: list[SessionKey] = []
        with self._lock:
            for key in dict.fromkeys(keys):
                if key in self._decoys:
                    del self._decoys[key]
                    decoys.append(key)
                    continue
                session = self._live.pop(key, None)
                if session is not None:
                    self._by_connection.pop(session.connection_id, None)
                    live.append(session)
            if decoys:
                self._decoy_rows = list(self._decoys.items())
        return live, decoys

    def touch(self, connection_id: str, now: float) -> None:
        """A request arrived on this connection."""
        with self._lock:
            key = self._by_connection.get(connection_id)
            if key is not None:
                self._live[key].last_request = now

    def set_num_opens(self, connection_id: str, count: int) -> None:
        with self._lock:
            key = self._by_connection.get(connection_id)
            if key is not None:
                self._live[key].num_opens = min(count, U32_MAX)

    def snapshot(self) -> list[tuple[SessionKey, SessionInfo]]:
        now = time.monotonic()
        with self._lock:
            rows = [(key, s.info(now)) for key, s in self._live.items()]
            rows += self._decoy_rows
        return rows
