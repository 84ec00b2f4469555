"""SPNEGO (RFC 4178, MS-SPNG) acceptor: pyspnego's and impacket's clients as peers."""

from __future__ import annotations

import contextlib

import pytest
import spnego
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from impacket import ntlm as impacket_ntlm
from impacket.spnego import SPNEGO_NegTokenInit, SPNEGO_NegTokenResp, TypesMech
from spnego._spnego import NegTokenInit as PyspnegoNegTokenInit
from spnego._spnego import unpack_token

from smbsessions.ntlm import NtlmAcceptor, NtlmError, nt_hash
from smbsessions.spnego import (
    HINT_NAME,
    OID_KERBEROS,
    OID_MS_KERBEROS,
    OID_NTLMSSP,
    NegState,
    NegTokenInit,
    NegTokenResp,
    SpnegoAcceptor,
    SpnegoError,
    encode_mech_type_list,
    encode_neg_token_init,
    encode_neg_token_resp,
    neg_token_init_hint,
    parse_token,
)
from smbsessions.status import NtStatus

NTLMSSP_DOTTED = "1.3.6.1.4.1.311.2.2.10"


def _acceptor(**kwargs: object) -> SpnegoAcceptor:
    hashes = {"alice": nt_hash("Secret1!")}
    return SpnegoAcceptor(
        NtlmAcceptor(
            lambda user: hashes.get(user.lower()),
            server_name="SRV1",
            domain_name="WORKGROUP",
            **kwargs,  # type: ignore[arg-type]
        )
    )


def _cstep(client: spnego.ContextProxy, token: bytes | None = None) -> bytes:
    out = client.step(token)
    assert out is not None
    return out


def _resp(token: bytes) -> NegTokenResp:
    parsed = parse_token(token)
    assert isinstance(parsed, NegTokenResp)
    return parsed


# --- the NEGOTIATE hint -----------------------------------------------------------------


def test_neg_token_init_hint_bytes() -> None:
    expected = (
        bytes.fromhex(
            "6048"  # [APPLICATION 0]
            "06062b0601050502"  # thisMech: SPNEGO
            "a03e303c"  # [0] NegTokenInit2 SEQUENCE
            "a00e300c060a2b06010401823702020a"  # mechTypes: NTLMSSP
            "a32a3028a0261b24"  # negHints: hintName GeneralString
        )
        + HINT_NAME
    )
    assert neg_token_init_hint() == expected


def test_neg_token_init_hint_read_by_others() -> None:
    hint = neg_token_init_hint()
    theirs = unpack_token(hint)
    assert isinstance(theirs, PyspnegoNegTokenInit)
    assert theirs.mech_types == [NTLMSSP_DOTTED]
    assert theirs.hint_name == HINT_NAME
    assert SPNEGO_NegTokenInit(hint)["MechTypes"] == [
        TypesMech["NTLMSSP - Microsoft NTLM Security Support Provider"]
    ]
    ours = parse_token(hint)
    assert isinstance(ours, NegTokenInit) and ours.mech_types == (OID_NTLMSSP,)
    assert ours.mech_list_mic is None


# --- pyspnego's Negotiate client ----------------------------------------------------------


def _pyspnego_exchange(client: spnego.ContextProxy, acceptor: SpnegoAcceptor, first: bytes) -> None:
    reply, done = acceptor.step(first)
    assert not done
    first_reply = _resp(reply)
    assert first_reply.neg_state == NegState.ACCEPT_INCOMPLETE
    assert first_reply.supported_mech == OID_NTLMSSP
    reply, done = acceptor.step(_cstep(client, reply))
    assert done and acceptor.complete
    final = _resp(reply)
    assert final.neg_state == NegState.ACCEPT_COMPLETED
    assert final.mech_list_mic is not None  # pyspnego sent one, so we answer with ours
    assert client.step(reply) is None
    assert client.complete


@pytest.mark.parametrize("with_hint", [True, False])
def test_pyspnego_negotiate_client(with_hint: bool) -> None:
    client = spnego.client("alice", "Secret1!", hostname="srv1", protocol="negotiate")
    acceptor = _acceptor()
    first = _cstep(client, neg_token_init_hint()) if with_hint else _cstep(client)
    _pyspnego_exchange(client, acceptor, first)
    assert acceptor.identity.user == "alice"
    assert acceptor.identity.session_key == client.session_key


def test_pyspnego_nt_hash_credential() -> None:
    credential = spnego.NTLMHash(username="alice", nt_hash=nt_hash("Secret1!").hex())
    client = spnego.client(credential, hostname="srv1", protocol="negotiate")
    acceptor = _acceptor()
    _pyspnego_exchange(client, acceptor, _cstep(client))
    assert acceptor.identity.session_key == client.session_key


def test_session_security_continues_after_the_mech_list_mic() -> None:
    client = spnego.client("alice", "Secret1!", hostname="srv1", protocol="negotiate")
    acceptor = _acceptor()
    _pyspnego_exchange(client, acceptor, _cstep(client))
    server = acceptor.session_security()
    assert acceptor.session_security() is server
    for n in range(3):
        wrapped = client.wrap(b"request %d" % n, encrypt=True).data
        assert server.unseal(wrapped[16:], wrapped[:16]) == b"request %d" % n
        ciphertext, signature = server.seal(b"reply %d" % n)
        assert client.unwrap(signature + ciphertext).data == b"reply %d" % n
        server.verify(b"signed %d" % n, client.sign(b"signed %d" % n))
        client.verify(b"back %d" % n, server.sign(b"back %d" % n))


def test_wrong_password_through_spnego() -> None:
    client = spnego.client("alice", "wrong", hostname="srv1", protocol="negotiate")
    acceptor = _acceptor()
    reply, _ = acceptor.step(_cstep(client))
    with pytest.raises(NtlmError) as excinfo:
        acceptor.step(_cstep(client, reply))
    assert excinfo.value.ntstatus == NtStatus.STATUS_LOGON_FAILURE


def test_bad_mech_list_mic_is_refused() -> None:
    client = spnego.client("alice", "Secret1!", hostname="srv1", protocol="negotiate")
    acceptor = _acceptor()
    reply, _ = acceptor.step(_cstep(client))
    final = _resp(_cstep(client, reply))
    assert final.response_token is not None and final.mech_list_mic is not None
    tampered_mic = final.mech_list_mic[:4] + bytes(8) + final.mech_list_mic[12:]
    token = encode_neg_token_resp(
        NegState.ACCEPT_INCOMPLETE, response_token=final.response_token, mech_list_mic=tampered_mic
    )
    with pytest.raises(SpnegoError) as excinfo:
        acceptor.step(token)
    assert excinfo.value.ntstatus == NtStatus.STATUS_LOGON_FAILURE
    assert "mechListMIC" in excinfo.value.detail


# --- raw NTLMSSP (no SPNEGO wrapping) -----------------------------------------------------


def test_raw_ntlmssp_is_answered_raw() -> None:
    client = spnego.client("alice", "Secret1!", hostname="srv1", protocol="ntlm")
    acceptor = _acceptor()
    challenge, done = acceptor.step(_cstep(client))
    assert not done and challenge.startswith(b"NTLMSSP\x00")
    reply, done = acceptor.step(_cstep(client, challenge))
    assert (reply, done) == (b"", True)
    assert acceptor.identity.session_key == client.session_key


# --- impacket's SPNEGO (as its SMB client builds it: no mechListMIC) ----------------------


def test_impacket_spnego_client() -> None:
    acceptor = _acceptor()
    negotiate = impacket_ntlm.getNTLMSSPType1("", "", signingRequired=True)
    init = SPNEGO_NegTokenInit()
    init["MechTypes"] = [TypesMech["NTLMSSP - Microsoft NTLM Security Support Provider"]]
    init["MechToken"] = negotiate.getData()
    reply, done = acceptor.step(init.getData())
    assert not done
    challenge = SPNEGO_NegTokenResp(reply)["ResponseToken"]
    authenticate, key = impacket_ntlm.getNTLMSSPType3(negotiate, challenge, "alice", "Secret1!", "WORKGROUP")
    resp = SPNEGO_NegTokenResp()
    resp["ResponseToken"] = authenticate.getData()
    reply, done = acceptor.step(resp.getData())
    assert done
    assert SPNEGO_NegTokenResp(reply)["NegState"] == b"\x00"  # accept-completed
    assert _resp(reply).mech_list_mic is None  # none received, none required
    assert acceptor.identity.session_key == key


def test_impacket_anonymous_through_spnego() -> None:
    acceptor = _acceptor()
    negotiate = impacket_ntlm.getNTLMSSPType1("", "")
    init = SPNEGO_NegTokenInit()
    init["MechTypes"] = [TypesMech["NTLMSSP - Microsoft NTLM Security Support Provider"]]
    init["MechToken"] = negotiate.getData()
    reply, _ = acceptor.step(init.getData())
    authenticate, _ = impacket_ntlm.getNTLMSSPType3(
        negotiate, SPNEGO_NegTokenResp(reply)["ResponseToken"], "", "", ""
    )
    resp = SPNEGO_NegTokenResp()
    resp["ResponseToken"] = authenticate.getData()
    reply, done = acceptor.step(resp.getData())
    assert done and acceptor.identity.anonymous
    assert _resp(reply).mech_list_mic is None


# --- NTLM not the client's first choice -------------------------------------------------


def _kerberos_first_exchange(send_mic: bool) -> tuple[SpnegoAcceptor, spnego.ContextProxy, bytes]:
    mech_types = (OID_MS_KERBEROS, OID_KERBEROS, OID_NTLMSSP)
    acceptor = _acceptor()
    reply, done = acceptor.step(encode_neg_token_init(mech_types, mech_token=b"\x60\x03\x06\x01\x00"))
    first = _resp(reply)
    assert not done
    assert first.neg_state == NegState.REQUEST_MIC and first.supported_mech == OID_NTLMSSP
    assert first.response_token is None
    ntlm_client = spnego.client("alice", "Secret1!", hostname="srv1", protocol="ntlm")
    reply, _ = acceptor.step(encode_neg_token_resp(None, response_token=_cstep(ntlm_client)))
    challenge = _resp(reply).response_token
    assert challenge is not None
    authenticate = _cstep(ntlm_client, challenge)
    mic = ntlm_client.sign(encode_mech_type_list(mech_types)) if send_mic else None
    reply, done = acceptor.step(
        encode_neg_token_resp(NegState.ACCEPT_INCOMPLETE, response_token=authenticate, mech_list_mic=mic)
    )
    assert done
    return acceptor, ntlm_client, reply


def test_ntlm_as_second_choice_with_mic() -> None:
    _, ntlm_client, reply = _kerberos_first_exchange(send_mic=True)
    final = _resp(reply)
    assert final.neg_state == NegState.ACCEPT_COMPLETED and final.mech_list_mic is not None
    ntlm_client.verify(
        encode_mech_type_list((OID_MS_KERBEROS, OID_KERBEROS, OID_NTLMSSP)), final.mech_list_mic
    )


def test_ntlm_as_second_choice_requires_the_mic() -> None:
    with pytest.raises(SpnegoError) as excinfo:
        _kerberos_first_exchange(send_mic=False)
    assert excinfo.value.ntstatus == NtStatus.STATUS_LOGON_FAILURE


def test_mech_list_without_ntlm_is_refused() -> None:
    with pytest.raises(SpnegoError) as excinfo:
        _acceptor().step(encode_neg_token_init((OID_KERBEROS,), mech_token=b"\x60\x00"))
    assert excinfo.value.ntstatus == NtStatus.STATUS_LOGON_FAILURE
    rejection = _resp(excinfo.value.reject_token)
    assert rejection.neg_state == NegState.REJECT


# --- bounded DER -------------------------------------------------------------------------


def test_empty_first_token_gets_the_hint_once() -> None:
    acceptor = _acceptor()
    client = spnego.client("alice", "Secret1!", hostname="srv1", protocol="negotiate")
    hint, done = acceptor.step(b"")
    assert (hint, done) == (neg_token_init_hint(), False)
    _pyspnego_exchange(client, acceptor, _cstep(client, hint))
    with pytest.raises(SpnegoError):
        again = _acceptor()
        again.step(b"")
        again.step(b"")


@pytest.mark.parametrize(
    "token",
    [
        b"\x60",
        b"\x60\x80" + bytes(10),  # indefinite length
        b"\x60\x85\x00\x00\x00\x00\x01" + bytes(4),  # 5-byte length
        b"\x60\x84\xff\xff\xff\xff",  # claims 4 GiB
        b"\x7f\x01\x00",  # multi-byte tag
        b"\x60\x08\x06\x06\x2b\x06\x01\x05\x05\x02",  # no NegTokenInit
        b"\xa1\x02\x30\x05",  # inner length beyond outer
        encode_neg_token_init(tuple(OID_NTLMSSP for _ in range(40))),  # too many mechTypes
        b"\x04\x00",
    ],
)
def test_malformed_tokens(token: bytes) -> None:
    with pytest.raises(SpnegoError) as excinfo:
        _acceptor().step(token)
    assert excinfo.value.ntstatus in (NtStatus.STATUS_INVALID_PARAMETER, NtStatus.STATUS_LOGON_FAILURE)


def test_round_trip_of_our_encoders() -> None:
    token = encode_neg_token_init((OID_NTLMSSP, OID_KERBEROS), mech_token=b"abc", mech_list_mic=b"m" * 16)
    parsed = parse_token(token)
    assert isinstance(parsed, NegTokenInit)
    assert parsed.mech_types == (OID_NTLMSSP, OID_KERBEROS)
    assert (parsed.mech_token, parsed.mech_list_mic) == (b"abc", b"m" * 16)
    long_token = bytes(300)
    resp = _resp(encode_neg_token_resp(1, supported_mech=OID_NTLMSSP, response_token=long_token))
    assert resp == NegTokenResp(1, OID_NTLMSSP, long_token, None)


def test_exchange_over_after_completion() -> None:
    client = spnego.client("alice", "Secret1!", hostname="srv1", protocol="negotiate")
    acceptor = _acceptor()
    _pyspnego_exchange(client, acceptor, _cstep(client))
    with pytest.raises(SpnegoError):
        acceptor.step(encode_neg_token_resp(0))


@given(st.binary(max_size=300))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_random_tokens(data: bytes) -> None:
    for prefix in (b"", b"\x60", b"\xa1", b"\xa0", b"\x60\x48\x06\x06\x2b\x06\x01\x05\x05\x02"):
        with contextlib.suppress(NtlmError):
            _acceptor().step(prefix + data)
        with contextlib.suppress(NtlmError):
            parse_token(prefix + data)


_PYSPNEGO_FIRST = _cstep(spnego.client("alice", "Secret1!", hostname="srv1", protocol="negotiate"))


@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=4))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_mutated_negotiate(mutations: list[tuple[int, int]]) -> None:
    token = bytearray(_PYSPNEGO_FIRST)
    for position, value in mutations:
        if position < len(token):
            token[position] = value
    with contextlib.suppress(NtlmError):
        reply, done = _acceptor().step(bytes(token))
        assert not done
        parse_token(reply)
