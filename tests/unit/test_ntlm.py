"""NTLM (MS-NLMP): MD4/NT hash, the NTLMv2 acceptor and session security.

Vectors: RFC 1320 (MD4) and MS-NLMP 4.2.2 / 4.2.4 (NTLMv2). Peers: pyspnego's NTLM
client and impacket's ntlm module, both independent implementations.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable

import pytest
import spnego
import spnego.iov
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from impacket import ntlm as impacket_ntlm

from smbsessions.ntlm import (
    AvId,
    NegotiateFlags,
    NtlmAcceptor,
    NtlmError,
    NtlmSessionSecurity,
    build_authenticate,
    build_negotiate,
    decode_av_pairs,
    encode_av_pairs,
    md4,
    nt_hash,
    ntowfv2,
    parse_authenticate,
    parse_challenge,
    parse_negotiate,
    rc4k,
    seal_key,
    sign_key,
)
from smbsessions.status import NtStatus

# MS-NLMP 4.2.1 common values.
USER, DOMAIN, PASSWORD = "User", "Domain", "Password"
SERVER_CHALLENGE = bytes.fromhex("0123456789abcdef")
CLIENT_CHALLENGE = bytes.fromhex("aaaaaaaaaaaaaaaa")
RANDOM_SESSION_KEY = bytes([0x55]) * 16
# 4.2.4: flags of the NTLMv2 example (KEY_EXCH, 56, 128, VERSION, TARGET_INFO, ESS,
# TARGET_TYPE_SERVER, ALWAYS_SIGN, NTLM, SEAL, SIGN, OEM, UNICODE).
V2_FLAGS = 0xE28A8233
# 4.2.4.1.3 / 4.2.4.2.2: the AV pairs (NbDomainName "Domain", NbComputerName "Server").
V2_AV_PAIRS = bytes.fromhex("02000c0044006f006d00610069006e0001000c0053006500720076006500720000000000")
# 4.2.4.2.2: temp = 0x01 0x01 Z(6) Time(0) ClientChallenge Z(4) ServerName Z(4)
V2_TEMP = (
    bytes.fromhex("0101000000000000" + "0000000000000000" + "aaaaaaaaaaaaaaaa" + "00000000")
    + V2_AV_PAIRS
    + bytes(4)
)
V2_NTPROOFSTR = bytes.fromhex("68cd0ab851e51c96aabc927bebef6a1c")
V2_SESSION_BASE_KEY = bytes.fromhex("8de40ccadbc14a82f15cb0ad0de95ca3")
V2_ENCRYPTED_SESSION_KEY = bytes.fromhex("c5dad2544fc9799094ce1ce90bc9d03e")
# 4.2.4.4 GSS_WrapEx of "Plaintext" (UTF-16LE), sequence number 0, client side.
WRAP_PLAINTEXT = "Plaintext".encode("utf-16-le")
WRAP_SEALED = bytes.fromhex("54e50165bf1936dc996020c1811b0f06fb5f")
WRAP_SIGNATURE = bytes.fromhex("010000007fb38ec5c55d497600000000")


def _store(**accounts: str) -> Callable[[str], bytes | None]:
    hashes = {user.lower(): nt_hash(password) for user, password in accounts.items()}
    return lambda user: hashes.get(user.lower())


def _acceptor(lookup: Callable[[str], bytes | None] | None = None, **kwargs: object) -> NtlmAcceptor:
    return NtlmAcceptor(
        lookup or _store(alice="Secret1!"),
        server_name="SRV1",
        domain_name="WORKGROUP",
        **kwargs,  # type: ignore[arg-type]
    )


def _cstep(client: spnego.ContextProxy, token: bytes | None = None) -> bytes:
    out = client.step(token)
    assert out is not None
    return out


def _wrapped(data: bytes | None) -> bytes:
    assert data is not None
    return data


def _status(excinfo: pytest.ExceptionInfo[NtlmError]) -> int:
    return excinfo.value.ntstatus


# --- MD4, NT hash, NTOWFv2 ------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "digest"),
    [  # RFC 1320 appendix A.5
        (b"", "31d6cfe0d16ae931b73c59d7e0c089c0"),
        (b"a", "bde52cb31de33e46245e05fbdbd6fb24"),
        (b"abc", "a448017aaf21d8525fc10ae87aa6729d"),
        (b"message digest", "d9130a8164549fe818874806e1c7014b"),
        (b"abcdefghijklmnopqrstuvwxyz", "d79e1c308aa5bbcdeea8ed63df412da9"),
        (
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            "043f8582f241db351ce627e153e7f0e4",
        ),
        (b"1234567890" * 8, "e33b4ddc9c38f2199c3e7b164fcc0536"),
    ],
)
def test_md4_rfc1320(message: bytes, digest: str) -> None:
    assert md4(message).hex() == digest


def test_nt_hash_ms_nlmp_4_2_2_1_2() -> None:
    assert nt_hash(PASSWORD).hex() == "a4f49c406510bdcab6824ee7c30fd852"


@given(st.text(max_size=40))
@settings(max_examples=50)
def test_nt_hash_agrees_with_impacket(password: str) -> None:
    assert nt_hash(password) == impacket_ntlm.compute_nthash(password)


def test_ntowfv2_ms_nlmp_4_2_4_1_1() -> None:
    assert ntowfv2(nt_hash(PASSWORD), USER, DOMAIN).hex() == "0c868a403bfd7a93a3001ef22ef02e3f"


def test_rc4k_encrypted_session_key_4_2_4_2_3() -> None:
    assert rc4k(V2_SESSION_BASE_KEY, RANDOM_SESSION_KEY) == V2_ENCRYPTED_SESSION_KEY
    assert rc4k(V2_SESSION_BASE_KEY, V2_ENCRYPTED_SESSION_KEY) == RANDOM_SESSION_KEY


def test_pure_rc4_matches_cryptography() -> None:
    from smbsessions.ntlm.crypto import _PureRc4

    key = bytes(range(1, 17))
    data = bytes(range(256)) * 3
    pure = _PureRc4(key)
    assert pure.update(data[:100]) + pure.update(data[100:]) == rc4k(key, data)


# --- session security keys (MS-NLMP 4.2.4.1.4/5 and 3.4.5) ------------------------


def test_sign_keys() -> None:
    assert sign_key(RANDOM_SESSION_KEY, client_to_server=True).hex() == "4788dc861b4782f35d43fd98fe1a2d39"
    assert sign_key(RANDOM_SESSION_KEY, client_to_server=False).hex() == "d04d6f10741041d1d246d64188d7a8ad"


@pytest.mark.parametrize(
    ("flags", "client", "server"),
    [
        (NegotiateFlags.KEY_128, "59f600973cc4960a25480a7c196e4c58", "9355f3a957c1583d25c4c2f11e40390e"),
        (NegotiateFlags.KEY_56, "a5f7253c1065e8d3d68642040e71cfe0", "583e2f98959b385cd158f3734b5f5d3f"),
        (0, "42f964a471091a02ff4a77455366e4e5", "c5d3853b406b7c1241c595f0ce0750e2"),
    ],
)
def test_seal_keys(flags: int, client: str, server: str) -> None:
    assert seal_key(RANDOM_SESSION_KEY, flags, client_to_server=True).hex() == client
    assert seal_key(RANDOM_SESSION_KEY, flags, client_to_server=False).hex() == server


def test_gss_wrapex_example_4_2_4_4_client_side() -> None:
    client = NtlmSessionSecurity(RANDOM_SESSION_KEY, V2_FLAGS, initiator=True)
    assert client.seal(WRAP_PLAINTEXT) == (WRAP_SEALED, WRAP_SIGNATURE)


# --- the acceptor against MS-NLMP 4.2.4 -------------------------------------------


def _spec_exchange(
    lookup: Callable[[str], bytes | None] | None = None,
    *,
    domain: str = DOMAIN,
    nt_response: bytes = V2_NTPROOFSTR + V2_TEMP,
) -> NtlmAcceptor:
    acceptor = NtlmAcceptor(
        lookup or _store(User=PASSWORD),
        server_name="Server",
        domain_name="Domain",
        challenge=SERVER_CHALLENGE,
    )
    challenge = acceptor.step(build_negotiate(V2_FLAGS))
    assert challenge is not None
    authenticate = build_authenticate(
        V2_FLAGS,
        lm_response=bytes(24),
        nt_response=nt_response,
        domain=domain.encode("utf-16-le"),
        user=USER.encode("utf-16-le"),
        workstation="COMPUTER".encode("utf-16-le"),
        encrypted_random_session_key=V2_ENCRYPTED_SESSION_KEY,
    )
    assert acceptor.step(authenticate) is None
    return acceptor


def test_acceptor_verifies_the_spec_ntlmv2_response() -> None:
    acceptor = _spec_exchange()
    assert acceptor.complete
    identity = acceptor.identity
    assert (identity.user, identity.domain, identity.workstation) == ("User", "Domain", "COMPUTER")
    assert not identity.anonymous and not identity.guest
    # KEY_EXCH: the exported session key is the client's RandomSessionKey.
    assert identity.session_key == RANDOM_SESSION_KEY


def test_server_unseals_the_spec_wrap_example() -> None:
    security = _spec_exchange().session_security()
    assert security.unseal(WRAP_SEALED, WRAP_SIGNATURE) == WRAP_PLAINTEXT


def test_spec_response_with_wrong_password_fails() -> None:
    with pytest.raises(NtlmError) as excinfo:
        _spec_exchange(_store(User="password"))
    assert _status(excinfo) == NtStatus.STATUS_LOGON_FAILURE


def test_tampered_proof_fails() -> None:
    bad = bytes([V2_NTPROOFSTR[0] ^ 1]) + V2_NTPROOFSTR[1:] + V2_TEMP
    with pytest.raises(NtlmError) as excinfo:
        _spec_exchange(nt_response=bad)
    assert _status(excinfo) == NtStatus.STATUS_LOGON_FAILURE


def test_empty_domain_fallback() -> None:
    # The client claims domain "OTHER" but computed NTOWFv2 with an empty domain.
    key = ntowfv2(nt_hash(PASSWORD), USER, "")
    import hmac

    proof = hmac.digest(key, SERVER_CHALLENGE + V2_TEMP, "md5")
    acceptor = NtlmAcceptor(
        _store(User=PASSWORD), server_name="S", domain_name="D", challenge=SERVER_CHALLENGE
    )
    acceptor.step(build_negotiate(V2_FLAGS & ~NegotiateFlags.KEY_EXCH))
    acceptor.step(
        build_authenticate(
            V2_FLAGS & ~NegotiateFlags.KEY_EXCH,
            lm_response=b"",
            nt_response=proof + V2_TEMP,
            domain="OTHER".encode("utf-16-le"),
            user="user".encode("utf-16-le"),  # any case: NTOWFv2 upper-cases the name
            workstation=b"",
            encrypted_random_session_key=b"",
        )
    )
    assert acceptor.identity.domain == "OTHER"
    assert acceptor.identity.session_key == hmac.digest(key, proof, "md5")


def test_unknown_user_and_wrong_password_look_the_same() -> None:
    errors = []
    for user, password in (("alice", "wrong"), ("mallory", "Secret1!")):
        client = spnego.client(user, password, hostname="srv1", protocol="ntlm")
        acceptor = _acceptor()
        with pytest.raises(NtlmError) as excinfo:
            acceptor.step(_cstep(client, acceptor.step(_cstep(client))))
        errors.append((excinfo.value.ntstatus, excinfo.value.detail))
    assert errors[0] == errors[1]
    assert errors[0][0] == NtStatus.STATUS_LOGON_FAILURE


# --- CHALLENGE contents -------------------------------------------------------------


def test_challenge_message_contents() -> None:
    acceptor = _acceptor(challenge=SERVER_CHALLENGE, timestamp=0x01D9000000000000)
    challenge_bytes = acceptor.step(build_negotiate(V2_FLAGS))
    assert challenge_bytes is not None
    challenge = parse_challenge(challenge_bytes)
    assert challenge.server_challenge == SERVER_CHALLENGE
    assert challenge.target_name == "WORKGROUP".encode("utf-16-le")
    flags = challenge.flags
    assert flags & NegotiateFlags.UNICODE and not flags & NegotiateFlags.OEM
    for wanted in ("TARGET_INFO", "NTLM", "EXTENDED_SESSIONSECURITY", "KEY_EXCH", "SIGN", "SEAL", "KEY_128"):
        assert flags & NegotiateFlags[wanted]
    assert challenge.version is not None
    pairs = dict(decode_av_pairs(challenge.target_info))
    assert pairs[AvId.MsvAvNbDomainName] == "WORKGROUP".encode("utf-16-le")
    assert pairs[AvId.MsvAvNbComputerName] == "SRV1".encode("utf-16-le")
    assert pairs[AvId.MsvAvDnsDomainName] == "workgroup".encode("utf-16-le")
    assert pairs[AvId.MsvAvDnsComputerName] == "srv1".encode("utf-16-le")
    assert pairs[AvId.MsvAvTimestamp] == struct.pack("<Q", 0x01D9000000000000)
    assert [av_id for av_id, _ in decode_av_pairs(challenge.target_info)] == [2, 1, 4, 3, 7]


def test_challenge_does_not_grant_unrequested_flags() -> None:
    acceptor = _acceptor()
    challenge_bytes = acceptor.step(build_negotiate(NegotiateFlags.UNICODE | NegotiateFlags.NTLM))
    assert challenge_bytes is not None
    flags = parse_challenge(challenge_bytes).flags
    for never in ("SIGN", "SEAL", "KEY_EXCH", "EXTENDED_SESSIONSECURITY", "VERSION", "LM_KEY", "DATAGRAM"):
        assert not flags & NegotiateFlags[never]


def test_negotiate_parser_reads_oem_fields() -> None:
    token = (
        b"NTLMSSP\x00"
        + struct.pack("<II", 1, NegotiateFlags.OEM_DOMAIN_SUPPLIED | NegotiateFlags.OEM_WORKSTATION_SUPPLIED)
        + struct.pack("<HHI", 4, 4, 32)
        + struct.pack("<HHI", 2, 2, 36)
        + b"CORPWS"
    )
    negotiate = parse_negotiate(token)
    assert (negotiate.domain, negotiate.workstation) == ("CORP", "WS")


# --- end to end with pyspnego's client -------------------------------------------------


def _pyspnego_logon(
    client: spnego.ContextProxy, acceptor: NtlmAcceptor
) -> tuple[spnego.ContextProxy, NtlmAcceptor]:
    challenge = acceptor.step(_cstep(client))
    assert challenge is not None
    assert acceptor.step(_cstep(client, challenge)) is None
    assert client.complete and acceptor.complete
    return client, acceptor


@pytest.mark.parametrize(
    "credential",
    [
        ("alice", "Secret1!"),
        ("CORP\\ALICE", "Secret1!"),
    ],
)
def test_pyspnego_password_logon(credential: tuple[str, str]) -> None:
    user, password = credential
    client = spnego.client(user, password, hostname="srv1", protocol="ntlm")
    client, acceptor = _pyspnego_logon(client, _acceptor())
    assert acceptor.identity.session_key == client.session_key
    assert acceptor.identity.user.lower() == "alice"


def test_upn_names_reach_the_lookup_as_sent() -> None:
    seen: list[str] = []

    def lookup(user: str) -> bytes | None:
        seen.append(user)
        return nt_hash("Secret1!") if user.partition("@")[0].lower() == "alice" else None

    client = spnego.client("alice@corp.example", "Secret1!", hostname="srv1", protocol="ntlm")
    _, acceptor = _pyspnego_logon(client, _acceptor(lookup))
    assert seen == ["alice@corp.example"]
    assert (acceptor.identity.user, acceptor.identity.domain) == ("alice@corp.example", "")


def test_pyspnego_nt_hash_logon() -> None:
    credential = spnego.NTLMHash(username="alice", nt_hash=nt_hash("Secret1!").hex())
    client = spnego.client(credential, hostname="srv1", protocol="ntlm")
    client, acceptor = _pyspnego_logon(client, _acceptor())
    assert acceptor.identity.session_key == client.session_key
    assert acceptor.identity.user == "alice"


def test_pyspnego_sends_a_mic_and_tampering_is_caught() -> None:
    client = spnego.client("alice", "Secret1!", hostname="srv1", protocol="ntlm")
    acceptor = _acceptor()
    challenge = acceptor.step(_cstep(client))
    assert challenge is not None
    authenticate = _cstep(client, challenge)
    message = parse_authenticate(authenticate)
    assert message.mic is not None and any(message.mic)
    tampered = authenticate[:72] + bytes([authenticate[72] ^ 0xFF]) + authenticate[73:]
    with pytest.raises(NtlmError) as excinfo:
        acceptor.step(tampered)
    assert _status(excinfo) == NtStatus.STATUS_LOGON_FAILURE
    # A failed exchange stays failed.
    with pytest.raises(NtlmError):
        acceptor.step(authenticate)


def test_flag_downgrade_in_negotiate_is_caught_by_the_mic() -> None:
    client = spnego.client("alice", "Secret1!", hostname="srv1", protocol="ntlm")
    negotiate = _cstep(client)
    (flags,) = struct.unpack_from("<I", negotiate, 12)
    downgraded = negotiate[:12] + struct.pack("<I", flags & ~NegotiateFlags.SEAL) + negotiate[16:]
    acceptor = _acceptor()
    challenge = acceptor.step(downgraded)
    assert challenge is not None
    # The client signs the NEGOTIATE it sent; the server saw another one.
    with pytest.raises(NtlmError) as excinfo:
        acceptor.step(_cstep(client, challenge))
    assert _status(excinfo) == NtStatus.STATUS_LOGON_FAILURE


def test_session_security_with_pyspnego_both_directions() -> None:
    client, acceptor = _pyspnego_logon(
        spnego.client("alice", "Secret1!", hostname="srv1", protocol="ntlm"), _acceptor()
    )
    server = acceptor.session_security()
    for n in range(3):  # sequence numbers and RC4 state advance in step
        request = b"request %d" % n
        server.verify(request, client.sign(request))
        reply = b"reply %d" % n
        client.verify(reply, server.sign(reply))
        wrapped = client.wrap(request * 5, encrypt=True).data
        assert server.unseal(wrapped[16:], wrapped[:16]) == request * 5
        ciphertext, signature = server.seal(reply * 7)
        assert client.unwrap(signature + ciphertext).data == reply * 7


def test_dcerpc_style_iov_with_pyspnego() -> None:
    # DCE/RPC signs header and sec_trailer in clear and encrypts only the stub.
    client, acceptor = _pyspnego_logon(
        spnego.client("alice", "Secret1!", hostname="srv1", protocol="ntlm"), _acceptor()
    )
    server = acceptor.session_security()
    header, stub, trailer = b"H" * 24, b"stub data " * 9, b"T" * 8
    result = client.wrap_iov(
        [
            spnego.iov.BufferType.header,
            (spnego.iov.BufferType.sign_only, header),
            stub,
            (spnego.iov.BufferType.sign_only, trailer),
        ],
        encrypt=True,
    )
    signature, ciphertext = _wrapped(result.buffers[0].data), _wrapped(result.buffers[2].data)
    assert ciphertext != stub
    assert server.unseal(ciphertext, signature, sign_prefix=header, sign_suffix=trailer) == stub

    ciphertext, signature = server.seal(stub, sign_prefix=header, sign_suffix=trailer)
    unwrapped = client.unwrap_iov(
        [
            (spnego.iov.BufferType.header, signature),
            (spnego.iov.BufferType.sign_only, header),
            ciphertext,
            (spnego.iov.BufferType.sign_only, trailer),
        ]
    )
    assert unwrapped.buffers[2].data == stub


def test_bad_signature_raises_invalid_signature() -> None:
    client, acceptor = _pyspnego_logon(
        spnego.client("alice", "Secret1!", hostname="srv1", protocol="ntlm"), _acceptor()
    )
    server = acceptor.session_security()
    signature = client.sign(b"message")
    with pytest.raises(NtlmError) as excinfo:
        server.verify(b"messagf", signature)
    assert _status(excinfo) == NtStatus.STATUS_INVALID_SIGNATURE
    wrapped = client.wrap(b"secret", encrypt=True).data
    with pytest.raises(NtlmError):
        server.unseal(wrapped[16:], bytes(16))


# --- impacket's client ------------------------------------------------------------------


def _impacket_logon(acceptor: NtlmAcceptor, user: str, password: str, nthash: bytes | str = "") -> bytes:
    negotiate = impacket_ntlm.getNTLMSSPType1("", "", signingRequired=True)
    challenge = acceptor.step(negotiate.getData())
    assert challenge is not None
    authenticate, exported_session_key = impacket_ntlm.getNTLMSSPType3(
        negotiate, challenge, user, password, "CORP", nthash=nthash
    )
    assert acceptor.step(authenticate.getData()) is None
    key: bytes = exported_session_key
    return key


def test_impacket_password_logon() -> None:
    acceptor = _acceptor()
    key = _impacket_logon(acceptor, "alice", "Secret1!")
    assert acceptor.identity.session_key == key
    assert (acceptor.identity.user, acceptor.identity.domain) == ("alice", "CORP")


def test_impacket_nt_hash_logon() -> None:
    acceptor = _acceptor()
    key = _impacket_logon(acceptor, "Alice", "", nthash=nt_hash("Secret1!"))
    assert acceptor.identity.session_key == key


def test_impacket_ntlmv1_is_refused() -> None:
    acceptor = _acceptor()
    negotiate = impacket_ntlm.getNTLMSSPType1("", "", signingRequired=True, use_ntlmv2=False)
    challenge = acceptor.step(negotiate.getData())
    authenticate, _ = impacket_ntlm.getNTLMSSPType3(
        negotiate, challenge, "alice", "Secret1!", "", use_ntlmv2=False
    )
    with pytest.raises(NtlmError) as excinfo:
        acceptor.step(authenticate.getData())
    assert _status(excinfo) == NtStatus.STATUS_LOGON_FAILURE


def test_impacket_anonymous_logon() -> None:
    acceptor = _acceptor()
    negotiate = impacket_ntlm.getNTLMSSPType1("", "")
    challenge = acceptor.step(negotiate.getData())
    authenticate, _ = impacket_ntlm.getNTLMSSPType3(negotiate, challenge, "", "", "")
    acceptor.step(authenticate.getData())
    assert acceptor.identity.anonymous
    assert acceptor.identity.session_key == b""
    with pytest.raises(NtlmError) as excinfo:
        acceptor.session_security()
    assert _status(excinfo) == NtStatus.STATUS_NOT_SUPPORTED


def _anonymous_authenticate() -> bytes:
    return build_authenticate(
        NegotiateFlags.UNICODE | NegotiateFlags.NTLM | NegotiateFlags.ANONYMOUS,
        lm_response=b"\x00",
        nt_response=b"",
        domain=b"",
        user=b"",
        workstation="WS".encode("utf-16-le"),
        encrypted_random_session_key=b"",
    )


def test_anonymous_refused_when_not_allowed() -> None:
    acceptor = _acceptor(allow_anonymous=False)
    acceptor.step(build_negotiate(NegotiateFlags.UNICODE | NegotiateFlags.NTLM))
    with pytest.raises(NtlmError) as excinfo:
        acceptor.step(_anonymous_authenticate())
    assert _status(excinfo) == NtStatus.STATUS_LOGON_FAILURE


def test_anonymous_allowed() -> None:
    acceptor = _acceptor()
    acceptor.step(build_negotiate(NegotiateFlags.UNICODE | NegotiateFlags.NTLM))
    acceptor.step(_anonymous_authenticate())
    assert acceptor.identity.anonymous and acceptor.identity.workstation == "WS"


def test_guest_for_unknown_users_only_when_asked() -> None:
    acceptor = _acceptor(guest_unknown_users=True)
    client = spnego.client("mallory", "whatever", hostname="srv1", protocol="ntlm")
    _pyspnego_logon(client, acceptor)
    identity = acceptor.identity
    assert identity.guest and not identity.anonymous and identity.session_key == b""
    # A known user with a wrong password is still refused.
    acceptor = _acceptor(guest_unknown_users=True)
    client = spnego.client("alice", "wrong", hostname="srv1", protocol="ntlm")
    with pytest.raises(NtlmError):
        _pyspnego_logon(client, acceptor)


def test_empty_user_with_a_response_is_not_anonymous() -> None:
    acceptor = _acceptor()
    acceptor.step(build_negotiate(NegotiateFlags.UNICODE | NegotiateFlags.NTLM))
    with pytest.raises(NtlmError) as excinfo:
        acceptor.step(
            build_authenticate(
                NegotiateFlags.UNICODE,
                lm_response=b"",
                nt_response=bytes(60),
                domain=b"",
                user=b"",
                workstation=b"",
                encrypted_random_session_key=b"",
            )
        )
    assert _status(excinfo) == NtStatus.STATUS_LOGON_FAILURE


# --- malformed input ---------------------------------------------------------------------


def test_identity_before_completion() -> None:
    with pytest.raises(NtlmError):
        _ = _acceptor().identity


@pytest.mark.parametrize(
    "token",
    [
        b"",
        b"NTLMSSP\x00",
        b"NTLMSSX\x00\x01\x00\x00\x00\x00\x00\x00\x00",
        b"NTLMSSP\x00\x03\x00\x00\x00" + bytes(8),  # AUTHENTICATE where NEGOTIATE is due
        b"NTLMSSP\x00\x01\x00\x00\x00\x00\x10\x00\x00" + struct.pack("<HHI", 50, 50, 32) + bytes(8),
        b"NTLMSSP\x00\x01\x00\x00\x00" + bytes(70000),
    ],
)
def test_malformed_negotiate(token: bytes) -> None:
    with pytest.raises(NtlmError) as excinfo:
        _acceptor().step(token)
    assert _status(excinfo) == NtStatus.STATUS_INVALID_PARAMETER


def test_authenticate_offset_out_of_range() -> None:
    acceptor = _acceptor()
    acceptor.step(build_negotiate(NegotiateFlags.UNICODE | NegotiateFlags.NTLM))
    token = bytearray(
        build_authenticate(
            NegotiateFlags.UNICODE,
            lm_response=b"",
            nt_response=bytes(60),
            domain=b"",
            user=b"a\x00",
            workstation=b"",
            encrypted_random_session_key=b"",
        )
    )
    struct.pack_into("<HHI", token, 20, 60, 60, 0xFFFFFFF0)
    with pytest.raises(NtlmError) as excinfo:
        acceptor.step(bytes(token))
    assert _status(excinfo) == NtStatus.STATUS_INVALID_PARAMETER


def test_av_pairs_round_trip_and_bounds() -> None:
    pairs = [(AvId.MsvAvNbComputerName, b"A\x00"), (AvId.MsvAvFlags, b"\x02\x00\x00\x00")]
    encoded = encode_av_pairs(pairs)
    assert decode_av_pairs(encoded + bytes(4)) == pairs
    with pytest.raises(NtlmError):
        decode_av_pairs(encoded[:-4])
    with pytest.raises(NtlmError):
        decode_av_pairs(struct.pack("<HH", 1, 100) + b"xx")


def test_spec_av_pairs_decode() -> None:
    assert decode_av_pairs(V2_AV_PAIRS) == [
        (AvId.MsvAvNbDomainName, "Domain".encode("utf-16-le")),
        (AvId.MsvAvNbComputerName, "Server".encode("utf-16-le")),
    ]
    assert encode_av_pairs(decode_av_pairs(V2_AV_PAIRS)) == V2_AV_PAIRS


# --- hypothesis: parsers raise NtlmError and nothing else ---------------------------------

_PARSERS = (parse_negotiate, parse_challenge, parse_authenticate, decode_av_pairs)


@given(st.binary(max_size=300))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_parsers_random_bytes(data: bytes) -> None:
    for prefix in (
        b"",
        b"NTLMSSP\x00\x01\x00\x00\x00",
        b"NTLMSSP\x00\x02\x00\x00\x00",
        b"NTLMSSP\x00\x03\x00\x00\x00",
    ):
        for parse in _PARSERS:
            with contextlib.suppress(NtlmError):
                parse(prefix + data)


def _valid_authenticate() -> tuple[NtlmAcceptor, bytes]:
    client = spnego.client("alice", "Secret1!", hostname="srv1", protocol="ntlm")
    acceptor = _acceptor()
    challenge = acceptor.step(_cstep(client))
    assert challenge is not None
    return acceptor, _cstep(client, challenge)


_ORIGINAL_AUTHENTICATE = _valid_authenticate()


@given(
    st.lists(st.tuples(st.integers(min_value=0, max_value=400), st.integers(0, 255)), max_size=6),
    st.integers(min_value=0, max_value=500),
)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_acceptor_mutated_authenticate(mutations: list[tuple[int, int]], cut: int) -> None:
    acceptor_template, authenticate = _ORIGINAL_AUTHENTICATE
    token = bytearray(authenticate)
    for position, value in mutations:
        if position < len(token):
            token[position] = value
    token = token[: max(12, len(token) - cut)] if cut < 300 else token
    acceptor = NtlmAcceptor(
        _store(alice="Secret1!"),
        server_name="SRV1",
        domain_name="WORKGROUP",
        challenge=acceptor_template.server_challenge,
    )
    acceptor.step(acceptor_template.negotiate_message)
    acceptor.challenge_message = acceptor_template.challenge_message
    try:
        acceptor.step(bytes(token))
    except NtlmError as exc:
        assert exc.ntstatus in (NtStatus.STATUS_INVALID_PARAMETER, NtStatus.STATUS_LOGON_FAILURE)
    else:
        # Only mutations outside the signed parts may pass (e.g. the Version field).
        assert acceptor.identity.user


def test_oem_client() -> None:
    # A client without UNICODE: strings travel in the OEM code page, NTOWFv2 still hashes UTF-16.
    import hmac

    oem_flags = NegotiateFlags.OEM | NegotiateFlags.NTLM | NegotiateFlags.EXTENDED_SESSIONSECURITY
    acceptor = NtlmAcceptor(
        _store(User=PASSWORD), server_name="S", domain_name="Dom", challenge=SERVER_CHALLENGE
    )
    challenge = acceptor.step(build_negotiate(oem_flags))
    assert challenge is not None
    parsed = parse_challenge(challenge)
    assert parsed.flags & NegotiateFlags.OEM and not parsed.flags & NegotiateFlags.UNICODE
    assert parsed.target_name == b"DOM"
    key = ntowfv2(nt_hash(PASSWORD), USER, DOMAIN)
    proof = hmac.digest(key, SERVER_CHALLENGE + V2_TEMP, "md5")
    acceptor.step(
        build_authenticate(
            oem_flags,
            lm_response=b"",
            nt_response=proof + V2_TEMP,
            domain=b"Domain",
            user=b"User",
            workstation=b"WS",
            encrypted_random_session_key=b"",
        )
    )
    assert (acceptor.identity.user, acceptor.identity.domain, acceptor.identity.workstation) == (
        "User",
        "Domain",
        "WS",
    )
    assert acceptor.identity.session_key == hmac.digest(key, proof, "md5")


_names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\\@/:"),
    min_size=1,
    max_size=20,
)


@given(_names, st.text(max_size=30), st.sampled_from(["", "CORP", "ünïcödé", "ß-dom"]))
@example("straße", "pässwörd", "CORP")  # str.upper() gives "STRASSE", Windows "STRAßE": both accepted
@example("ŉ-user", "x", "")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_pyspnego_logon_with_any_names(user: str, password: str, domain: str) -> None:
    # Any user name, password and domain pyspnego can send verifies (upper-casing included).
    principal = f"{domain}\\{user}" if domain else user
    client = spnego.client(principal, password, hostname="srv1", protocol="ntlm")
    hashes = {user: nt_hash(password)}
    acceptor = NtlmAcceptor(hashes.get, server_name="SRV1", domain_name="WORKGROUP")
    _pyspnego_logon(client, acceptor)
    assert (acceptor.identity.user, acceptor.identity.domain) == (user, domain)
    assert acceptor.identity.session_key == client.session_key
