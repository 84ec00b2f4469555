"""Every MS-SRVS rule of our server, proved through peers we did not write.

Each test names the spec sentence it checks (MS-SRVS 3.1.4.5 NetrSessionEnum
and 3.1.4.6 NetrSessionDel, as quoted in ``rules.py``) and runs it through each
peer that can express the request: Samba's rpcclient (parsing its ``-d10``
decode), Samba's Python bindings, impacket's srvs, and our own SessionClient.

The world of every test: our server (in-process, port 4520-4529) with three
held sessions opened in this order, alice from 127.0.0.2 (a file open), bob
from 127.0.0.3, a null session from 127.0.0.4; then the caller's own session
(alice or bob from 127.0.0.1); then five decoys. So the unfiltered list is::

    0 alice@.2  1 bob@.3  2 (anonymous)@.4  3 caller@.1  4..8 decoy00000..decoy00004
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from smbsessions.levels import SessionInfo
from smbsessions.rules import SessionInfoPolicy, entry_size
from smbsessions.status import NetApiStatus as S

from ..peers.holders import ANONYMOUS, SessionHolder
from ..peers.ourserver import (
    ADMIN,
    USER,
    EnumResult,
    ImpacketPeer,
    OurServer,
    OursPeer,
    RpcclientPeer,
    SambaPyPeer,
    decoy_sessions,
    running_server,
)
from ..peers.samba_py import require_samba_py

pytestmark = pytest.mark.timeout(90)

HELD = 3
DECOYS = 5
LIST_SIZE = HELD + 1 + DECOYS
PEERS = ["rpcclient", "samba_py", "impacket", "ours"]
PAGING_PEERS = ["impacket", "ours"]  # samba_py raises on WERR_MORE_DATA; rpcclient sends MAX
ANY_LEVEL_PEERS = ["rpcclient", "impacket", "ours"]  # samba_py encodes only the five levels
DEL_PEERS = ["samba_py", "impacket", "ours"]  # rpcclient's netsessdel prints no status number
PEER_TYPES: dict[str, Any] = {
    "rpcclient": RpcclientPeer, "samba_py": SambaPyPeer, "impacket": ImpacketPeer, "ours": OursPeer,
}
Peer = Any
MakePeer = Callable[..., Peer]


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[OurServer]:
    with running_server(tmp_path, decoys=decoy_sessions(DECOYS)) as server:
        yield server


@pytest.fixture
def held(srv: OurServer) -> Iterator[SessionHolder]:
    # One worker: sessions are created in index order, so list positions are known.
    holder = SessionHolder(srv.host, srv.port, HELD, credentials=[ADMIN, USER, ANONYMOUS],
                           open_files=0, workers=1)
    holder.open()
    try:
        conn = holder.connection(0)
        conn.openFile(conn.connectTree("IPC$"), "srvsvc", desiredAccess=0x12019F)  # counts in num_opens
        yield holder
    finally:
        holder.close()


@pytest.fixture
def make_peer(srv: OurServer, held: SessionHolder) -> Iterator[MakePeer]:
    made: list[Peer] = []

    def make(name: str, account: tuple[str, str] = ADMIN) -> Peer:
        if name == "samba_py":
            require_samba_py()
        # Peers that connect per call must find the previous caller gone first,
        # or list positions would shift under the test.
        peer = PEER_TYPES[name](srv, *account, settle=lambda: srv.wait_live(HELD))
        made.append(peer)
        return peer

    try:
        yield make
    finally:
        for peer in made:
            peer.close()


def names(result: EnumResult) -> list[str | None]:
    return [e.cname for e in result.entries]


EXPECTED_NAMES = ["\\\\127.0.0.2", "\\\\127.0.0.3", "\\\\127.0.0.4", "\\\\127.0.0.1"] + [
    d.cname for d in decoy_sessions(DECOYS)]


def expected_list(srv: OurServer) -> list[SessionInfo]:
    """The server's list while a persistent peer (impacket, ours) is connected."""
    rows = srv.server.snapshot()
    assert [info.cname for _, info in rows] == EXPECTED_NAMES, rows
    return [info for _, info in rows]


# ---------------------------------------------------------------- 3.1.4.5 NetrSessionEnum


@pytest.mark.parametrize("peer_name", PEERS)
def test_client_name_without_backslashes_is_invalid_computer(make_peer: MakePeer, peer_name: str) -> None:
    """"If a ClientName is specified, it MUST start with "\\\\"; otherwise NERR_InvalidComputer.\""""
    peer = make_peer(peer_name)
    assert peer.enum(1, "127.0.0.2", "alice").status == S.NERR_InvalidComputer
    assert peer.enum(10, "WS1", "alice").status == S.NERR_InvalidComputer


@pytest.mark.parametrize("peer_name", PEERS)
def test_names_over_1024_characters_are_invalid_parameter(make_peer: MakePeer, peer_name: str) -> None:
    """"... more than 1,024 characters, including the terminating null character ...
    ERROR_INVALID_PARAMETER" (ClientName and UserName)."""
    peer = make_peer(peer_name)
    too_long_client = "\\\\" + "a" * 1023  # 1025 characters + NUL
    longest_client = "\\\\" + "a" * 1021  # 1023 characters + NUL = 1024: allowed
    assert peer.enum(1, too_long_client, "alice").status == S.ERROR_INVALID_PARAMETER
    assert peer.enum(1, longest_client, "alice").status == S.NERR_ClientNameNotFound
    assert peer.enum(1, "\\\\127.0.0.2", "u" * 1024).status == S.ERROR_INVALID_PARAMETER
    assert peer.enum(1, "\\\\127.0.0.2", "u" * 1023).status == S.NERR_UserNotFound


@pytest.mark.parametrize("peer_name", ANY_LEVEL_PEERS)
@pytest.mark.parametrize("level", [3, 11, 101, 503])
def test_unknown_level_is_invalid_level(make_peer: MakePeer, peer_name: str, level: int) -> None:
    """"If the Level member is not equal to one of the valid values ... ERROR_INVALID_LEVEL.\""""
    result = make_peer(peer_name).enum(level, "\\\\127.0.0.2", "alice")
    assert result.status == S.ERROR_INVALID_LEVEL
    assert result.entries == []


@pytest.mark.parametrize("peer_name", PEERS)
def test_no_matching_session_is_not_found(make_peer: MakePeer, peer_name: str) -> None:
    """"... if a qualifier was given and nothing matches: NERR_UserNotFound or NERR_ClientNameNotFound."""
    peer = make_peer(peer_name)
    not_found = {S.NERR_UserNotFound, S.NERR_ClientNameNotFound}
    unknown_client = peer.enum(1, "\\\\192.0.2.1", "alice")
    assert unknown_client.status in not_found and unknown_client.entries == []
    # Our documented choice: the client is absent -> NERR_ClientNameNotFound ...
    assert unknown_client.status == S.NERR_ClientNameNotFound
    # ... the client is there but the user is not -> NERR_UserNotFound.
    assert peer.enum(1, "\\\\127.0.0.2", "nobody").status == S.NERR_UserNotFound
    if peer_name != "rpcclient":  # it cannot send a user without a client
        assert peer.enum(10, None, "nobody").status == S.NERR_UserNotFound


@pytest.mark.parametrize("peer_name", PEERS)
def test_qualifiers_are_anded_and_case_insensitive(make_peer: MakePeer, peer_name: str) -> None:
    """"Only sessions matching every given qualifier are returned.\""""
    peer = make_peer(peer_name)
    both = peer.enum(10, "\\\\127.0.0.2", "alice")
    assert (both.status, names(both), [e.username for e in both.entries]) == (
        S.NERR_Success, ["\\\\127.0.0.2"], ["alice"])
    # alice is on the server and 127.0.0.3 is a client, but not together.
    assert peer.enum(10, "\\\\127.0.0.3", "alice").status == S.NERR_UserNotFound
    assert names(peer.enum(10, "\\\\127.0.0.3", "BOB")) == ["\\\\127.0.0.3"]
    if peer_name != "rpcclient":
        only_user = peer.enum(10, None, "alice")
        # The held session from .2 and the caller's own from .1.
        assert sorted(names(only_user)) == ["\\\\127.0.0.1", "\\\\127.0.0.2"]
        only_client = peer.enum(0, "\\\\127.0.0.4", None)
        assert names(only_client) == ["\\\\127.0.0.4"]


@pytest.mark.parametrize("peer_name", PEERS)
def test_resume_handle_null_or_zero_starts_at_the_beginning(
    srv: OurServer, make_peer: MakePeer, peer_name: str
) -> None:
    """"If the ResumeHandle parameter is either NULL or points to 0x00000000, the
    enumeration MUST start from the beginning of the SessionList.\""""
    peer = make_peer(peer_name)
    if peer_name == "rpcclient":
        # Without qualifiers rpcclient can only send level 1 with a NULL handle.
        result = peer.enum(1, resume=None)
        assert result.status == S.NERR_Success and result.resume is None
        assert names(result) == EXPECTED_NAMES
        return
    for resume in (None, 0):
        result = peer.enum(0, resume=resume)
        assert result.status == S.NERR_Success
        assert names(result) == EXPECTED_NAMES
        assert result.total == LIST_SIZE
        assert result.resume == resume  # NULL stays NULL; a finished enumeration says 0


@pytest.mark.parametrize("peer_name", PEERS)
def test_resume_handle_at_or_past_the_end_gives_success_and_nothing(
    make_peer: MakePeer, peer_name: str
) -> None:
    """"If the value of ResumeHandle is greater than or equal to the size of the
    SessionList, the server MUST return NERR_Success and zero entries.\""""
    peer = make_peer(peer_name)
    # impacket's ResumeHandle is a signed LONG: it silently sends 0xFFFFFFFF as 0.
    biggest = 0x7FFFFFFF if peer_name == "impacket" else 0xFFFFFFFF
    for resume in (LIST_SIZE, LIST_SIZE + 1, biggest):
        if peer_name == "rpcclient":
            result = peer.enum(10, "\\\\127.0.0.2", "alice", resume=resume)
        else:
            result = peer.enum(10, resume=resume)
        assert (result.status, result.entries) == (S.NERR_Success, [])


@pytest.mark.parametrize("peer_name", PEERS)
def test_resume_handle_indexes_the_unfiltered_list(srv: OurServer, make_peer: MakePeer, peer_name: str) -> None:
    """"... a value below the list size continues after that index ... It indexes the
    unfiltered list; qualifiers are applied after it.\""""
    peer = make_peer(peer_name)
    if peer_name == "rpcclient":
        # Index 1 is bob@.3; alice@.2 (index 0) lies before it.
        assert peer.enum(10, "\\\\127.0.0.2", "alice", resume=1).status == S.NERR_ClientNameNotFound
        assert names(peer.enum(10, "\\\\127.0.0.2", "alice", resume=0)) == ["\\\\127.0.0.2"]
        return
    tail = peer.enum(0, resume=5)
    assert (tail.status, names(tail), tail.total) == (S.NERR_Success, EXPECTED_NAMES[5:], LIST_SIZE - 5)
    # alice's sessions are at 0 (held) and 3 (the caller): from 1 on only the caller's.
    assert names(peer.enum(10, None, "alice", resume=1)) == ["\\\\127.0.0.1"]


@pytest.mark.parametrize("peer_name", ["samba_py", *PAGING_PEERS])
def test_small_max_length_returns_what_fits_with_more_data(
    srv: OurServer, make_peer: MakePeer, peer_name: str
) -> None:
    """"If the PreferedMaximumLength is insufficient to hold all the entries, the server
    MUST return the maximum number of entries that will fit ... and return ERROR_MORE_DATA";
    ResumeHandle is then set so the next call continues; TotalEntries counts from the position."""
    peer = make_peer(peer_name)
    one = peer.enum(502, max_len=1)
    assert one.status == S.ERROR_MORE_DATA
    if peer_name == "samba_py":
        return  # its bindings raise on WERR_MORE_DATA: the status is all it shows
    full = expected_list(srv)
    # Forward progress: at least one entry per call.
    assert (names(one), one.resume, one.total) == ([full[0].cname], 1, LIST_SIZE)
    # Our documented accounting: 4 bytes per DWORD/pointer + UTF-16 strings with NUL.
    three = sum(entry_size(502, info) for info in full[:3])
    exact = peer.enum(502, max_len=three)
    assert (exact.status, names(exact), exact.resume) == (
        S.ERROR_MORE_DATA, [e.cname for e in full[:3]], 3)
    short = peer.enum(502, max_len=three - 1)
    assert (names(short), short.resume) == ([e.cname for e in full[:2]], 2)
    # TotalEntries: what passes the qualifiers from the resume position on.
    later = peer.enum(502, max_len=1, resume=6)
    assert (later.status, names(later), later.total, later.resume) == (
        S.ERROR_MORE_DATA, [full[6].cname], LIST_SIZE - 6, 7)
    last = peer.enum(502, max_len=1, resume=LIST_SIZE - 1)
    assert (last.status, names(last), last.total, last.resume) == (
        S.NERR_Success, [full[-1].cname], 1, 0)


@pytest.mark.parametrize("peer_name", PAGING_PEERS)
def test_paging_with_small_max_length_yields_each_entry_once(
    srv: OurServer, make_peer: MakePeer, peer_name: str
) -> None:
    """"Callers loop while ERROR_MORE_DATA, passing the resume handle back.\""""
    peer = make_peer(peer_name)
    seen: list[str | None] = []
    resume = 0
    for _ in range(LIST_SIZE + 1):
        page = peer.enum(1, max_len=60, resume=resume)
        seen += names(page)
        if page.status == S.NERR_Success:
            break
        assert page.status == S.ERROR_MORE_DATA and page.resume > resume
        resume = page.resume
    assert seen == [e.cname for e in expected_list(srv)]


@pytest.mark.parametrize("peer_name", PEERS)
def test_total_entries_counts_the_qualified_sessions(make_peer: MakePeer, peer_name: str) -> None:
    """TotalEntries: "entries passing the qualifiers that could be enumerated from the
    current resume position.\""""
    peer = make_peer(peer_name)
    if peer_name == "rpcclient":
        assert peer.enum(502, "\\\\10.0.0.2", "decoy00002").total == 1
        return
    assert peer.enum(502).total == LIST_SIZE
    assert peer.enum(502, None, "decoy00002").total == 1
    assert peer.enum(10, None, "alice").total == 2


# ---------------------------------------------------------------- access


@pytest.mark.parametrize("peer_name", PEERS)
def test_admins_policy_denies_a_plain_user_every_level(make_peer: MakePeer, peer_name: str) -> None:
    """Modern Windows' SrvsvcSessionInfo default: only administrators enumerate; "Denial returns 5"."""
    peer = make_peer(peer_name, USER)
    for level in (0, 1, 2, 10, 502):
        assert peer.enum(level, "\\\\127.0.0.3", "bob").status == S.ERROR_ACCESS_DENIED


@pytest.mark.parametrize("peer_name", PEERS)
def test_authenticated_policy_opens_levels_0_and_10_to_users(
    srv: OurServer, make_peer: MakePeer, peer_name: str
) -> None:
    """Win32: "levels 1 and 2 need Administrators or Server Operators; 0 and 10 need nothing special"."""
    srv.policy = SessionInfoPolicy.AUTHENTICATED
    peer = make_peer(peer_name, USER)
    for level in (0, 10):
        result = peer.enum(level, "\\\\127.0.0.3", "bob")
        assert (result.status, names(result)) == (S.NERR_Success, ["\\\\127.0.0.3"])
    for level in (1, 2, 502):
        assert peer.enum(level, "\\\\127.0.0.3", "bob").status == S.ERROR_ACCESS_DENIED
    admin = make_peer(peer_name, ADMIN)
    assert admin.enum(502, "\\\\127.0.0.3", "bob").status == S.NERR_Success


@pytest.mark.parametrize("policy", list(SessionInfoPolicy))
@pytest.mark.parametrize("peer_name", PEERS)
def test_anonymous_never_enumerates(
    srv: OurServer, make_peer: MakePeer, peer_name: str, policy: SessionInfoPolicy
) -> None:
    """"The server SHOULD enforce the security measures": a null session learns nothing."""
    srv.policy = policy
    peer = make_peer(peer_name, ("", ""))
    for level in (0, 10):
        result = peer.enum(level, "\\\\127.0.0.2", "alice")
        assert (result.status, result.entries) == (S.ERROR_ACCESS_DENIED, [])


# ---------------------------------------------------------------- 3.1.4.6 NetrSessionDel


def del_status(peer: Peer, client: str | None, user: str | None) -> int:
    answer = peer.delete(client, user)
    if isinstance(answer, dict):  # samba_py
        assert answer["werror"] is not None, answer
        return int(answer["werror"])
    if isinstance(answer, int):
        return answer
    raise AssertionError(f"unexpected delete answer {answer!r}")


class OursDeleter:
    """Our client's NetrSessionDel through its public API, reporting the status."""

    def __init__(self, peer: OursPeer) -> None:
        self.peer = peer

    def delete(self, client: str | None, user: str | None) -> int:
        from smbsessions.messages import DelRequest
        from smbsessions.ndr import OPNUM_NETR_SESSION_DEL, decode_del_response, encode_del_request

        stub = encode_del_request(DelRequest(None, client, user))
        return decode_del_response(self.peer.client._call(OPNUM_NETR_SESSION_DEL, stub))


def deleter(make_peer: MakePeer, name: str, account: tuple[str, str] = ADMIN) -> Peer:
    peer = make_peer(name, account)
    return OursDeleter(peer) if name == "ours" else peer


@pytest.mark.parametrize("peer_name", DEL_PEERS)
def test_del_with_both_names_null_is_refused(
    srv: OurServer, held: SessionHolder, make_peer: MakePeer, peer_name: str
) -> None:
    """"Both qualifiers missing: MUST fail (NERR_ClientNameNotFound or ERROR_INVALID_PARAMETER)"."""
    status = del_status(deleter(make_peer, peer_name), None, None)
    assert status == S.ERROR_INVALID_PARAMETER
    assert all(held.alive_all())


@pytest.mark.parametrize("peer_name", DEL_PEERS)
def test_del_without_a_match_or_without_backslashes_is_client_not_found(
    held: SessionHolder, make_peer: MakePeer, peer_name: str
) -> None:
    """"ClientName given but not starting with \\\\: NERR_ClientNameNotFound"; "none matches:
    NERR_ClientNameNotFound"; "Over 1024 characters: ERROR_INVALID_PARAMETER"."""
    peer = deleter(make_peer, peer_name)
    assert del_status(peer, "127.0.0.3", None) == S.NERR_ClientNameNotFound
    assert del_status(peer, "\\\\192.0.2.1", None) == S.NERR_ClientNameNotFound
    assert del_status(peer, None, "nobody") == S.NERR_ClientNameNotFound
    assert del_status(peer, "\\\\127.0.0.2", "bob") == S.NERR_ClientNameNotFound
    assert del_status(peer, "\\\\" + "a" * 1023, None) == S.ERROR_INVALID_PARAMETER
    assert del_status(peer, None, "u" * 1024) == S.ERROR_INVALID_PARAMETER
    assert all(held.alive_all())


def test_rpcclient_netsessdel_without_backslashes_leaves_everyone(
    srv: OurServer, held: SessionHolder
) -> None:
    """rpcclient's netsessdel prints only the WERR name: check it and that nobody was cut."""
    peer = RpcclientPeer(srv, *ADMIN, settle=lambda: srv.wait_live(HELD))
    assert "WERR_NERR_CLIENTNAMENOTFOUND" in peer.delete("127.0.0.3").stdout
    assert "WERR_NERR_CLIENTNAMENOTFOUND" in peer.delete("\\\\192.0.2.9").stdout
    assert all(held.alive_all())


@pytest.mark.parametrize("peer_name", DEL_PEERS)
def test_del_disconnects_exactly_the_matching_sessions(
    srv: OurServer, held: SessionHolder, make_peer: MakePeer, peer_name: str
) -> None:
    """"Closes every session matching the given qualifiers (the client is disconnected).\""""
    peer = deleter(make_peer, peer_name)
    assert del_status(peer, "\\\\127.0.0.3", None) == S.NERR_Success
    assert held.alive_all() == [True, False, True]
    live = {(e.cname, e.username) for e in srv.live()}
    assert ("\\\\127.0.0.3", "bob") not in live and ("\\\\127.0.0.2", "alice") in live


def test_del_by_user_disconnects_every_session_of_that_user(
    srv: OurServer, held: SessionHolder, hold_sessions: Callable[..., SessionHolder], make_peer: MakePeer
) -> None:
    """"NULL client = all sessions of that user.\""""
    more_bob = hold_sessions(srv.host, srv.port, 2, credentials=[USER], source_ips=["127.0.0.9"])
    peer = deleter(make_peer, "impacket")
    assert del_status(peer, None, "bob") == S.NERR_Success
    assert more_bob.alive_all() == [False, False]
    assert held.alive_all() == [True, False, True]
    assert not [e for e in srv.live() if e.username == "bob"]


def test_callers_own_session_is_deleted_last(srv: OurServer, held: SessionHolder, make_peer: MakePeer) -> None:
    """Deleting sessions that include the caller's: the reply arrives, then the connection is cut."""
    impacket = make_peer("impacket")
    assert impacket.delete(None, "alice") == S.NERR_Success  # the answer made it back
    assert held.alive_all() == [False, True, True]
    with pytest.raises(Exception):  # noqa: B017 - any transport error: the pipe is gone
        impacket.enum(0)
    assert [e.username for e in srv.wait_live(2)] == ["bob", ""]


def test_samba_py_gets_the_reply_before_its_own_session_is_cut(
    srv: OurServer, held: SessionHolder, make_peer: MakePeer
) -> None:
    """Same rule through Samba's client: a WERR_OK reply, not a broken connection."""
    answer = make_peer("samba_py").delete("\\\\127.0.0.1", "alice")
    assert (answer["werror"], answer["ntstatus"]) == (0, None), answer
    assert all(held.alive_all())


@pytest.mark.parametrize("peer_name", DEL_PEERS)
def test_del_needs_an_administrator(
    held: SessionHolder, make_peer: MakePeer, peer_name: str
) -> None:
    """"Access checked (admins)": a plain user and a null session get ERROR_ACCESS_DENIED."""
    for account in (USER, ("", "")):
        assert del_status(deleter(make_peer, peer_name, account), "\\\\127.0.0.3", None) == \
            S.ERROR_ACCESS_DENIED
    assert all(held.alive_all())
