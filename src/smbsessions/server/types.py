"""The contract between the SMB engine and the srvsvc endpoint.

The SMB core (``smb2/``, run by ``shell.py``) owns sockets, SMB sessions and
named-pipe handles.
The srvsvc endpoint (``srvsvc.py``) owns DCE/RPC and MS-SRVS. They meet here:

* ``CallerInfo``: who opened ``\\PIPE\\srvsvc`` (the SMB session behind the open).
* ``PipeEndpoint``: one open of the pipe; bytes in, messages out, no I/O.
* ``ServerControl``: what an endpoint may ask of the server (the live session
  list, disconnecting sessions, the server's identity, the account store).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from smbsessions.levels import SessionInfo
from smbsessions.srvsvc_levels import ServerIdentity

__all__ = ["CallerInfo", "PipeEndpoint", "PipeFactory", "ServerControl", "ServerIdentity", "SessionKey"]

SessionKey = int
"""Identifies one row of ``ServerControl.snapshot()``.

Live SMB sessions get 1, 2, 3, ... in creation order (never reused while the
server runs); sessions-file decoys get -1, -2, ... in file order.
"""


@dataclass(frozen=True)
class CallerInfo:
    """The SMB session that opened the pipe."""

    session_key: SessionKey
    username: str  # as the client sent it, without domain; "" for a null session
    domain: str  # NTLM domain the client sent
    is_admin: bool  # the account is configured with admin rights
    is_guest: bool  # null session, or a server without accounts (everybody is a guest)
    client_address: str  # IP address, IPv4-mapped prefix stripped, no brackets


class PipeEndpoint(Protocol):
    """One open of ``\\PIPE\\srvsvc``, driven by the engine's connection thread.

    Message mode: the endpoint queues whole messages (one DCE/RPC PDU each).
    """

    def write(self, data: bytes) -> None:
        """Bytes the client wrote; may hold a partial PDU or several PDUs."""

    def read(self, max_len: int) -> tuple[bytes, bool]:
        """Up to ``max_len`` bytes of the oldest queued message.

        Returns ``(chunk, more)``: ``more`` is True while the rest of this same
        message is still queued. With nothing queued: ``(b"", False)``.
        """

    def close(self) -> None:
        """The handle was closed (client CLOSE, disconnect or server stop)."""


PipeFactory = Callable[[CallerInfo], PipeEndpoint]
"""Called by the engine each time a client opens ``\\PIPE\\srvsvc``."""


class ServerControl(Protocol):
    """What the srvsvc endpoint may ask of the running server (thread-safe)."""

    def snapshot(self) -> list[tuple[SessionKey, SessionInfo]]:
        """Live sessions in creation order, then decoys; a consistent copy."""

    def disconnect(
        self, keys: Iterable[SessionKey], defer_for: SessionKey | None = None
    ) -> list[SessionKey]:
        """Close these sessions' connections; return the keys that existed.

        ``defer_for``: the caller's own key; if it is among ``keys`` its
        connection is closed only after the reply to the current request
        (including any pipe output queued by then) has been sent.
        """

    @property
    def identity(self) -> ServerIdentity:
        """What srvsvc says about the server (name, domain, comment, decoy shares)."""

    def lookup_nt_hash(self, user: str) -> bytes | None:
        """The NT hash of an account (user matched case-insensitively), or None."""

    def is_admin(self, user: str) -> bool:
        """The account is configured with admin rights."""
