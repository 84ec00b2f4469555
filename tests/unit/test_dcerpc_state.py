"""The DCE/RPC association state tables: declared moves only, anything else raises."""

from __future__ import annotations

import pytest

from smbsessions.dcerpc import RpcClientConnection
from smbsessions.dcerpc.state import (
    AUTH_TRANSITIONS,
    CLIENT_TRANSITIONS,
    SERVER_TRANSITIONS,
    AuthEvent,
    AuthState,
    ClientEvent,
    ClientState,
    ServerEvent,
    ServerState,
    advance,
)
from smbsessions.status import ProtocolError


def test_a_move_the_table_does_not_list_raises() -> None:
    with pytest.raises(ProtocolError, match="bind_ack is not allowed while unbound"):
        advance(CLIENT_TRANSITIONS, ClientState.UNBOUND, ClientEvent.BIND_ACK)


def test_a_client_binds_once_then_calls_one_at_a_time() -> None:
    state = ClientState.UNBOUND
    for event, expected in [(ClientEvent.BIND, ClientState.BINDING), (ClientEvent.BIND_ACK, ClientState.BOUND),
                            (ClientEvent.REQUEST, ClientState.CALLING),
                            (ClientEvent.LAST_FRAGMENT, ClientState.BOUND),
                            (ClientEvent.REQUEST, ClientState.CALLING), (ClientEvent.FAULT, ClientState.BOUND)]:
        state = advance(CLIENT_TRANSITIONS, state, event)
        assert state is expected
    with pytest.raises(ProtocolError):
        advance(CLIENT_TRANSITIONS, state, ClientEvent.BIND)


def test_a_client_connection_refuses_a_second_bind() -> None:
    client = RpcClientConnection()
    client.bind()
    assert client.state is ClientState.BINDING and not client.bound
    with pytest.raises(ProtocolError):
        client.bind()


def test_a_broken_server_association_stays_broken() -> None:
    assert advance(SERVER_TRANSITIONS, ServerState.BOUND, ServerEvent.BREAK) is ServerState.BROKEN
    assert advance(SERVER_TRANSITIONS, ServerState.BROKEN, ServerEvent.BREAK) is ServerState.BROKEN
    with pytest.raises(ProtocolError):
        advance(SERVER_TRANSITIONS, ServerState.BROKEN, ServerEvent.BIND_ACCEPTED)


def test_a_revoked_exchange_has_no_way_out() -> None:
    assert not [key for key in AUTH_TRANSITIONS if key[0] is AuthState.REVOKED]
    assert advance(AUTH_TRANSITIONS, AuthState.COMPLETE, AuthEvent.BAD_VERIFIER) is AuthState.REVOKED
    assert advance(AUTH_TRANSITIONS, AuthState.PENDING, AuthEvent.DONE_NO_KEY) is AuthState.REVOKED
    with pytest.raises(ProtocolError):
        advance(AUTH_TRANSITIONS, AuthState.COMPLETE, AuthEvent.DONE)
