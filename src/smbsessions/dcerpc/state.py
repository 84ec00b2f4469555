"""The states of a DCE/RPC association, declared as tables (as h11's ``_state.py``).

Everything that moves a client association, a server association or a server's
security exchange from one state to another is listed here; the connections
call ``advance`` and a move the table does not list raises ``ProtocolError``
(our own misuse, or a peer out of turn). Checks that answer a peer (a bind_nak,
a fault) run before the move, so the messages a peer sees come from the
connection; the tables say which moves exist.
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

from ..status import ProtocolError


class ClientState(Enum):
    UNBOUND = "unbound"
    BINDING = "binding"  # bind sent, bind_ack awaited
    BOUND = "bound"  # idle: a call may start
    CALLING = "calling"  # request sent, response fragments awaited


class ClientEvent(Enum):
    BIND = "bind"
    BIND_ACK = "bind_ack"  # an acceptable bind_ack for our bind
    REQUEST = "request"
    LAST_FRAGMENT = "last fragment"  # the response is complete
    FAULT = "fault"  # the call ended with a fault


CLIENT_TRANSITIONS: dict[tuple[ClientState, ClientEvent], ClientState] = {
    (ClientState.UNBOUND, ClientEvent.BIND): ClientState.BINDING,
    (ClientState.BINDING, ClientEvent.BIND_ACK): ClientState.BOUND,
    (ClientState.BOUND, ClientEvent.REQUEST): ClientState.CALLING,
    # A call given up half-way (its answer over the byte budget) is replaced by the next one.
    (ClientState.CALLING, ClientEvent.REQUEST): ClientState.CALLING,
    (ClientState.CALLING, ClientEvent.LAST_FRAGMENT): ClientState.BOUND,
    (ClientState.CALLING, ClientEvent.FAULT): ClientState.BOUND,
}


class ServerState(Enum):
    UNBOUND = "unbound"
    BOUND = "bound"  # one bind accepted; more contexts come by alter_context
    BROKEN = "broken"  # the stream is unsalvageable or closed: input is ignored


class ServerEvent(Enum):
    BIND_ACCEPTED = "bind accepted"
    BREAK = "break"  # a framing error, a flood, abort() or close()


SERVER_TRANSITIONS: dict[tuple[ServerState, ServerEvent], ServerState] = {
    (ServerState.UNBOUND, ServerEvent.BIND_ACCEPTED): ServerState.BOUND,
    (ServerState.UNBOUND, ServerEvent.BREAK): ServerState.BROKEN,
    (ServerState.BOUND, ServerEvent.BREAK): ServerState.BROKEN,
    (ServerState.BROKEN, ServerEvent.BREAK): ServerState.BROKEN,
}


class AuthState(Enum):
    """A server's RPC-level security exchange (bind -> bind_ack, then auth3 or alter_context)."""

    PENDING = "pending"  # legs still to come
    COMPLETE = "complete"  # the caller is authenticated
    FAILED = "failed"  # a leg was refused before the exchange completed
    REVOKED = "revoked"  # complete, but unusable: no key for a signed level, or a verifier failed


class AuthEvent(Enum):
    STEP_REFUSED = "step refused"  # the acceptor refused a token
    DONE = "done"  # the acceptor completed (CONNECT level, or a signed level with a key)
    DONE_UNSIGNED = "done, connect level"
    DONE_NO_KEY = "done without a key"  # an anonymous logon at a signed level
    AUTH3_MISMATCH = "auth3 for another exchange"
    AUTH3_INCOMPLETE = "auth3 left the exchange incomplete"
    BAD_VERIFIER = "a request's verifier failed"


AUTH_TRANSITIONS: dict[tuple[AuthState, AuthEvent], AuthState] = {
    (AuthState.PENDING, AuthEvent.STEP_REFUSED): AuthState.FAILED,
    (AuthState.PENDING, AuthEvent.DONE): AuthState.COMPLETE,
    (AuthState.PENDING, AuthEvent.DONE_UNSIGNED): AuthState.COMPLETE,
    (AuthState.PENDING, AuthEvent.DONE_NO_KEY): AuthState.REVOKED,
    (AuthState.PENDING, AuthEvent.AUTH3_MISMATCH): AuthState.FAILED,
    (AuthState.PENDING, AuthEvent.AUTH3_INCOMPLETE): AuthState.FAILED,
    (AuthState.FAILED, AuthEvent.STEP_REFUSED): AuthState.FAILED,
    (AuthState.FAILED, AuthEvent.AUTH3_MISMATCH): AuthState.FAILED,
    (AuthState.FAILED, AuthEvent.AUTH3_INCOMPLETE): AuthState.FAILED,
    # An auth3 after a refused alter_context leg still reaches the acceptor (as before these
    # tables); an acceptor that completes then decides, as for a pending exchange.
    (AuthState.FAILED, AuthEvent.DONE): AuthState.COMPLETE,
    (AuthState.FAILED, AuthEvent.DONE_UNSIGNED): AuthState.REVOKED,
    (AuthState.FAILED, AuthEvent.DONE_NO_KEY): AuthState.REVOKED,
    (AuthState.COMPLETE, AuthEvent.BAD_VERIFIER): AuthState.REVOKED,
}

S = TypeVar("S", bound=Enum)
E = TypeVar("E", bound=Enum)


def advance(table: dict[tuple[S, E], S], state: S, event: E) -> S:
    """The state ``event`` moves ``state`` to; ``ProtocolError`` when the table has no such move."""
    try:
        return table[state, event]
    except KeyError:
        raise ProtocolError(f"DCE/RPC: {event.value} is not allowed while {state.value}") from None
