"""The srvsvc endpoint, driven with bytes: bind, calls, faults, message-mode reads."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import ClassVar

import pytest
from impacket.dcerpc.v5 import srvs
from impacket.dcerpc.v5.dtypes import NULL

from smbsessions import messages, srvsvc_ndr
from smbsessions.auth import nt_hash_of
from smbsessions.dcerpc import PduStream, RpcClientConnection, decode_fault, parse_pdu
from smbsessions.levels import SessionInfo
from smbsessions.messages import DelRequest, EnumRequest
from smbsessions.ndr import decode_del_response, decode_enum_response, encode_del_request, encode_enum_request
from smbsessions.rules import SessionInfoPolicy
from smbsessions.server.srvsvc import InputBudget, SrvsvcEndpoint, srvsvc_factory
from smbsessions.server.types import CallerInfo
from smbsessions.srvsvc_levels import ServerIdentity, decoy_share
from smbsessions.status import NetApiStatus, RpcFaultError, RpcFaultStatus

SESSIONS = [
    (i + 1, SessionInfo(f"\\\\127.0.0.{i + 2}", "bob" if i % 2 == 0 else "alice", i, 10 * i, i, 0,
                        "SMB 2.1", "TCP"))
    for i in range(200)
]


class FakeControl:
    def __init__(self, rows: list[tuple[int, SessionInfo]]) -> None:
        self.rows = rows
        self.disconnected: list[tuple[list[int], int | None]] = []

    def snapshot(self) -> list[tuple[int, SessionInfo]]:
        return list(self.rows)

    def disconnect(self, keys: Iterable[int], defer_for: int | None = None) -> list[int]:
        keys = list(keys)
        self.disconnected.append((keys, defer_for))
        return keys

    identity = ServerIdentity(name="Srv", comment="a comment", decoy_shares=(decoy_share("ADMIN$"),))
    accounts: ClassVar[dict[str, tuple[str, bool]]] = {"alice": ("alicepw", True), "bob": ("bobpw", False)}

    def lookup_nt_hash(self, user: str) -> bytes | None:
        account = self.accounts.get(user.lower())
        return None if account is None else bytes.fromhex(nt_hash_of(account[0]))

    def is_admin(self, user: str) -> bool:
        return self.accounts.get(user.lower(), ("", False))[1]


def caller(admin: bool = True, guest: bool = False, key: int = 7) -> CallerInfo:
    return CallerInfo(key, "" if guest else "alice", "", admin, guest, "127.0.0.9")


class Harness:
    def __init__(self, endpoint: SrvsvcEndpoint, read_size: int = 65536) -> None:
        self.endpoint = endpoint
        self.rpc = RpcClientConnection(max_recv_frag=4280)
        self.read_size = read_size
        endpoint.write(self.rpc.bind())
        self.rpc.receive_bind_ack(self._message())

    def _message(self) -> bytes:
        parts = []
        while True:
            chunk, more = self.endpoint.read(self.read_size)
            parts.append(chunk)
            if not more:
                return b"".join(parts)

    def call(self, opnum: int, stub: bytes) -> bytes:
        for fragment in self.rpc.request(opnum, stub):
            self.endpoint.write(fragment)
        stream = PduStream()
        for _ in range(1000):
            message = self._message()
            assert message, "the endpoint ran out of output before the last fragment"
            for pdu in stream.feed(message):
                answer = self.rpc.receive(pdu)
                if answer is not None:
                    return answer
        raise AssertionError("no complete answer")


def make(admin: bool = True, guest: bool = False, policy: SessionInfoPolicy = SessionInfoPolicy.ADMINS,
         read_size: int = 65536) -> tuple[Harness, FakeControl]:
    control = FakeControl(SESSIONS)
    return Harness(SrvsvcEndpoint(caller(admin, guest), control, policy), read_size), control


@pytest.mark.parametrize("read_size", [65536, 1000, 16])
def test_enum_502_spans_many_fragments_and_small_reads(read_size: int) -> None:
    harness, _ = make(read_size=read_size)
    response = decode_enum_response(harness.call(12, encode_enum_request(EnumRequest(502))))
    assert response.status == NetApiStatus.NERR_Success
    assert response.entries == [info for _, info in SESSIONS]
    assert response.total_entries == 200


def test_impacket_request_and_response_interoperate() -> None:
    harness, _ = make()
    request = srvs.NetrSessionEnum()
    request["ServerName"] = NULL
    request["ClientName"] = NULL
    request["UserName"] = "alice\x00"
    request["InfoStruct"]["Level"] = 10
    request["InfoStruct"]["SessionInfo"]["tag"] = 10
    request["InfoStruct"]["SessionInfo"]["Level10"]["Buffer"] = NULL
    request["PreferedMaximumLength"] = 0xFFFFFFFF
    request["ResumeHandle"] = NULL
    answer = srvs.NetrSessionEnumResponse()
    answer.fromString(harness.call(12, request.getData()))
    buffer = answer["InfoStruct"]["SessionInfo"]["Level10"]["Buffer"]
    assert len(buffer) == 100
    assert {entry["sesi10_username"][:-1] for entry in buffer} == {"alice"}
    assert answer["ErrorCode"] == 0


def test_paging_through_the_endpoint_yields_each_entry_once() -> None:
    harness, _ = make()
    seen: list[SessionInfo] = []
    handle = 0
    for _ in range(300):
        response = decode_enum_response(
            harness.call(12, encode_enum_request(EnumRequest(1, prefmaxlen=500, resume_handle=handle)))
        )
        assert response.entries
        seen.extend(response.entries)
        if response.status == NetApiStatus.NERR_Success:
            break
        assert response.status == NetApiStatus.ERROR_MORE_DATA
        handle = response.resume_handle or 0
    assert seen == [info.project(1) for _, info in SESSIONS]


def test_policy_and_guest_denial() -> None:
    harness, _ = make(admin=False)
    assert decode_enum_response(harness.call(12, encode_enum_request(EnumRequest(10)))).status == 5
    harness, _ = make(admin=False, policy=SessionInfoPolicy.AUTHENTICATED)
    assert decode_enum_response(harness.call(12, encode_enum_request(EnumRequest(10)))).status == 0
    harness, _ = make(admin=False, guest=True, policy=SessionInfoPolicy.AUTHENTICATED)
    assert decode_enum_response(harness.call(12, encode_enum_request(EnumRequest(0)))).status == 5


def test_delete_disconnects_matching_keys_deferring_the_caller() -> None:
    harness, control = make()
    stub = encode_del_request(DelRequest(None, "\\\\127.0.0.3", None))
    status = decode_del_response(harness.call(13, stub))
    assert status == NetApiStatus.NERR_Success
    assert control.disconnected == [([2], 7)]
    status = decode_del_response(harness.call(13, encode_del_request(DelRequest(None, None, None))))
    assert status == NetApiStatus.ERROR_INVALID_PARAMETER
    assert len(control.disconnected) == 1


@pytest.mark.parametrize("opnum", [0, 14, 17, 22, 29, 99])
def test_unanswered_opnums_fault_with_op_rng_error(opnum: int) -> None:
    harness, _ = make()
    with pytest.raises(RpcFaultError) as info:
        harness.call(opnum, b"\0" * 8)
    assert info.value.code == RpcFaultStatus.nca_s_op_rng_error


def test_malformed_stub_faults_and_the_pipe_keeps_working() -> None:
    harness, _ = make()
    with pytest.raises(RpcFaultError) as info:
        harness.call(12, b"\x00\x00\x02\x00\xff\xff\xff\x7f")
    assert info.value.code == RpcFaultStatus.RPC_X_BAD_STUB_DATA
    response = decode_enum_response(harness.call(12, encode_enum_request(EnumRequest(0))))
    assert response.status == 0


def test_garbage_before_bind_gets_a_fault_not_an_exception() -> None:
    endpoint = SrvsvcEndpoint(caller(), FakeControl(SESSIONS), SessionInfoPolicy.ADMINS)
    endpoint.write(b"\xff" * 100)
    chunk, more = endpoint.read(4096)
    assert parse_pdu(chunk).ptype == 3  # fault
    assert not more


# -- shares, server info, time of day (opnums 15, 16, 20, 21, 28, 36) -----------------------


def test_share_enum_lists_ipc_typed_as_ipc_and_decoys_as_configured() -> None:
    harness, _ = make(admin=False, guest=True)
    for opnum in (15, 36):
        stub = srvsvc_ndr.encode_share_enum_request(messages.ShareEnumRequest(1))
        response = srvsvc_ndr.decode_share_enum_response(harness.call(opnum, stub))
        assert response.status == 0 and response.level == 1
        assert [(s.netname, s.type, s.remark) for s in response.entries or []] == [
            ("IPC$", 0x80000003, "Remote IPC"), ("ADMIN$", 0x80000000, "Remote Admin")]


@pytest.mark.parametrize(("opnum", "level", "admin", "status"), [
    (15, 2, False, 5), (15, 502, False, 5), (15, 501, False, 5), (15, 2, True, 0), (15, 503, True, 0),
    (36, 501, True, 124), (15, 10, True, 124), (36, 0, False, 0),
])
def test_share_enum_answers_at_the_level_asked(opnum: int, level: int, admin: bool, status: int) -> None:
    harness, _ = make(admin=admin)
    stub = srvsvc_ndr.encode_share_enum_request(messages.ShareEnumRequest(level))
    response = srvsvc_ndr.decode_share_enum_response(harness.call(opnum, stub))
    assert (response.level, response.status) == (level, status)
    if status == 0:
        assert response.entries is not None and len(response.entries) == 2
    else:
        assert not response.entries


def test_share_get_info_check_server_info_and_tod() -> None:
    harness, _ = make(admin=False)
    stub = srvsvc_ndr.encode_share_get_info_request(messages.ShareGetInfoRequest("admin$", 501))
    answer = srvsvc_ndr.decode_share_get_info_response(harness.call(16, stub), 501)
    assert answer.status == 0 and answer.info is not None and answer.info.netname == "ADMIN$"
    stub = srvsvc_ndr.encode_share_get_info_request(messages.ShareGetInfoRequest("nothere", 1))
    assert srvsvc_ndr.decode_share_get_info_response(harness.call(16, stub), 1).status == 2310
    stub = srvsvc_ndr.encode_share_get_info_request(messages.ShareGetInfoRequest("ADMIN$", 502))
    assert srvsvc_ndr.decode_share_get_info_response(harness.call(16, stub), 502) == \
        messages.ShareGetInfoResponse(502, None, 5)
    stub = srvsvc_ndr.encode_share_check_request(messages.ShareCheckRequest("c:\\windows\\"))
    assert srvsvc_ndr.decode_share_check_response(harness.call(20, stub)) == \
        messages.ShareCheckResponse(0x80000000, 0)
    stub = srvsvc_ndr.encode_server_get_info_request(messages.ServerGetInfoRequest(101))
    info = srvsvc_ndr.decode_server_get_info_response(harness.call(21, stub), 101).info
    assert info is not None and (info.platform_id, info.name, info.version_major, info.type, info.comment) == (
        500, "Srv", 10, 0x9003, "a comment")
    stub = srvsvc_ndr.encode_server_get_info_request(messages.ServerGetInfoRequest(102))
    assert srvsvc_ndr.decode_server_get_info_response(harness.call(21, stub), 102).status == 5
    before = int(time.time())
    tod = srvsvc_ndr.decode_remote_tod_response(harness.call(28, srvsvc_ndr.encode_remote_tod_request())).tod
    assert tod is not None and before - 1 <= tod.elapsed <= int(time.time()) + 1


def test_a_closed_endpoint_is_freed_without_the_cyclic_collector() -> None:
    import gc
    import weakref

    endpoint = SrvsvcEndpoint(caller(), FakeControl(SESSIONS), SessionInfoPolicy.ADMINS)
    harness = Harness(endpoint)
    first = harness.rpc.request(12, bytes(40_000))[0]  # the first of several fragments
    endpoint.write(first + first[:100])  # an unfinished request and a partial PDU
    endpoint.close()
    assert endpoint.read(100) == (b"", False)
    ref = weakref.ref(endpoint)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        del endpoint, harness
        assert ref() is None  # reference counting alone freed it: no cycle
    finally:
        if was_enabled:
            gc.enable()


def test_an_oversized_request_is_refused_past_256_kib_but_long_names_get_their_status() -> None:
    harness, _ = make()
    stub = encode_enum_request(EnumRequest(1, client_name="\\\\" + "A" * 30_000, user_name="u" * 30_000))
    assert decode_enum_response(harness.call(12, stub)).status == 87  # ERROR_INVALID_PARAMETER
    with pytest.raises(RpcFaultError) as info:
        harness.call(12, bytes(257 << 10))
    assert info.value.code == RpcFaultStatus.nca_s_proto_error
    assert decode_enum_response(harness.call(12, encode_enum_request(EnumRequest(0)))).status == 0


def test_qualifiers_that_match_nothing_get_their_status_through_the_endpoint() -> None:
    harness, _ = make()
    response = decode_enum_response(harness.call(12, encode_enum_request(
        EnumRequest(1, client_name="\\\\192.0.2.1", resume_handle=5))))
    assert response.status == NetApiStatus.NERR_ClientNameNotFound
    response = decode_enum_response(harness.call(12, encode_enum_request(
        EnumRequest(1, client_name="\\\\127.0.0.2", user_name="nobody"))))
    assert response.status == NetApiStatus.NERR_UserNotFound


def test_pipes_share_an_input_budget_and_the_one_that_overflows_it_is_cut_off() -> None:
    budget = InputBudget(limit=300_000)
    factory = srvsvc_factory(FakeControl(SESSIONS), SessionInfoPolicy.ADMINS, budget)
    endpoints = [factory(caller()) for _ in range(3)]
    assert all(isinstance(e, SrvsvcEndpoint) for e in endpoints)
    first, second, honest = (Harness(e) for e in endpoints if isinstance(e, SrvsvcEndpoint))

    def start_unfinished(harness: Harness) -> None:
        for fragment in harness.rpc.request(12, bytes(250_000))[:-1]:  # never the last fragment
            harness.endpoint.write(fragment)

    start_unfinished(first)
    assert 200_000 < budget.used <= 300_000
    start_unfinished(second)  # pushes the total over: this pipe is cut off, and its bytes released
    assert budget.used < 300_000
    pdu = parse_pdu(second.endpoint.read(4096)[0])
    assert pdu.ptype == 3 and decode_fault(pdu).status == RpcFaultStatus.nca_s_proto_error
    # The pipe that stayed within the budget, and an honest one, still work.
    assert decode_enum_response(honest.call(12, encode_enum_request(EnumRequest(0)))).status == 0
    first.endpoint.close()
    assert budget.used == 0
