"""Everything that decides which SMB2 request is legal when (h11's ``_state.py``).

Two machines: the connection (negotiation) and each session (logon). Their
transitions are tables; ``advance`` raises ``ProtocolStateError`` on any move
the table does not list, so the core never runs on loose flags.
"""

from __future__ import annotations

from enum import Enum

from smbsessions.server.smb2.constants import Command


class ConnectionState(Enum):
    AWAIT_NEGOTIATE = "await negotiate"  # fresh TCP connection
    AWAIT_SMB2_NEGOTIATE = "await smb2 negotiate"  # answered an SMB1 negotiate with 2.???
    NEGOTIATED = "negotiated"
    CLOSED = "closed"


class ConnectionEvent(Enum):
    SMB1_UPGRADE = "smb1 negotiate answered with SMB 2.???"
    SMB1_ONLY = "smb1 negotiate without SMB2 dialects"
    NEGOTIATE = "smb2 negotiate"
    CLOSE = "close"


class SessionState(Enum):
    IN_PROGRESS = "in progress"  # SESSION_SETUP legs under way
    VALID = "valid"
    GONE = "gone"  # logged off, failed, replaced or deleted


class SessionEvent(Enum):
    MORE_PROCESSING = "another leg"
    SUCCEEDED = "logon succeeded"
    FAILED = "logon failed"
    LOGOFF = "logoff"


class ProtocolStateError(Exception):
    """A transition the tables do not allow (the connection is then closed)."""


CONNECTION_TRANSITIONS: dict[tuple[ConnectionState, ConnectionEvent], ConnectionState] = {
    (ConnectionState.AWAIT_NEGOTIATE, ConnectionEvent.SMB1_UPGRADE): ConnectionState.AWAIT_SMB2_NEGOTIATE,
    (ConnectionState.AWAIT_NEGOTIATE, ConnectionEvent.SMB1_ONLY): ConnectionState.CLOSED,
    (ConnectionState.AWAIT_NEGOTIATE, ConnectionEvent.NEGOTIATE): ConnectionState.NEGOTIATED,
    (ConnectionState.AWAIT_SMB2_NEGOTIATE, ConnectionEvent.NEGOTIATE): ConnectionState.NEGOTIATED,
    (ConnectionState.AWAIT_NEGOTIATE, ConnectionEvent.CLOSE): ConnectionState.CLOSED,
    (ConnectionState.AWAIT_SMB2_NEGOTIATE, ConnectionEvent.CLOSE): ConnectionState.CLOSED,
    (ConnectionState.NEGOTIATED, ConnectionEvent.CLOSE): ConnectionState.CLOSED,
    (ConnectionState.CLOSED, ConnectionEvent.CLOSE): ConnectionState.CLOSED,
}

SESSION_TRANSITIONS: dict[tuple[SessionState, SessionEvent], SessionState] = {
    (SessionState.IN_PROGRESS, SessionEvent.MORE_PROCESSING): SessionState.IN_PROGRESS,
    (SessionState.IN_PROGRESS, SessionEvent.SUCCEEDED): SessionState.VALID,
    (SessionState.IN_PROGRESS, SessionEvent.FAILED): SessionState.GONE,
    (SessionState.IN_PROGRESS, SessionEvent.LOGOFF): SessionState.GONE,
    (SessionState.VALID, SessionEvent.LOGOFF): SessionState.GONE,
    (SessionState.GONE, SessionEvent.LOGOFF): SessionState.GONE,
}

# Commands a negotiated connection serves without a valid session (MS-SMB2 3.3.5.2.9).
SESSIONLESS_COMMANDS = frozenset({Command.NEGOTIATE, Command.SESSION_SETUP, Command.ECHO, Command.CANCEL})
# Commands that also need a tree connect (3.3.5.2.11).
TREE_COMMANDS = frozenset({
    Command.TREE_DISCONNECT, Command.CREATE, Command.CLOSE, Command.FLUSH, Command.READ, Command.WRITE,
    Command.LOCK, Command.IOCTL, Command.QUERY_DIRECTORY, Command.CHANGE_NOTIFY, Command.QUERY_INFO,
    Command.SET_INFO,
})


def advance_connection(state: ConnectionState, event: ConnectionEvent) -> ConnectionState:
    try:
        return CONNECTION_TRANSITIONS[state, event]
    except KeyError:
        raise ProtocolStateError(f"connection: {event.value} in state {state.value}") from None


def advance_session(state: SessionState, event: SessionEvent) -> SessionState:
    try:
        return SESSION_TRANSITIONS[state, event]
    except KeyError:
        raise ProtocolStateError(f"session: {event.value} in state {state.value}") from None
