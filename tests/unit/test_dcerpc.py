"""DCE/RPC connection-oriented PDUs: bind, requests, fragments, faults (C706 ch. 12, MS-RPCE 2.2.2).

Plain bytes in and out, plus interop with impacket's rpcrt structures in both
directions (an independent reading of the same PDU layouts).
"""

from __future__ import annotations

import struct
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smbsessions import dcerpc
from smbsessions.dcerpc import (
    NDR20,
    NDR64,
    SRVSVC,
    Bind,
    ContextElement,
    PduStream,
    PType,
    RpcClientConnection,
    RpcServerConnection,
    SyntaxId,
)
from smbsessions.status import ProtocolError, RpcFaultError, RpcFaultStatus

BIND_TIME_FEATURES = SyntaxId(uuid.UUID("6cb71c2c-9812-4540-0300-000000000000"), 1, 0)
OTHER_INTERFACE = SyntaxId(uuid.UUID("12345778-1234-abcd-ef00-0123456789ac"), 1, 0)


def bind_pdu(contexts: tuple[ContextElement, ...], call_id: int = 1, max_recv: int = 4280,
             ptype: int = PType.BIND) -> bytes:
    body = dcerpc.encode_bind(Bind(4280, max_recv, 0, contexts))
    return dcerpc.encode_pdu(ptype, dcerpc.PFC_FIRST_FRAG | dcerpc.PFC_LAST_FRAG, call_id, body)


def iter_pdus(chunks: list[bytes]) -> list[dcerpc.Pdu]:
    """Parse PDUs from chunks that may split or join PDUs arbitrarily."""
    stream = dcerpc.PduStream()
    pdus: list[dcerpc.Pdu] = []
    for chunk in chunks:
        pdus.extend(stream.feed(chunk))
    if stream.pending:
        raise ProtocolError(f"{stream.pending} bytes of an incomplete PDU at the end")
    return pdus


def bound_pair(max_frag: int = 4280) -> tuple[RpcClientConnection, RpcServerConnection]:
    client = RpcClientConnection(max_xmit_frag=max_frag, max_recv_frag=max_frag)
    server = RpcServerConnection(max_frag=max_frag)
    assert server.receive_data(client.bind()) == []
    ack = server.next_pdu()
    assert ack is not None
    client.receive_bind_ack(ack)
    return client, server


def drain(server: RpcServerConnection) -> list[bytes]:
    out = []
    while (pdu := server.next_pdu()) is not None:
        out.append(pdu)
    return out


# --------------------------------------------------------------------------- framing


def test_header_bytes_of_a_client_bind() -> None:
    pdu = RpcClientConnection().bind()
    assert pdu[:16] == bytes.fromhex("05000b0310000000") + struct.pack("<HHI", len(pdu), 0, 1)
    # max_xmit 4280, max_recv 65535, assoc group 0, one context, id 0, one transfer syntax.
    assert pdu[16:28] == struct.pack("<HHIBBH", 4280, 0xFFFF, 0, 1, 0, 0)
    assert pdu[28:32] == struct.pack("<HBB", 0, 1, 0)
    assert pdu[32:52] == uuid.UUID("4b324fc8-1670-01d3-1278-5a47bf6ee188").bytes_le + b"\x03\0\0\0"
    assert pdu[52:72] == uuid.UUID("8a885d04-1ceb-11c9-9fe8-08002b104860").bytes_le + b"\x02\0\0\0"
    assert len(pdu) == 72


def test_parse_pdu_checks() -> None:
    good = RpcClientConnection().bind()
    assert dcerpc.parse_pdu(good).ptype == PType.BIND
    with pytest.raises(ProtocolError, match="shorter"):
        dcerpc.parse_pdu(good[:10])
    with pytest.raises(ProtocolError, match="version"):
        dcerpc.parse_pdu(b"\x04" + good[1:])
    with pytest.raises(ProtocolError, match="representation"):
        dcerpc.parse_pdu(good[:4] + b"\0\0\0\0" + good[8:])
    with pytest.raises(ProtocolError, match="frag_length"):
        dcerpc.parse_pdu(good + b"\0")


def test_parse_pdu_strips_auth_trailer() -> None:
    body = b"stub" + b"\0" * 4  # 4 bytes of auth padding
    trailer = struct.pack("<BBBBI", 10, 2, 4, 0, 0)
    verifier = b"V" * 16
    length = 16 + len(body) + 8 + len(verifier)
    raw = struct.pack("<BBBBIHHI", 5, 0, 0, 3, 0x10, length, len(verifier), 9) + body + trailer + verifier
    pdu = dcerpc.parse_pdu(raw)
    assert (pdu.auth_length, pdu.body) == (16, b"stub")


@settings(max_examples=100, deadline=None)
@given(sizes=st.lists(st.integers(0, 500), max_size=8), cuts=st.lists(st.integers(1, 300), max_size=40))
def test_pdu_stream_any_chunking(sizes: list[int], cuts: list[int]) -> None:
    pdus = [dcerpc.fragment(PType.RESPONSE, i + 1, 0, bytes(n), 0xFFFF)[0]
            for i, n in enumerate(sizes)]
    data = b"".join(pdus)
    chunks, at = [], 0
    for cut in cuts:
        chunks.append(data[at : at + cut])
        at += cut
    chunks.append(data[at:])
    parsed = iter_pdus(chunks)
    assert [p.call_id for p in parsed] == [i + 1 for i in range(len(sizes))]
    assert [len(dcerpc.decode_response(p).stub) for p in parsed] == sizes


def test_pdu_stream_holds_partial_and_rejects_impossible_length() -> None:
    stream = PduStream()
    pdu = dcerpc.fault_pdu(3, 5)
    assert stream.feed(pdu[:20]) == []
    assert stream.pending == 20
    assert [p.call_id for p in stream.feed(pdu[20:] + pdu)] == [3, 3]
    with pytest.raises(ProtocolError, match="frag_length"):
        PduStream().feed(b"\x05\0\x02\x03\x10\0\0\0\x08\0\0\0\0\0\0\0")
    with pytest.raises(ProtocolError, match="incomplete"):
        iter_pdus([pdu[:-1]])


@pytest.mark.parametrize("max_frag", [56, 64, 100, 1024, 4280, 5840, 0xFFFF, 0x20000])
@pytest.mark.parametrize("size", [0, 1, 7, 8, 31, 32, 33, 4255, 4256, 4257, 20000])
def test_fragment_and_reassemble(max_frag: int, size: int) -> None:
    stub = bytes(i % 251 for i in range(size))
    client, _ = bound_pair()
    client.request(0, b"")  # a call outstanding, as the client's state machine requires
    call_id = client._pending
    assert call_id is not None
    pdus = dcerpc.fragment(PType.RESPONSE, call_id, 0, stub, max_frag)
    parsed = [dcerpc.parse_pdu(p) for p in pdus]
    assert all(len(p) <= min(max_frag, 0xFFFF) for p in pdus)
    assert parsed[0].first and parsed[-1].last
    assert not any(p.first for p in parsed[1:]) and not any(p.last for p in parsed[:-1])
    stubs = [dcerpc.decode_response(p).stub for p in parsed]
    assert all(len(s) % 8 == 0 for s in stubs[:-1])
    # alloc_hint counts what is left, this fragment included.
    assert dcerpc.decode_response(parsed[0]).alloc_hint == size
    assert b"".join(stubs) == stub
    results = [client.receive(p) for p in parsed]
    assert results[-1] == stub and all(r is None for r in results[:-1])


def test_fragment_refuses_tiny_max_frag() -> None:
    with pytest.raises(ValueError, match="no room"):
        dcerpc.fragment(PType.REQUEST, 1, 0, b"x", 24)


# --------------------------------------------------------------------------- binding


def test_bind_and_bind_ack() -> None:
    client = RpcClientConnection()
    server = RpcServerConnection(max_frag=4280, assoc_group=0x55)
    server.receive_data(client.bind())
    raw = server.next_pdu()
    assert raw is not None
    pdu = dcerpc.parse_pdu(raw)
    assert (pdu.ptype, pdu.call_id) == (PType.BIND_ACK, 1)
    ack = dcerpc.decode_bind_ack(pdu.body)
    assert ack.secondary_address == "\\PIPE\\srvsvc"
    assert (ack.max_xmit_frag, ack.max_recv_frag, ack.assoc_group) == (4280, 4280, 0x55)
    assert ack.results == (dcerpc.ContextResult(0, 0, NDR20),)
    client.receive_bind_ack(raw)
    assert client.bound and client.max_xmit_frag == 4280
    assert server.contexts == {0: SRVSVC}


def test_bind_ack_round_trip_alignment() -> None:
    for address in ("", "a", "ab", "abc", "\\PIPE\\srvsvc", "\\PIPE\\lsass"):
        ack = dcerpc.BindAck(1, 2, 3, address, (dcerpc.ContextResult(2, 1, NDR20),))
        body = dcerpc.encode_bind_ack(ack)
        assert (16 + body.index(b"\x01\0\0\0\x02\0")) % 4 == 0  # result list aligned in the PDU
        assert dcerpc.decode_bind_ack(body) == ack


def test_bind_time_feature_negotiation_is_acknowledged() -> None:
    server = RpcServerConnection()
    contexts = (ContextElement(0, SRVSVC, (NDR20,)), ContextElement(1, SRVSVC, (BIND_TIME_FEATURES,)))
    server.receive_data(bind_pdu(contexts))
    raw = server.next_pdu()
    assert raw is not None
    results = dcerpc.decode_bind_ack(dcerpc.parse_pdu(raw).body).results
    assert results[0] == dcerpc.ContextResult(dcerpc.RESULT_ACCEPTANCE, 0, NDR20)
    assert results[1].result == dcerpc.RESULT_NEGOTIATE_ACK == 3
    assert results[1].reason == 0  # no optional feature supported
    assert server.contexts == {0: SRVSVC}


def test_ndr64_only_is_rejected_with_reason_2() -> None:
    server = RpcServerConnection()
    server.receive_data(bind_pdu((ContextElement(0, SRVSVC, (NDR64,)),)))
    raw = server.next_pdu()
    assert raw is not None
    (result,) = dcerpc.decode_bind_ack(dcerpc.parse_pdu(raw).body).results
    assert (result.result, result.reason) == (dcerpc.RESULT_PROVIDER_REJECTION, 2)
    assert server.contexts == {}


def test_ndr20_chosen_when_offered_with_ndr64() -> None:
    server = RpcServerConnection()
    server.receive_data(bind_pdu((ContextElement(0, SRVSVC, (NDR64, NDR20)),)))
    raw = server.next_pdu()
    assert raw is not None
    (result,) = dcerpc.decode_bind_ack(dcerpc.parse_pdu(raw).body).results
    assert result == dcerpc.ContextResult(0, 0, NDR20)


def test_unknown_interface_rejected_and_client_raises() -> None:
    server = RpcServerConnection()
    client = RpcClientConnection(abstract=OTHER_INTERFACE)
    server.receive_data(client.bind())
    raw = server.next_pdu()
    assert raw is not None
    (result,) = dcerpc.decode_bind_ack(dcerpc.parse_pdu(raw).body).results
    assert (result.result, result.reason) == (2, dcerpc.REASON_ABSTRACT_SYNTAX_NOT_SUPPORTED)
    with pytest.raises(ProtocolError, match="rejected"):
        client.receive_bind_ack(raw)
    assert not client.bound


def test_garbled_bind_gets_bind_nak_and_client_raises() -> None:
    server = RpcServerConnection()
    raw_bind = RpcClientConnection().bind()
    server.receive_data(dcerpc.encode_pdu(PType.BIND, 3, 1, b"\x01\x02"))
    nak = server.next_pdu()
    assert nak is not None
    pdu = dcerpc.parse_pdu(nak)
    assert pdu.ptype == PType.BIND_NAK and pdu.body == b"\0\0\x01\x05\x00"
    client = RpcClientConnection()
    client.bind()
    with pytest.raises(ProtocolError, match="bind_nak reason 0"):
        client.receive_bind_ack(nak)
    assert raw_bind  # the real bind is untouched by the failure


def test_bind_with_auth_verifier_is_refused_without_an_acceptor() -> None:
    body = dcerpc.encode_bind(Bind(4280, 4280, 0, (ContextElement(0, SRVSVC, (NDR20,)),)))
    trailer = struct.pack("<BBBBI", 10, 2, 0, 0, 0) + b"N" * 16
    length = 16 + len(body) + len(trailer)
    raw = struct.pack("<BBBBIHHI", 5, 0, 11, 3, 0x10, length, 16, 1) + body + trailer
    server = RpcServerConnection()
    server.receive_data(raw)
    reply = server.next_pdu()
    assert reply is not None and dcerpc.parse_pdu(reply).ptype == PType.BIND_NAK
    # No acceptor: the auth type is not recognized (reason 8), as MS-RPCE 2.2.2.5 names it.
    assert struct.unpack_from("<H", reply, 16)[0] == dcerpc.NAK_REASON_AUTHENTICATION_TYPE_NOT_RECOGNIZED
    assert server.contexts == {}


def test_alter_context_adds_a_context() -> None:
    _, server = bound_pair()
    server.receive_data(bind_pdu((ContextElement(1, SRVSVC, (NDR20,)),), call_id=2,
                                 ptype=PType.ALTER_CONTEXT))
    raw = server.next_pdu()
    assert raw is not None
    pdu = dcerpc.parse_pdu(raw)
    assert pdu.ptype == PType.ALTER_CONTEXT_RESP
    ack = dcerpc.decode_bind_ack(pdu.body)
    assert ack.secondary_address == "" and ack.results[0].result == 0
    assert set(server.contexts) == {0, 1}


def test_client_bind_errors() -> None:
    client = RpcClientConnection()
    with pytest.raises(ProtocolError, match="before a successful bind"):
        client.request(12, b"")
    client.bind()
    with pytest.raises(RpcFaultError) as fault:
        client.receive_bind_ack(dcerpc.fault_pdu(1, RpcFaultStatus.nca_s_proto_error))
    assert fault.value.code == RpcFaultStatus.nca_s_proto_error
    with pytest.raises(ProtocolError, match="expected bind_ack"):
        client.receive_bind_ack(dcerpc.fragment(PType.RESPONSE, 1, 0, b"", 4280)[0])
    server = RpcServerConnection()
    server.receive_data(bind_pdu((ContextElement(0, SRVSVC, (NDR20,)),), call_id=99))
    wrong_call = server.next_pdu()
    assert wrong_call is not None
    with pytest.raises(ProtocolError, match="call 99"):
        client.receive_bind_ack(wrong_call)


def test_client_sends_at_most_the_server_max_recv() -> None:
    client = RpcClientConnection(max_xmit_frag=5840)
    server = RpcServerConnection(max_frag=1024)
    server.receive_data(client.bind())
    raw = server.next_pdu()
    assert raw is not None
    client.receive_bind_ack(raw)
    assert client.max_xmit_frag == 1024
    assert all(len(p) <= 1024 for p in client.request(12, bytes(5000)))


# --------------------------------------------------------------------------- calls


@pytest.mark.parametrize("max_frag", [64, 200, 4280])
@pytest.mark.parametrize("size", [0, 4, 1000, 9000])
def test_call_round_trip(max_frag: int, size: int) -> None:
    client, server = bound_pair(max_frag)
    stub = bytes(i % 13 for i in range(size))
    calls = []
    for pdu in client.request(12, stub):
        calls.extend(server.receive_data(pdu))
    assert len(calls) == 1
    call = calls[0]
    assert (call.opnum, call.context_id, call.stub) == (12, 0, stub)
    server.respond(call, stub[::-1])
    answer = None
    for raw in drain(server):
        assert len(raw) <= max_frag
        answer = client.receive(dcerpc.parse_pdu(raw))
    assert answer == stub[::-1]


def test_whole_request_written_at_once() -> None:
    # A pipe write may carry several fragments back to back.
    client, server = bound_pair(100)
    calls = server.receive_data(b"".join(client.request(13, bytes(range(200)))))
    assert [c.stub for c in calls] == [bytes(range(200))]


def test_fault_reaches_client_as_rpc_fault_error() -> None:
    client, server = bound_pair()
    (call,) = server.receive_data(client.request(99, b"")[0])
    server.fault(call, RpcFaultStatus.nca_s_op_rng_error)
    raw = server.next_pdu()
    assert raw is not None
    fault = dcerpc.decode_fault(dcerpc.parse_pdu(raw))
    assert (fault.status, fault.context_id) == (RpcFaultStatus.nca_s_op_rng_error, 0)
    with pytest.raises(RpcFaultError) as error:
        client.receive(dcerpc.parse_pdu(raw))
    assert error.value.name == "nca_s_op_rng_error"


def test_request_on_unknown_context_faults() -> None:
    _, server = bound_pair()
    raw = dcerpc.fragment(PType.REQUEST, 5, 7, b"\0" * 8, 4280, opnum=12)[0]
    assert server.receive_data(raw) == []
    reply = server.next_pdu()
    assert reply is not None
    pdu = dcerpc.parse_pdu(reply)
    assert pdu.ptype == PType.FAULT and pdu.call_id == 5
    assert dcerpc.decode_fault(pdu) == dcerpc.Fault(7, RpcFaultStatus.nca_s_unk_if)


def test_request_before_bind_faults() -> None:
    server = RpcServerConnection()
    assert server.receive_data(dcerpc.fragment(PType.REQUEST, 1, 0, b"", 4280, 12)[0]) == []
    reply = server.next_pdu()
    assert reply is not None and dcerpc.parse_pdu(reply).ptype == PType.FAULT


def test_request_with_auth_verifier_on_an_unauthenticated_association_faults() -> None:
    # As Samba answers: a verifier where the bind negotiated none is access denied.
    _, server = bound_pair()
    body = struct.pack("<IHH", 0, 0, 12) + b"\0" * 8
    trailer = struct.pack("<BBBBI", 10, 2, 0, 0, 0) + b"V" * 16
    length = 16 + len(body) + len(trailer)
    raw = struct.pack("<BBBBIHHI", 5, 0, 0, 3, 0x10, length, 16, 2) + body + trailer
    assert server.receive_data(raw) == []
    reply = server.next_pdu()
    assert reply is not None
    assert dcerpc.decode_fault(dcerpc.parse_pdu(reply)).status == RpcFaultStatus.rpc_s_access_denied


def test_oversize_request_faults_and_yields_no_call() -> None:
    client, server = bound_pair(0xFFFF)
    calls = []
    pdus = client.request(12, bytes(dcerpc.MAX_REQUEST_STUB + 1))
    for pdu in pdus:
        calls.extend(server.receive_data(pdu))
    assert calls == []
    replies = [dcerpc.parse_pdu(p) for p in drain(server)]
    assert replies and all(p.ptype == PType.FAULT for p in replies)
    assert dcerpc.decode_fault(replies[0]).status == RpcFaultStatus.nca_s_proto_error
    # The association survives: the next call works.
    (call,) = server.receive_data(b"".join(client.request(12, b"ok")))
    assert call.stub == b"ok"


def test_oversize_request_gets_exactly_one_fault() -> None:
    client, server = bound_pair(0xFFFF)
    for pdu in client.request(12, bytes(dcerpc.MAX_REQUEST_STUB + 200_000)):
        server.receive_data(pdu)
    assert len(drain(server)) == 1


def test_middle_fragment_without_first_faults() -> None:
    client, server = bound_pair(100)
    pdus = client.request(12, bytes(300))
    assert server.receive_data(pdus[1]) == []
    reply = server.next_pdu()
    assert reply is not None and dcerpc.parse_pdu(reply).ptype == PType.FAULT


def test_garbage_stream_gets_one_fault_then_silence() -> None:
    _, server = bound_pair()
    assert server.receive_data(b"\xff" * 64) == []
    replies = drain(server)
    assert len(replies) == 1
    fault = dcerpc.decode_fault(dcerpc.parse_pdu(replies[0]))
    assert fault.status == RpcFaultStatus.nca_s_proto_error
    assert server.broken
    client, _ = bound_pair()
    assert server.receive_data(b"".join(client.request(12, b"x"))) == []
    assert server.receive_data(RpcClientConnection().bind()) == []
    assert drain(server) == []


def test_bad_version_in_stream_breaks_the_connection() -> None:
    _, server = bound_pair()
    raw = RpcClientConnection().bind()
    server.receive_data(b"\x06" + raw[1:])
    assert len(drain(server)) == 1 and server.broken


def test_client_receive_errors() -> None:
    client, _ = bound_pair()
    with pytest.raises(ProtocolError, match="no call outstanding"):
        client.receive(dcerpc.parse_pdu(dcerpc.fault_pdu(1, 5)))
    client.request(12, b"")
    call_id = client._pending
    assert call_id is not None
    with pytest.raises(ProtocolError, match="while waiting"):
        client.receive(dcerpc.parse_pdu(dcerpc.fault_pdu(call_id + 1, 5)))
    with pytest.raises(ProtocolError, match="expected a response"):
        client.receive(dcerpc.parse_pdu(bind_pdu((), call_id=call_id)))
    middle = dcerpc.fragment(PType.RESPONSE, call_id, 0, bytes(200), 100)
    with pytest.raises(ProtocolError, match="out of order"):
        client.receive(dcerpc.parse_pdu(middle[1]))
    with pytest.raises(ProtocolError, match="larger than"):
        client.receive(dcerpc.parse_pdu(middle[0]), max_stub=10)


def test_ignored_pdu_types_get_no_answer() -> None:
    _, server = bound_pair()
    for ptype in (PType.AUTH3, PType.CO_CANCEL, PType.ORPHANED, PType.SHUTDOWN, PType.RESPONSE):
        assert server.receive_data(dcerpc.encode_pdu(ptype, 3, 9, b"\0" * 8)) == []
    assert drain(server) == []


# --------------------------------------------------------------------------- impacket interop

rpcrt = pytest.importorskip("impacket.dcerpc.v5.rpcrt")


def test_our_bind_parses_in_impacket() -> None:
    raw = RpcClientConnection().bind()
    header = rpcrt.MSRPCHeader(raw)
    assert header["type"] == rpcrt.MSRPC_BIND and header["frag_len"] == len(raw)
    bind = rpcrt.MSRPCBind(header["pduData"])
    assert (bind["max_tfrag"], bind["max_rfrag"], bind["ctx_num"]) == (4280, 0xFFFF, 1)
    item = rpcrt.CtxItem(bind["ctx_items"])
    assert item["AbstractSyntax"] == SRVSVC.pack()
    assert item["TransferSyntax"] == NDR20.pack()
    assert item["TransItems"] == 1


def _impacket_bind(call_id: int = 1, transfer: SyntaxId = NDR20) -> bytes:
    bind = rpcrt.MSRPCBind()
    item = rpcrt.CtxItem()
    item["ContextID"] = 0
    item["TransItems"] = 1
    item["AbstractSyntax"] = SRVSVC.pack()
    item["TransferSyntax"] = transfer.pack()
    bind.addCtxItem(item)
    packet = rpcrt.MSRPCHeader()
    packet["type"] = rpcrt.MSRPC_BIND
    packet["pduData"] = bind.getData()
    packet["call_id"] = call_id
    return bytes(packet.get_packet())


def test_impacket_bind_gets_a_bind_ack_impacket_understands() -> None:
    server = RpcServerConnection()
    server.receive_data(_impacket_bind())
    raw = server.next_pdu()
    assert raw is not None
    ack = rpcrt.MSRPCBindAck(raw)
    assert ack["type"] == rpcrt.MSRPC_BINDACK
    assert ack["SecondaryAddr"] == "\\PIPE\\srvsvc"
    assert ack["ctx_num"] == 1
    item = ack.getCtxItems()[0]
    assert item["Result"] == 0 and item["TransferSyntax"] == NDR20.pack()
    assert ack["max_tfrag"] == 4280


def test_impacket_bind_ack_accepted_by_our_client() -> None:
    ack = rpcrt.MSRPCBindAck()
    ack["type"] = rpcrt.MSRPC_BINDACK
    ack["flags"] = 3
    ack["call_id"] = 1
    ack["max_tfrag"] = 2048
    ack["max_rfrag"] = 2048
    ack["assoc_group"] = 0x1234
    ack["SecondaryAddr"] = b"\\PIPE\\srvsvc"
    ack["SecondaryAddrLen"] = len(ack["SecondaryAddr"]) + 1
    ack["Pad"] = b"A" * ((4 - ((ack["SecondaryAddrLen"] + rpcrt.MSRPCBindAck._SIZE) % 4)) % 4)
    result = rpcrt.CtxItemResult()
    result["Result"] = 0
    result["TransferSyntax"] = NDR20.pack()
    ack["ctx_num"] = 1
    ack["ctx_items"] = result.getData()
    ack["frag_len"] = 0
    ack["frag_len"] = len(ack.getData())  # as impacket's own server does
    client = RpcClientConnection()
    client.bind()
    parsed = client.receive_bind_ack(bytes(ack.getData()))
    assert parsed.assoc_group == 0x1234 and parsed.secondary_address == "\\PIPE\\srvsvc"
    assert client.bound and client.max_xmit_frag == 2048


def test_our_request_fragments_parse_in_impacket() -> None:
    client, _ = bound_pair(200)
    stub = bytes(range(256)) * 2
    joined = b""
    for i, raw in enumerate(client.request(12, stub)):
        header = rpcrt.MSRPCRequestHeader(raw)
        assert header["type"] == rpcrt.MSRPC_REQUEST
        assert header["op_num"] == 12 and header["ctx_id"] == 0
        assert bool(header["flags"] & rpcrt.PFC_FIRST_FRAG) == (i == 0)
        joined += header["pduData"]
    assert joined == stub


def test_impacket_request_reaches_our_server_and_our_response_parses_in_impacket() -> None:
    _, server = bound_pair()
    request = rpcrt.MSRPCRequestHeader()
    request["op_num"] = 13
    request["ctx_id"] = 0
    request["call_id"] = 42
    request["pduData"] = b"\0" * 12
    request["alloc_hint"] = 12
    (call,) = server.receive_data(bytes(request.get_packet()))
    assert (call.call_id, call.opnum, call.stub) == (42, 13, b"\0" * 12)
    server.respond(call, b"\x05\0\0\0")
    raw = server.next_pdu()
    assert raw is not None
    response = rpcrt.MSRPCRespHeader(raw)
    assert response["type"] == rpcrt.MSRPC_RESPONSE and response["call_id"] == 42
    assert response["pduData"] == b"\x05\0\0\0"
    assert response["flags"] & 3 == 3


def test_impacket_response_reaches_our_client() -> None:
    client, _ = bound_pair()
    client.request(12, b"")
    response = rpcrt.MSRPCRespHeader()
    response["call_id"] = client._pending
    response["pduData"] = b"\x7c\0\0\0"
    response["alloc_hint"] = 4
    assert client.receive(dcerpc.parse_pdu(bytes(response.get_packet()))) == b"\x7c\0\0\0"


def test_impacket_ndr64_bind_rejected() -> None:
    server = RpcServerConnection()
    server.receive_data(_impacket_bind(transfer=NDR64))
    raw = server.next_pdu()
    assert raw is not None
    item = rpcrt.MSRPCBindAck(raw).getCtxItems()[0]
    assert (item["Result"], item["Reason"]) == (2, 2)


def test_a_second_bind_on_a_bound_association_is_refused() -> None:
    _, server = bound_pair()
    server.receive_data(RpcClientConnection().bind())
    (reply,) = drain(server)
    assert dcerpc.parse_pdu(reply).ptype == PType.BIND_NAK


def test_a_refused_multi_fragment_call_gets_exactly_one_fault() -> None:
    client, server = bound_pair(100)
    pdus = client.request(12, bytes(400))
    assert len(pdus) > 2
    # Rewrite the context id of every fragment to one never negotiated.
    forged = [p[:20] + b"\x07\x00" + p[22:] for p in pdus]
    for pdu in forged:
        assert server.receive_data(pdu) == []
    replies = drain(server)
    assert len(replies) == 1
    assert dcerpc.decode_fault(dcerpc.parse_pdu(replies[0])).status == RpcFaultStatus.nca_s_unk_if


def test_a_client_that_never_reads_is_cut_off() -> None:
    client, server = bound_pair(0xFFFF)
    big = bytes(60_000)
    for _ in range(dcerpc.MAX_QUEUED_BYTES // 60_000 + 10):
        for call in server.receive_data(b"".join(client.request(12, b"x"))):
            server.respond(call, big)
    assert server.broken
    assert server.receive_data(b"".join(client.request(12, b"x"))) == []


def test_fragment_size_below_the_minimum_is_raised_to_it() -> None:
    client = RpcClientConnection(max_recv_frag=64)
    server = RpcServerConnection(max_frag=dcerpc.MAX_FRAG)
    server.receive_data(client.bind())
    server.next_pdu()
    assert server.xmit_frag == dcerpc.MIN_FRAG


def test_alter_contexts_cannot_grow_the_context_table_without_bound() -> None:
    _, server = bound_pair()
    contexts = tuple(ContextElement(i, SRVSVC, (NDR20,)) for i in range(1, 200))
    server.receive_data(bind_pdu(contexts, call_id=2, ptype=PType.ALTER_CONTEXT))
    raw = server.next_pdu()
    assert raw is not None
    results = dcerpc.decode_bind_ack(dcerpc.parse_pdu(raw).body).results
    assert len(server.contexts) == dcerpc.MAX_CONTEXTS
    assert results[-1].reason == dcerpc.REASON_LOCAL_LIMIT_EXCEEDED
    assert sum(r.result == dcerpc.RESULT_ACCEPTANCE for r in results) == dcerpc.MAX_CONTEXTS - 1


@pytest.mark.parametrize("flags", [0x03, 0x07])
def test_bind_ack_echoes_header_signing_support(flags: int) -> None:
    body = dcerpc.encode_bind(Bind(4280, 4280, 0, (ContextElement(0, SRVSVC, (NDR20,)),)))
    raw = struct.pack("<BBBBIHHI", 5, 0, 11, flags, 0x10, 16 + len(body), 0, 1) + body
    server = RpcServerConnection()
    server.receive_data(raw)
    reply = server.next_pdu()
    assert reply is not None and reply[3] == flags
