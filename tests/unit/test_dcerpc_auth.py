"""DCE/RPC-level authentication, driven with bytes: our client (pyspnego NTLM) against the srvsvc endpoint
(our NTLM acceptor), at CONNECT, PKT_INTEGRITY and PKT_PRIVACY; raw NTLM and SPNEGO; refusals.

Two independent NTLM implementations meet here (pyspnego on the client side, ``smbsessions.ntlm``
on the server side), so a signature or seal that checks is a real interoperability result.
"""

from __future__ import annotations

import struct

import pytest
import spnego
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smbsessions import dcerpc, messages, srvsvc_ndr
from smbsessions.auth import Credentials
from smbsessions.dcerpc import (
    NDR20,
    SRVSVC,
    AuthLevel,
    AuthType,
    Bind,
    ContextElement,
    PduStream,
    PType,
    RpcAuthError,
    RpcClientConnection,
    SecTrailer,
    parse_pdu,
)
from smbsessions.levels import SessionInfo
from smbsessions.messages import DelRequest, EnumRequest
from smbsessions.ndr import decode_del_response, decode_enum_response, encode_del_request, encode_enum_request
from smbsessions.rpc_auth import NtlmRpcInitiator
from smbsessions.rules import SessionInfoPolicy
from smbsessions.server.srvsvc import SrvsvcEndpoint
from smbsessions.status import ProtocolError, RpcFaultError, RpcFaultStatus

from .test_srvsvc_endpoint import SESSIONS, FakeControl, caller

LEVELS = [AuthLevel.CONNECT, AuthLevel.PKT, AuthLevel.PKT_INTEGRITY, AuthLevel.PKT_PRIVACY]
ALICE = Credentials("alice", password="alicepw")
BOB = Credentials("bob", password="bobpw")


def read_message(endpoint: SrvsvcEndpoint) -> bytes:
    parts = []
    while True:
        chunk, more = endpoint.read(65536)
        parts.append(chunk)
        if not more:
            return b"".join(parts)


class AuthHarness:
    """Our client bound with RPC-level auth to a fresh endpoint (whose SMB caller is ``smb_admin``)."""

    def __init__(self, credentials: Credentials, level: int, smb_admin: bool = False,
                 max_recv_frag: int = 4280, max_xmit_frag: int = 4280) -> None:
        self.control = FakeControl(SESSIONS)
        self.endpoint = SrvsvcEndpoint(caller(admin=smb_admin, guest=not smb_admin), self.control,
                                       SessionInfoPolicy.ADMINS)
        self.rpc = RpcClientConnection(max_xmit_frag=max_xmit_frag, max_recv_frag=max_recv_frag,
                                       auth=NtlmRpcInitiator(credentials), auth_level=level)
        self.endpoint.write(self.rpc.bind())
        self.rpc.receive_bind_ack(read_message(self.endpoint))
        auth3 = self.rpc.auth3()
        assert auth3 is not None
        self.endpoint.write(auth3)
        assert self.endpoint.read(100) == (b"", False)  # auth3 has no answer

    def call(self, opnum: int, stub: bytes) -> bytes:
        for fragment in self.rpc.request(opnum, stub):
            self.endpoint.write(fragment)
        stream = PduStream()
        for _ in range(1000):
            message = read_message(self.endpoint)
            assert message, "no complete answer"
            for pdu in stream.feed(message):
                answer = self.rpc.receive(pdu)
                if answer is not None:
                    return answer
        raise AssertionError("no complete answer")


@pytest.mark.parametrize("level", LEVELS)
def test_session_enum_and_del_behave_the_same_at_every_level(level: int) -> None:
    harness = AuthHarness(ALICE, level)
    response = decode_enum_response(harness.call(12, encode_enum_request(EnumRequest(502))))
    # 200 entries at level 502 span many fragments, each signed (and sealed) on its own.
    assert response.status == 0 and response.entries == [info for _, info in SESSIONS]
    status = decode_del_response(harness.call(13, encode_del_request(DelRequest(None, "\\\\127.0.0.3", None))))
    assert status == 0 and harness.control.disconnected == [([2], 7)]
    assert decode_del_response(harness.call(13, encode_del_request(DelRequest(None, None, None)))) == 87


@pytest.mark.parametrize("level", [AuthLevel.PKT_INTEGRITY, AuthLevel.PKT_PRIVACY])
def test_responses_carry_verifiers_and_privacy_hides_the_stub(level: int) -> None:
    harness = AuthHarness(ALICE, level)
    (request,) = harness.rpc.request(21, srvsvc_ndr.encode_server_get_info_request(
        messages.ServerGetInfoRequest(101)))
    harness.endpoint.write(request)
    raw = read_message(harness.endpoint)
    pdu = parse_pdu(raw)
    assert pdu.ptype == PType.RESPONSE and pdu.auth_length == 16
    assert pdu.trailer == SecTrailer(AuthType.WINNT, level, pdu.trailer.pad_length if pdu.trailer else 0, 1)
    name = "Srv".encode("utf-16-le")
    assert (name in raw) == (level == AuthLevel.PKT_INTEGRITY)
    info = srvsvc_ndr.decode_server_get_info_response(harness.rpc.receive(pdu) or b"", 101).info
    assert info is not None and info.name == "Srv"


def test_the_rpc_identity_is_the_caller() -> None:
    # SMB session: a guest; RPC bind: alice (admin) -> admin levels open.
    harness = AuthHarness(ALICE, AuthLevel.PKT_INTEGRITY, smb_admin=False)
    assert decode_enum_response(harness.call(12, encode_enum_request(EnumRequest(502)))).status == 0
    # SMB session: an admin; RPC bind: bob (not admin) -> denied, as bob is the caller.
    harness = AuthHarness(BOB, AuthLevel.PKT_PRIVACY, smb_admin=True)
    assert decode_enum_response(harness.call(12, encode_enum_request(EnumRequest(502)))).status == 5


@pytest.mark.parametrize("level", [AuthLevel.PKT_INTEGRITY, AuthLevel.PKT_PRIVACY])
@pytest.mark.parametrize("where", [20, 30, -1, -20])
def test_a_tampered_request_is_refused_and_the_pipe_goes_quiet(level: int, where: int) -> None:
    harness = AuthHarness(ALICE, level)
    (request,) = harness.rpc.request(12, encode_enum_request(EnumRequest(0)))
    tampered = bytearray(request)
    tampered[where] ^= 0x01
    harness.endpoint.write(bytes(tampered))
    pdu = parse_pdu(read_message(harness.endpoint))
    assert pdu.ptype == PType.FAULT
    assert dcerpc.decode_fault(pdu).status == RpcFaultStatus.nca_s_fault_sec_pkg_error
    # Later calls, even well-formed ones, are refused (sequence numbers no longer agree).
    (again,) = harness.rpc.request(12, encode_enum_request(EnumRequest(0)))
    harness.endpoint.write(again)
    pdu = parse_pdu(read_message(harness.endpoint))
    assert pdu.ptype == PType.FAULT and dcerpc.decode_fault(pdu).status == RpcFaultStatus.rpc_s_access_denied


@pytest.mark.parametrize("level", [AuthLevel.PKT_INTEGRITY, AuthLevel.PKT_PRIVACY])
def test_a_request_without_verifier_is_refused_at_integrity_and_privacy(level: int) -> None:
    harness = AuthHarness(ALICE, level)
    plain = dcerpc.fragment(PType.REQUEST, 9, 0, encode_enum_request(EnumRequest(0)), 4280, 12)[0]
    harness.endpoint.write(plain)
    pdu = parse_pdu(read_message(harness.endpoint))
    assert dcerpc.decode_fault(pdu).status == RpcFaultStatus.nca_s_proto_error


def test_a_request_without_verifier_is_accepted_at_pkt_and_answered_signed() -> None:
    # What impacket does at RPC_C_AUTHN_LEVEL_PKT, and Samba 4.17 answers.
    harness = AuthHarness(ALICE, AuthLevel.PKT)
    plain = dcerpc.fragment(PType.REQUEST, 9, 0, encode_enum_request(EnumRequest(0)), 4280, 12)[0]
    harness.endpoint.write(plain)
    pdu = parse_pdu(read_message(harness.endpoint))
    assert pdu.ptype == PType.RESPONSE and pdu.auth_length == 16


def test_a_tampered_response_is_refused_by_our_client() -> None:
    harness = AuthHarness(ALICE, AuthLevel.PKT_INTEGRITY)
    (request,) = harness.rpc.request(21, srvsvc_ndr.encode_server_get_info_request(
        messages.ServerGetInfoRequest(100)))
    harness.endpoint.write(request)
    raw = bytearray(read_message(harness.endpoint))
    raw[30] ^= 0x40
    with pytest.raises(RpcAuthError):
        harness.rpc.receive(parse_pdu(bytes(raw)))


def test_wrong_password_fails_the_auth3_and_every_call_is_denied() -> None:
    harness = AuthHarness(Credentials("alice", password="wrong"), AuthLevel.PKT_INTEGRITY)
    with pytest.raises(RpcFaultError) as error:
        harness.call(12, encode_enum_request(EnumRequest(0)))
    assert error.value.code == RpcFaultStatus.rpc_s_access_denied


def _raw_bind(auth_type: int, level: int, token: bytes) -> bytes:
    body = dcerpc.encode_bind(Bind(4280, 4280, 0, (ContextElement(0, SRVSVC, (NDR20,)),)))
    trailer = struct.pack("<BBBBI", auth_type, level, 0, 0, 7) + token
    length = 16 + len(body) + len(trailer)
    return struct.pack("<BBBBIHHI", 5, 0, 11, 3, 0x10, length, len(token), 1) + body + trailer


@pytest.mark.parametrize(("auth_type", "level", "reason"), [
    (AuthType.GSS_KERBEROS, AuthLevel.PKT_INTEGRITY, 8),  # authentication_type_not_recognized
    (AuthType.NETLOGON, AuthLevel.PKT_PRIVACY, 8),
    (0x7F, AuthLevel.CONNECT, 8),
    (AuthType.WINNT, 7, 0),  # no such level
    (AuthType.WINNT, AuthLevel.PKT_INTEGRITY, 0),  # a token that is not NTLM
])
def test_refused_binds_get_the_right_bind_nak_reason(auth_type: int, level: int, reason: int) -> None:
    endpoint = SrvsvcEndpoint(caller(), FakeControl(SESSIONS), SessionInfoPolicy.ADMINS)
    endpoint.write(_raw_bind(auth_type, level, b"not a token at all"))
    raw = read_message(endpoint)
    assert parse_pdu(raw).ptype == PType.BIND_NAK
    assert struct.unpack_from("<H", raw, 16)[0] == reason


def test_spnego_wrapped_ntlm_with_alter_context_third_leg() -> None:
    """SPNEGO (auth type 9), as Windows and Samba clients use it: bind, then alter_context."""
    endpoint = SrvsvcEndpoint(caller(admin=False, guest=True), FakeControl(SESSIONS), SessionInfoPolicy.ADMINS)
    client = spnego.client("alice", "alicepw", hostname="srv", service="host", protocol="negotiate",
                           options=spnego.NegotiateOptions.use_ntlm)
    level = AuthLevel.PKT_PRIVACY
    endpoint.write(_raw_bind(AuthType.GSS_NEGOTIATE, level, client.step() or b""))
    ack = parse_pdu(read_message(endpoint))
    assert ack.ptype == PType.BIND_ACK and ack.trailer is not None
    assert ack.trailer.auth_type == AuthType.GSS_NEGOTIATE and ack.trailer.context_id == 7
    token = client.step(ack.auth_value) or b""
    body = dcerpc.encode_bind(Bind(4280, 4280, 0, (ContextElement(0, SRVSVC, (NDR20,)),)))
    trailer = SecTrailer(AuthType.GSS_NEGOTIATE, level, 0, 7)
    endpoint.write(dcerpc.encode_pdu_with_auth(PType.ALTER_CONTEXT, 3, 2, body, trailer, token))
    resp = parse_pdu(read_message(endpoint))
    assert resp.ptype == PType.ALTER_CONTEXT_RESP
    if resp.auth_value:
        client.step(resp.auth_value)
    assert client.complete

    class Security:
        def sign(self, message: bytes) -> bytes:
            return client.sign(message)

        def verify(self, message: bytes, signature: bytes) -> None:
            client.verify(message, signature)

        def seal(self, message: bytes, *, sign_prefix: bytes = b"", sign_suffix: bytes = b"") -> tuple[bytes, bytes]:
            from spnego.iov import BufferType
            out = client.wrap_iov([(BufferType.sign_only, sign_prefix), message,
                                   (BufferType.sign_only, sign_suffix), BufferType.header]).buffers
            return out[1].data or b"", out[3].data or b""

        def unseal(self, ciphertext: bytes, signature: bytes, *, sign_prefix: bytes = b"",
                   sign_suffix: bytes = b"") -> bytes:
            from spnego.iov import BufferType
            out = client.unwrap_iov([(BufferType.sign_only, sign_prefix), ciphertext,
                                     (BufferType.sign_only, sign_suffix), (BufferType.header, signature)]).buffers
            return out[1].data or b""

    security = Security()
    (request,) = dcerpc.auth_fragments(PType.REQUEST, 3, 0, encode_enum_request(EnumRequest(502)), 4280, 12,
                                       trailer, security)
    endpoint.write(request)
    stream = PduStream()
    parts = []
    for _ in range(100):
        for pdu in stream.feed(read_message(endpoint)):
            assert pdu.ptype == PType.RESPONSE, dcerpc.decode_fault(pdu)
            parts.append(dcerpc.decode_response(dcerpc.check_verifier(pdu, trailer, security)).stub)
            if pdu.last:
                break
        else:
            continue
        break
    response = decode_enum_response(b"".join(parts))
    assert response.status == 0 and response.entries == [info for _, info in SESSIONS]  # alice is admin


@pytest.mark.parametrize("level", [AuthLevel.CONNECT, AuthLevel.PKT_INTEGRITY])
def test_anonymous_ntlm_is_an_anonymous_caller_at_connect_and_refused_when_signing(level: int) -> None:
    # The SMB session is an admin's; the RPC bind says "anonymous": anonymous is the caller.
    endpoint = SrvsvcEndpoint(caller(), FakeControl(SESSIONS), SessionInfoPolicy.ADMINS)
    # pyspnego cannot log on anonymously; an anonymous AUTHENTICATE is assembled by hand.
    from smbsessions import ntlm
    negotiate = ntlm.build_negotiate(0xE2088297)
    endpoint.write(_raw_bind(AuthType.WINNT, level, negotiate))
    assert parse_pdu(read_message(endpoint)).ptype == PType.BIND_ACK
    anonymous = ntlm.build_authenticate(0xE2088297, lm_response=b"\0", nt_response=b"", domain=b"", user=b"",
                                        workstation=b"", encrypted_random_session_key=b"")
    trailer = SecTrailer(AuthType.WINNT, level, 0, 7)
    endpoint.write(dcerpc.encode_pdu_with_auth(PType.AUTH3, 3, 2, b"\0" * 4, trailer, anonymous))
    plain = dcerpc.fragment(PType.REQUEST, 3, 0, encode_enum_request(EnumRequest(0)), 4280, 12)[0]
    endpoint.write(plain)
    pdu = parse_pdu(read_message(endpoint))
    if level == AuthLevel.CONNECT:
        assert pdu.ptype == PType.RESPONSE
        assert decode_enum_response(dcerpc.decode_response(pdu).stub).status == 5
    else:
        assert dcerpc.decode_fault(pdu).status == RpcFaultStatus.rpc_s_access_denied


def test_client_needs_an_ntlm_account() -> None:
    with pytest.raises(ValueError):
        NtlmRpcInitiator(Credentials(anonymous=True))
    with pytest.raises(ProtocolError):
        AuthHarness(ALICE, AuthLevel.PKT_INTEGRITY).rpc.receive_bind_ack(
            dcerpc.encode_pdu(PType.BIND_ACK, 3, 1, dcerpc.encode_bind_ack(dcerpc.BindAck(4280, 4280, 1, "", ()))))


_ = SessionInfo  # re-exported fixtures use it


def _verification_trailer(commands: list[tuple[int, bytes]]) -> bytes:
    return dcerpc.VERIFICATION_TRAILER_MAGIC + b"".join(
        struct.pack("<HH", command, len(body)) + body for command, body in commands)


SAMBA_LIKE_TRAILER = _verification_trailer([
    (0x0001, struct.pack("<I", 1)),  # SEC_VT_COMMAND_BITMASK_1: client supports header signing
    (0x0002, SRVSVC.pack() + NDR20.pack()),  # SEC_VT_COMMAND_PCONTEXT
    (0x4003, struct.pack("<B3xIIHH", 0, 0x10, 2, 0, 12)),  # SEC_VT_COMMAND_HEADER2 | END
])


def test_verification_trailer_is_stripped_before_the_stub_is_decoded() -> None:
    stub = encode_enum_request(EnumRequest(1))
    padded = stub + b"\0" * (-len(stub) % 4)
    assert dcerpc.strip_verification_trailer(padded + SAMBA_LIKE_TRAILER) == padded
    # Not a trailer: misaligned, unterminated, or followed by more bytes.
    for data in (b"x" + SAMBA_LIKE_TRAILER, padded + SAMBA_LIKE_TRAILER[:-4],
                 padded + SAMBA_LIKE_TRAILER + b"\0\0\0\0", padded + dcerpc.VERIFICATION_TRAILER_MAGIC):
        assert dcerpc.strip_verification_trailer(data) == data
    # Through the endpoint at PKT_PRIVACY, as Samba's clients send it.
    harness = AuthHarness(ALICE, AuthLevel.PKT_PRIVACY)
    response = decode_enum_response(harness.call(12, padded + SAMBA_LIKE_TRAILER))
    assert response.status == 0 and response.entries == [info.project(1) for _, info in SESSIONS]


# --------------------------------------------------------------------------- hostile input


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(level=st.sampled_from(LEVELS), data=st.data())
def test_mutated_signed_requests_only_ever_get_pdus_back(level: int, data: st.DataObject) -> None:
    harness = AuthHarness(ALICE, level)
    pdus = harness.rpc.request(12, encode_enum_request(EnumRequest(1)))
    raw = bytearray(b"".join(pdus))
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    harness.endpoint.write(bytes(raw[: data.draw(st.integers(0, len(raw)))]))
    for _ in range(50):
        message = read_message(harness.endpoint)
        if not message:
            break
        assert parse_pdu(message).ptype in (PType.RESPONSE, PType.FAULT)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(auth_type=st.integers(0, 255), level=st.integers(0, 255), token=st.binary(max_size=120),
       legs=st.lists(st.tuples(st.sampled_from([PType.AUTH3, PType.ALTER_CONTEXT, PType.BIND]),
                               st.binary(max_size=80)), max_size=3))
def test_random_auth_legs_never_raise(auth_type: int, level: int, token: bytes,
                                      legs: list[tuple[int, bytes]]) -> None:
    endpoint = SrvsvcEndpoint(caller(), FakeControl(SESSIONS), SessionInfoPolicy.ADMINS)
    endpoint.write(_raw_bind(auth_type, level, token))
    body = dcerpc.encode_bind(Bind(4280, 4280, 0, (ContextElement(0, SRVSVC, (NDR20,)),)))
    for ptype, leg in legs:
        leg_body = b"\0" * 4 if ptype == PType.AUTH3 else body
        endpoint.write(dcerpc.encode_pdu_with_auth(ptype, 3, 2, leg_body, SecTrailer(auth_type, level, 0, 7), leg))
    endpoint.write(dcerpc.fragment(PType.REQUEST, 9, 0, encode_enum_request(EnumRequest(0)), 4280, 12)[0])
    for _ in range(20):
        message = read_message(endpoint)
        if not message:
            break
        parse_pdu(message)


def test_raw_ntlm_third_leg_in_an_alter_context_gets_a_plain_alter_context_resp() -> None:
    endpoint = SrvsvcEndpoint(caller(admin=False, guest=True), FakeControl(SESSIONS), SessionInfoPolicy.ADMINS)
    initiator = NtlmRpcInitiator(ALICE)
    endpoint.write(_raw_bind(AuthType.WINNT, AuthLevel.PKT_INTEGRITY, initiator.step(None) or b""))
    ack = parse_pdu(read_message(endpoint))
    assert ack.ptype == PType.BIND_ACK
    authenticate = initiator.step(ack.auth_value) or b""
    body = dcerpc.encode_bind(Bind(4280, 4280, 0, (ContextElement(0, SRVSVC, (NDR20,)),)))
    trailer = SecTrailer(AuthType.WINNT, AuthLevel.PKT_INTEGRITY, 0, 7)
    endpoint.write(dcerpc.encode_pdu_with_auth(PType.ALTER_CONTEXT, 3, 2, body, trailer, authenticate))
    resp = parse_pdu(read_message(endpoint))
    assert resp.ptype == PType.ALTER_CONTEXT_RESP and resp.auth_length == 0
    security = initiator.packet_security()
    stub = srvsvc_ndr.encode_server_get_info_request(messages.ServerGetInfoRequest(101))
    (request,) = dcerpc.auth_fragments(PType.REQUEST, 3, 0, stub, 4280, 21, trailer, security)
    endpoint.write(request)
    pdu = dcerpc.check_verifier(parse_pdu(read_message(endpoint)), trailer, security)
    answer = srvsvc_ndr.decode_server_get_info_response(dcerpc.decode_response(pdu).stub, 101)
    assert answer.status == 0 and answer.info is not None and answer.info.name == "Srv"


@pytest.mark.parametrize("who", [["--anonymous"], ["-k"]])
def test_cli_rpc_auth_needs_an_ntlm_account(who: list[str]) -> None:
    import io

    from smbsessions import cli

    err = io.StringIO()
    code = cli.main(["enum", "192.0.2.1", *who, "--rpc-auth", "privacy"], io.StringIO(), err)
    assert code == cli.EXIT_USAGE and "NTLM account" in err.getvalue()


@pytest.mark.parametrize("level", [AuthLevel.PKT_INTEGRITY, AuthLevel.PKT_PRIVACY])
def test_multi_fragment_signed_requests_are_verified_and_reassembled(level: int) -> None:
    harness = AuthHarness(ALICE, level, max_xmit_frag=1432, max_recv_frag=1432)
    stub = encode_enum_request(EnumRequest(502, user_name="u" * 3000))  # ~6 KB: 5 request fragments
    assert len(stub) > 4 * 1432  # (request() signs as it builds: calling it only to count would skew the sequence)
    assert decode_enum_response(harness.call(12, stub)).status == 87  # over 1,024 characters
    response = decode_enum_response(harness.call(12, encode_enum_request(EnumRequest(502))))
    assert response.status == 0 and len(response.entries or []) == len(SESSIONS)
