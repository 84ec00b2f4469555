"""SessionClient and the Win32-shaped functions against a real Samba smbd.

Samba 4.17 is a partial MS-SRVS server (docs/ARCHITECTURE.md, "Peers as measured"): only levels 0
and 1, qualifiers ignored, NetrSessionDel kills whole connections. These tests
prove the client turns that into the documented behaviour: level fallback,
client-side qualifiers with the proper "not found" statuses, normalised client
names, typed errors, reassembly of multi-fragment answers (cross-checked with
impacket's decoder), and deletions that really disconnect.

Held sessions use their own 127.0.<block>.x source addresses per test, so
sessions of earlier tests that are still closing never match a qualifier.
Destructive deletes (every session, the caller's own) run on a private smbd
on a port in 4530-4539 (``private_samba``), never on the shared one.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from impacket.dcerpc.v5 import srvs
from impacket.dcerpc.v5.dtypes import NULL

from smbsessions.auth import ANONYMOUS, Credentials, nt_hash_of
from smbsessions.client import Session, SessionClient
from smbsessions.dcerpc import Pdu, PType
from smbsessions.status import (
    AuthenticationError,
    HostUnreachableError,
    NetApiError,
    NetApiStatus,
    RpcFaultError,
    RpcFaultStatus,
)
from smbsessions.win32 import NetSessionDel, NetSessionEnum, NetSessionGetInfo

from ..peers.holders import ANONYMOUS as HOLD_ANONYMOUS
from ..peers.holders import SessionHolder
from ..peers.samba import ALICE, BOB, PortInUseError, SambaServer, port_is_free, unavailable_reason
from ..peers.samba_py import samba_py_session_enum

PRIVATE_PORTS = range(4530, 4540)
TIMEOUT = 10.0
MAX_XMIT_FRAG = 4280  # the fragment size Samba negotiates
INVALID_LEVEL = NetApiStatus.ERROR_INVALID_LEVEL
DENIED = NetApiStatus.ERROR_ACCESS_DENIED
SAMBA_FALLBACK = [(502, INVALID_LEVEL), (10, INVALID_LEVEL), (2, INVALID_LEVEL)]

HoldSessions = Callable[..., SessionHolder]
SrvsvcFactory = Callable[..., Any]


# --------------------------------------------------------------------------- shared helpers


def start_private_samba(*, warm: bool = True, **kwargs: Any) -> SambaServer:
    """A SambaServer of our own on the first free port in 4530-4539 (skip if Samba cannot run)."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"Samba interop peer unavailable: {reason}")
    for port in PRIVATE_PORTS:
        if not port_is_free(port, kwargs.get("bind_addrs", ("127.0.0.1", "::1"))):
            continue
        server = SambaServer(port, **kwargs)
        try:
            server.start()
        except PortInUseError:
            continue
        if warm:
            try:
                server.warm_up()
            except BaseException:
                server.stop()
                raise
        return server
    pytest.fail(f"no free port for a private smbd in {PRIVATE_PORTS.start}-{PRIVATE_PORTS.stop - 1}")


@pytest.fixture(scope="module")
def private_samba() -> Iterator[SambaServer]:
    """An smbd for this module alone: tests here may disconnect every session on it."""
    server = start_private_samba()
    try:
        yield server
    finally:
        server.stop()


def addresses(block: int, count: int) -> list[str]:
    """``count`` loopback source addresses 127.0.<block>.2, .3, ..."""
    return [f"127.0.{block}.{2 + i}" for i in range(count)]


def unc(address: str) -> str:
    return "\\\\" + address


def alice(server: SambaServer) -> Credentials:
    return Credentials(server.admin.name, password=server.admin.password)


def bob(server: SambaServer) -> Credentials:
    return Credentials(server.user.name, password=server.user.password)


def client_for(server: SambaServer, credentials: Credentials, host: str | None = None) -> SessionClient:
    return SessionClient(host or server.host, server.port, credentials=credentials, timeout=TIMEOUT)


def pairs(sessions: Iterable[Session]) -> set[tuple[str | None, str | None]]:
    return {(s.client_name, s.user_name) for s in sessions}


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``predicate`` (bounded): Samba tears sessions down asynchronously."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        time.sleep(0.05)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def impacket_pairs(dce: Any, level: int = 1) -> set[tuple[str, str | None]]:
    """(cname, username) as impacket's hNetrSessionEnum decodes them (cname raw, no ``\\\\``)."""
    reply = srvs.hNetrSessionEnum(dce, NULL, NULL, level)
    entries = reply["InfoStruct"]["SessionInfo"][f"Level{level}"]["Buffer"]
    found: set[tuple[str, str | None]] = set()
    for entry in entries:
        user = entry[f"sesi{level}_username"].rstrip("\x00") if level else None
        found.add((entry[f"sesi{level}_cname"].rstrip("\x00"), user))
    return found


# --------------------------------------------------------------------------- enumeration


@pytest.fixture
def mixed_sessions(samba: SambaServer, hold_sessions: HoldSessions) -> dict[str, SessionHolder]:
    """bob from 127.0.40.2-4 with 2 open files each, alice as WS-ONE/WS-TWO, bob from ::1."""
    return {
        "ip": hold_sessions(
            samba.host, samba.port, 3, credentials=[(BOB.name, BOB.password)],
            source_ips=addresses(40, 3), open_files=2,
        ),
        "netbios": hold_sessions(
            samba.host, samba.port, 2, credentials=[(ALICE.name, ALICE.password)],
            source_ips=addresses(41, 2), calling_names="WS-{i}",
        ),
        "v6": hold_sessions("::1", samba.port, 1, credentials=[(BOB.name, BOB.password)]),
    }


def test_enum_without_level_falls_back_to_level_1_and_normalises_names(
    samba: SambaServer, mixed_sessions: dict[str, SessionHolder]
) -> None:
    with client_for(samba, alice(samba)) as client:
        result = client.enum()
        sessions = list(result)

    assert result.level == 1
    assert result.attempts == SAMBA_FALLBACK
    assert not result.filtered_locally
    assert result.total_entries_hint >= len(sessions)
    by_name = {s.client_name: s for s in sessions}
    for address in addresses(40, 3):
        session = by_name[unc(address)]
        assert (session.user_name, session.info.num_opens, session.raw_client_name) == ("bob", 2, address)
        assert session.info.user_flags == 0
        assert session.info.idle_time == 0  # Samba never tracks idle time
    # NetBIOS calling names come back lower-cased; the raw value has no backslashes.
    assert by_name["\\\\ws-0"].raw_client_name == "ws-0"
    assert by_name["\\\\ws-1"].user_name == "alice"
    assert by_name["\\\\[::1]"].raw_client_name == "::1"
    # The enumerating connection's own session is listed too, and marked.
    assert by_name["\\\\127.0.0.1"].user_name == "alice"
    assert by_name["\\\\127.0.0.1"].own_session
    assert [s for s in sessions if s.own_session] == [by_name["\\\\127.0.0.1"]]
    record = by_name[unc("127.0.40.2")].to_dict()
    assert record == {
        "client_name": "\\\\127.0.40.2", "user_name": "bob", "num_opens": 2,
        "active_time": record["active_time"], "idle_time": 0, "user_flags": 0,
        "client_name_raw": "127.0.40.2", "level": 1, "own_session": False,
    }


def test_explicit_levels(samba: SambaServer, mixed_sessions: dict[str, SessionHolder]) -> None:
    with client_for(samba, alice(samba)) as client:
        level0 = list(client.enum(0))
        level1 = list(client.enum(1))
        refused = {}
        for level in (2, 10, 502):
            with pytest.raises(NetApiError) as info:
                client.enum(level)
            refused[level] = (info.value.status, info.value.attempts)

    assert {s.level for s in level0} == {0}
    assert all(s.user_name is None and s.info.num_opens is None for s in level0)
    assert {unc(a) for a in addresses(40, 3)} <= {s.client_name for s in level0}
    assert {(unc(a), "bob") for a in addresses(40, 3)} <= pairs(level1)
    # An explicit level is never silently replaced by another.
    assert refused == {level: (INVALID_LEVEL, [(level, INVALID_LEVEL)]) for level in (2, 10, 502)}


def test_qualifiers_are_applied_locally_because_samba_ignores_them(
    samba: SambaServer, mixed_sessions: dict[str, SessionHolder]
) -> None:
    target = addresses(40, 3)[1]
    with client_for(samba, alice(samba)) as client:
        raw = client.enum_page(1, client=target, user="bob")
        by_client = client.enum(1, client=target)
        by_pair = list(client.enum(None, client=unc(target), user="BOB"))
        by_user = list(client.enum(1, user="bob"))
        by_netbios = list(client.enum(1, client="WS-1"))
        by_v6 = list(client.enum(1, client="\\\\[::1]", user="bob"))

    # Samba answers the qualified call with every session...
    assert raw.status == NetApiStatus.NERR_Success
    assert raw.entries is not None and len(raw.entries) > 1
    # ...so the client filters, and says so.
    assert by_client.filtered_locally
    assert pairs(by_client) == {(unc(target), "bob")}
    assert pairs(by_pair) == {(unc(target), "bob")}
    assert {unc(a) for a in addresses(40, 3)} | {"\\\\[::1]"} <= {s.client_name for s in by_user}
    assert {s.user_name for s in by_user} == {"bob"}
    assert pairs(by_netbios) == {("\\\\ws-1", "alice")}
    assert pairs(by_v6) == {("\\\\[::1]", "bob")}


@pytest.mark.parametrize(
    ("client_name", "user", "status"),
    [
        ("\\\\nosuchclient", None, NetApiStatus.NERR_ClientNameNotFound),
        ("\\\\nosuchclient", "bob", NetApiStatus.NERR_ClientNameNotFound),
        ("127.0.40.2", "alice", NetApiStatus.NERR_UserNotFound),  # the client is there, the user not
        (None, "nosuchuser", NetApiStatus.NERR_UserNotFound),
    ],
)
def test_qualifiers_matching_nothing_give_not_found(
    samba: SambaServer,
    mixed_sessions: dict[str, SessionHolder],
    client_name: str | None,
    user: str | None,
    status: int,
) -> None:
    with client_for(samba, alice(samba)) as client, pytest.raises(NetApiError) as info:
        client.enum(1, client=client_name, user=user)
    assert info.value.status == status
    assert "checked locally" in str(info.value)


def test_get_info(samba: SambaServer, mixed_sessions: dict[str, SessionHolder]) -> None:
    target = addresses(40, 3)[2]
    with client_for(samba, alice(samba)) as client:
        fallback = client.get_info(target, "bob")
        level0 = client.get_info(unc(target), "bob", 0)
        with pytest.raises(NetApiError) as wrong_user:
            client.get_info(target, "alice")
        # Level 0 has no user name to filter on: the client asks a richer level.
        with pytest.raises(NetApiError) as wrong_user0:
            client.get_info(target, "alice", 0)
        with pytest.raises(NetApiError) as level10:
            client.get_info(target, "bob", 10)
        with pytest.raises(ValueError, match="both"):
            client.get_info(target, "")

    assert (fallback.level, fallback.client_name, fallback.user_name) == (1, unc(target), "bob")
    assert fallback.info.num_opens == 2
    assert (level0.level, level0.client_name, level0.user_name) == (0, unc(target), None)
    assert wrong_user.value.status == wrong_user0.value.status == NetApiStatus.NERR_UserNotFound
    assert level10.value.status == INVALID_LEVEL


def test_paging_inputs_samba_ignores_or_answers_by_index(
    samba: SambaServer, hold_sessions: HoldSessions
) -> None:
    hold_sessions(samba.host, samba.port, 4, credentials=[(BOB.name, BOB.password)], source_ips=addresses(42, 4))
    calls: list[int] = []
    with client_for(samba, alice(samba)) as client:
        original = client._call

        def counting_call(opnum: int, stub: bytes) -> bytes:
            calls.append(opnum)
            return original(opnum, stub)

        client._call = counting_call  # type: ignore[method-assign]
        tiny = list(client.enum(1, max_length=1))
        full = client.enum_page(1)
        resumed = client.enum_page(1, resume_handle=2)

    # PreferedMaximumLength 1 is ignored: everything in one call, no paging loop.
    assert calls[0] == 12 and len(calls) == 3
    assert {(unc(a), "bob") for a in addresses(42, 4)} <= pairs(tiny)
    # The resume handle is a plain index; a complete answer hands back the total.
    assert full.status == resumed.status == NetApiStatus.NERR_Success
    assert full.entries is not None and resumed.entries is not None
    assert len(resumed.entries) == full.total_entries - 2
    assert resumed.resume_handle == resumed.total_entries


def test_sixty_four_sessions_span_fragments_and_match_impacket(
    samba: SambaServer, hold_sessions: HoldSessions, impacket_srvsvc: SrvsvcFactory
) -> None:
    held = hold_sessions(
        samba.host, samba.port, 64,
        credentials=[(ALICE.name, ALICE.password), (BOB.name, BOB.password)],
        source_ips=addresses(43, 64),
    )
    dce = impacket_srvsvc(samba.host, samba.port, ALICE.name, ALICE.password)
    pdus: list[Pdu] = []
    stubs: list[int] = []
    with client_for(samba, alice(samba)) as client:
        receive, call = client._rpc.receive, client._call

        def counting_receive(pdu: Pdu, max_stub: int = 1 << 30) -> bytes | None:
            pdus.append(pdu)
            return receive(pdu, max_stub)

        def measuring_call(opnum: int, stub: bytes) -> bytes:
            answer = call(opnum, stub)
            stubs.append(len(answer))
            return answer

        client._rpc.receive = counting_receive  # type: ignore[method-assign]
        client._call = measuring_call  # type: ignore[method-assign]
        ours_before = {(s.raw_client_name, s.user_name) for s in client.enum(1)}
        theirs = impacket_pairs(dce)
        ours_after = {(s.raw_client_name, s.user_name) for s in client.enum(1)}
        level0 = {s.raw_client_name for s in client.enum(0)}
        theirs0 = {cname for cname, _ in impacket_pairs(dce, 0)}

    first_call = [p for p in pdus if p.call_id == pdus[0].call_id]
    assert all(p.ptype == PType.RESPONSE for p in first_call)
    assert len(first_call) >= 2 and first_call[0].first and first_call[-1].last
    assert stubs[0] > MAX_XMIT_FRAG
    expected = {(s.source_ip, s.user) for s in held.sessions}
    assert expected <= ours_before
    # Sessions of earlier tests may still be closing: one of our snapshots
    # taken around impacket's must equal it.
    assert theirs in (ours_before, ours_after)
    assert {s.source_ip for s in held.sessions} <= level0
    assert {s.source_ip for s in held.sessions} <= theirs0


def test_same_rows_as_samba_own_bindings(samba: SambaServer, mixed_sessions: dict[str, SessionHolder]) -> None:
    theirs = samba_py_session_enum(samba.host, samba.port, ALICE.name, ALICE.password, 1, conf=samba.client_conf)
    with client_for(samba, alice(samba)) as client:
        ours = {(s.raw_client_name, s.user_name, s.info.num_opens, s.info.user_flags) for s in client.enum(1)}

    assert theirs["werror"] == 0
    held = {*addresses(40, 3), "ws-0", "ws-1", "::1"}
    rows = {(e["client"], e["user"], e["num_open"], e["user_flags"]) for e in theirs["entries"]}
    assert {row for row in rows if row[0] in held} == {row for row in ours if row[0] in held}
    assert len({row for row in ours if row[0] in held}) == 6


# --------------------------------------------------------------------------- refusals and errors


def test_plain_user_is_denied_at_every_level(samba: SambaServer) -> None:
    with client_for(samba, bob(samba)) as client:
        with pytest.raises(NetApiError) as fallback:
            client.enum()
        explicit = {}
        for level in (0, 1, 2, 10, 502):
            with pytest.raises(NetApiError) as info:
                client.enum(level)
            explicit[level] = info.value.status

    assert fallback.value.status == DENIED
    assert fallback.value.attempts == [(level, DENIED) for level in (502, 10, 2, 1, 0)]
    # Samba checks access before the level: even 2, 10 and 502 say "denied".
    assert explicit == dict.fromkeys((0, 1, 2, 10, 502), DENIED)


def test_anonymous_is_denied_and_listed_as_guest(samba: SambaServer, hold_sessions: HoldSessions) -> None:
    anonymous_holder = hold_sessions(
        samba.host, samba.port, 1, credentials=[HOLD_ANONYMOUS], source_ips=addresses(44, 1)
    )
    with client_for(samba, ANONYMOUS) as client, pytest.raises(NetApiError) as info:
        client.enum()
    with client_for(samba, alice(samba)) as client:
        guest = client.get_info(anonymous_holder.sessions[0].source_ip, "nobody")

    assert info.value.status == DENIED
    assert [status for _, status in info.value.attempts] == [DENIED] * 5
    assert guest.info.user_flags == 1  # SESS_GUEST


def test_nt_hash_logon_enumerates(samba: SambaServer) -> None:
    credentials = Credentials(ALICE.name, nt_hash=nt_hash_of(ALICE.password))
    with client_for(samba, credentials) as client:
        assert client.dialect == "SMB 3.1.1"
        assert (unc("127.0.0.1"), "alice") in pairs(client.enum(1))


def test_ipv6_connection_lists_itself_bracketed(samba: SambaServer) -> None:
    with client_for(samba, alice(samba), host="::1") as client:
        assert ("\\\\[::1]", "alice") in pairs(client.enum(1))


def test_failures_have_distinct_types(samba: SambaServer) -> None:
    secret = "Not-Alices-Pa55word"
    with pytest.raises(AuthenticationError) as auth:
        client_for(samba, Credentials(ALICE.name, password=secret)).open()
    with pytest.raises(HostUnreachableError):
        SessionClient("127.0.0.1", closed_port(), credentials=alice(samba), timeout=TIMEOUT).open()
    with client_for(samba, alice(samba)) as client:
        # srvsvc has no opnum 200: a DCE/RPC fault, not a NET_API_STATUS.
        with pytest.raises(RpcFaultError) as fault:
            client._call(200, b"")
        # The association survives a fault: the next call works.
        assert client.enum(1).level == 1

    assert secret not in str(auth.value)
    assert fault.value.code == RpcFaultStatus.nca_s_op_rng_error
    assert not isinstance(fault.value, NetApiError)


# --------------------------------------------------------------------------- NetrSessionDel


def test_delete_disconnects_exactly_the_matching_sessions(
    samba: SambaServer, hold_sessions: HoldSessions
) -> None:
    sources = addresses(45, 4)
    held = hold_sessions(samba.host, samba.port, 4, credentials=[(BOB.name, BOB.password)],
                         source_ips=sources, open_files=1)
    assert held.alive_all() == [True] * 4
    with client_for(samba, alice(samba)) as client:
        client.delete(sources[1])  # bare IP: normalised to \\127.0.45.3
        client.delete(unc(sources[2]), "bob")
        wait_until(lambda: not held.alive(1) and not held.alive(2), "both victims are cut off")
        wait_until(
            lambda: not {unc(sources[1]), unc(sources[2])} & {s.client_name for s in client.enum(1)},
            "the deleted sessions leave the list",
        )
        listed = {s.client_name for s in client.enum(1)}

    assert held.alive(0) and held.alive(3)
    assert {unc(sources[0]), unc(sources[3])} <= listed


def test_delete_refusals(samba: SambaServer, hold_sessions: HoldSessions) -> None:
    held = hold_sessions(samba.host, samba.port, 1, credentials=[(BOB.name, BOB.password)],
                         source_ips=addresses(46, 1))
    target = held.sessions[0].source_ip
    with client_for(samba, alice(samba)) as client:
        with pytest.raises(ValueError, match="refusing to delete every session"):
            client.delete()
        with pytest.raises(ValueError, match="refusing"):
            client.delete("", "")
        # Samba answers "nothing matched" with ERROR_ACCESS_DENIED, not NERR_ClientNameNotFound.
        with pytest.raises(NetApiError) as no_match:
            client.delete("\\\\nosuchclient")
    with client_for(samba, bob(samba)) as client, pytest.raises(NetApiError) as plain_user:
        client.delete(target, "bob")

    assert no_match.value.status == DENIED
    assert plain_user.value.status == DENIED
    assert held.alive(0)


def test_deleting_own_session_by_qualifiers_reports_success(
    private_samba: SambaServer, hold_sessions: HoldSessions
) -> None:
    server = private_samba
    bystanders = hold_sessions(server.host, server.port, 2, credentials=[(BOB.name, BOB.password)],
                               source_ips=addresses(47, 2))
    client = client_for(server, alice(server)).open()
    try:
        assert client._pipe is not None and client._pipe.local_address[0] == "127.0.0.1"
        # Samba kills our own connection before it can reply.
        client.delete("127.0.0.1", "alice")
        assert client.dialect is None  # closed by the client after the cut
    finally:
        client.close()

    with client_for(server, alice(server)) as fresh:
        listed = pairs(fresh.enum(1))
    assert {(unc(a), "bob") for a in addresses(47, 2)} <= listed
    assert bystanders.alive_all() == [True, True]


def test_delete_all_needs_force_and_disconnects_everyone(
    private_samba: SambaServer, hold_sessions: HoldSessions
) -> None:
    server = private_samba
    held = hold_sessions(server.host, server.port, 3,
                         credentials=[(BOB.name, BOB.password), (ALICE.name, ALICE.password)],
                         source_ips=addresses(48, 3), open_files=1)
    with client_for(server, alice(server)) as client:
        with pytest.raises(ValueError):
            client.delete(None, None)
        assert held.alive_all() == [True] * 3
        client.delete(force_all=True)

    wait_until(lambda: not any(held.alive_all()), "every held session is cut off")
    with client_for(server, alice(server)) as fresh:
        remaining = pairs(fresh.enum(1))
    assert not {(unc(a), u) for a in addresses(48, 3) for u in ("alice", "bob")} & remaining


# --------------------------------------------------------------------------- Win32-shaped functions


def test_win32_functions(samba: SambaServer, hold_sessions: HoldSessions) -> None:
    sources = addresses(49, 3)
    held = hold_sessions(samba.host, samba.port, 3, credentials=[(BOB.name, BOB.password)],
                         source_ips=sources, open_files=1)
    creds = alice(samba)
    server = "\\\\127.0.0.1"

    everyone = NetSessionEnum(server, None, None, 1, credentials=creds, port=samba.port)
    only_one = NetSessionEnum(server, unc(sources[0]), "bob", 1, credentials=creds, port=samba.port)
    names = NetSessionEnum(server, level=0, credentials=creds, port=samba.port)
    richest = NetSessionEnum(server, credentials=creds, port=samba.port)  # no level: what Samba allows
    with pytest.raises(NetApiError) as level_10:
        NetSessionEnum(server, None, None, 10, credentials=creds, port=samba.port)
    info = NetSessionGetInfo(server, unc(sources[1]), "bob", 1, credentials=creds, port=samba.port)
    with pytest.raises(NetApiError) as missing:
        NetSessionGetInfo(server, "\\\\nosuchclient", "bob", 1, credentials=creds, port=samba.port)
    with pytest.raises(ValueError):
        NetSessionDel(server, None, None, credentials=creds, port=samba.port)
    NetSessionDel(server, unc(sources[2]), "bob", credentials=creds, port=samba.port)

    by_client = {r["client_name"]: r for r in everyone}
    for source in sources:
        assert by_client[unc(source)] == {
            "client_name": unc(source), "user_name": "bob", "num_opens": 1,
            "active_time": by_client[unc(source)]["active_time"], "idle_time": 0, "user_flags": 0,
        }
    assert [(r["client_name"], r["user_name"]) for r in only_one] == [(unc(sources[0]), "bob")]
    assert {unc(s) for s in sources} <= {r["client_name"] for r in names}
    assert all(set(r) == {"client_name"} for r in names)
    assert level_10.value.status == INVALID_LEVEL
    assert {unc(s) for s in sources} <= {r["client_name"] for r in richest}
    assert all("num_opens" in r for r in richest)  # level 1 answered
    assert (info["client_name"], info["user_name"], info["num_opens"]) == (unc(sources[1]), "bob", 1)
    assert missing.value.status == NetApiStatus.NERR_ClientNameNotFound
    wait_until(lambda: not held.alive(2), "NetSessionDel's victim is cut off")
    assert held.alive(0) and held.alive(1)
