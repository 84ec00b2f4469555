"""SMB2/3 crypto: Microsoft's published vectors and smbprotocol's client code as an oracle.

Vectors: the Open Specifications blog posts "SMB 3.1.1 Pre-authentication integrity
in Windows 10", "Encryption in SMB 3.0: A protocol perspective" and "SMB 3.1.1
Encryption in Windows 10"; RFC 4493 (AES-CMAC); two HMAC-SHA256-signed SMB2
responses captured from Windows (also used by SMBLibrary's tests).

smbprotocol private names used as the oracle (its client-side implementation):
``Connection._generate_signature``, ``Connection._encrypt``, ``Connection._decrypt``,
``Session.connect`` (key derivation part), ``SMB2TransformHeader``.
"""

from __future__ import annotations

import contextlib
import struct
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFHMAC, CounterLocation, Mode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smbprotocol import session as smbprotocol_session
from smbprotocol.connection import Connection, SMB2TransformHeader
from smbprotocol.header import Commands

from smbsessions.server.smb2_crypto import (
    DIALECT_2_0_2,
    DIALECT_2_1,
    DIALECT_3_0,
    DIALECT_3_0_2,
    DIALECT_3_1_1,
    SMB2_FLAGS_SIGNED,
    TRANSFORM_HEADER_SIZE,
    Cipher,
    PreauthIntegrity,
    SigningAlgorithm,
    Smb2CryptoError,
    decrypt,
    derive_session_keys,
    encrypt,
    is_transform,
    kdf_sp800_108,
    parse_transform_header,
    sign,
    sign_message,
    verify,
    write_signature,
)
from smbsessions.status import NtStatus

h = bytes.fromhex

# --- "SMB 3.1.1 Pre-authentication integrity in Windows 10" -------------------------------

PREAUTH_STEPS = [
    (  # NEGOTIATE request
        "FE534D4240000100000000000000800000000000000000000100000000000000FFFE000000000000"
        "00000000000000000000000000000000000000000000000024000500000000003F000000ECD86F32"
        "6276024F9F7752B89BB33F3A70000000020000000202100200030203110300000100260000000000"
        "010020000100FA49E6578F1F3A9F4CD3E9CC14A67AA884B3D05844E0E5A118225C15887F32FF0000"
        "0200060000000000020002000100",
        "DD94EFC5321BB618A2E208BA8920D2F422992526947A409B5037DE1E0FE8C7362B8C47122594CDE0"
        "CE26AA9DFC8BCDBDE0621957672623351A7540F1E54A0426",
    ),
    (  # NEGOTIATE response
        "FE534D4240000100000000000000010001000000000000000100000000000000FFFE000000000000"
        "000000000000000000000000000000000000000000000000410001001103020039CBCAF329714942"
        "BDCE5D60F09AB3FB2F000000000080000000800000008000D8DAE5ADCBAED00109094AB095AED001"
        "80004001C00100006082013C06062B0601050502A08201303082012CA01A3018060A2B0601040182"
        "3702021E060A2B06010401823702020AA282010C048201084E45474F455854530100000000000000"
        "60000000700000007C7CC0FD06D6362D02DDE1CF343BFE292900F49750B4AA97934D9C4296B26E51"
        "FD370471B235E15A50DAE15BD5489C87000000000000000060000000010000000000000000000000"
        "5C33530DEAF90D4DB2EC4AE3786EC3084E45474F4558545303000000010000004000000098000000"
        "7C7CC0FD06D6362D02DDE1CF343BFE295C33530DEAF90D4DB2EC4AE3786EC3084000000058000000"
        "3056A05430523027802530233121301F06035504031318546F6B656E205369676E696E6720507562"
        "6C6963204B65793027802530233121301F06035504031318546F6B656E205369676E696E67205075"
        "626C6963204B6579010026000000000001002000010060A3C3B95C3C7CCD51EC536648D9B3AC74C4"
        "83CA5B65385A251117BEB30712E50000020004000000000001000200",
        "324BFA92A4F3A190E466EBEA08D9C110DC88BFED758D9846ECC6F541CC1D02AE3C94A79F36011E99"
        "7E13F841B91B50957AD07B19C8E2539C0B23FDAE09D2C513",
    ),
    (  # SESSION_SETUP request 1
        "FE534D4240000100000000000100800000000000000000000200000000000000FFFE000000000000"
        "00000000000000000000000000000000000000000000000019000001010000000000000058004A00"
        "0000000000000000604806062B0601050502A03E303CA00E300C060A2B06010401823702020AA22A"
        "04284E544C4D5353500001000000978208E200000000000000000000000000000000060380250000"
        "000F",
        "AC0B0F2B9986257700365E416D142A6EDC96DF03594A19E52A15F6BD0D041CD5D432F8ED42C55E33"
        "197A50C9EC00F1462B50C592211B1471A04B56088FDFD5F9",
    ),
    (  # SESSION_SETUP response 1 (STATUS_MORE_PROCESSING_REQUIRED)
        "FE534D4240000100160000C00100010001000000000000000200000000000000FFFE000000000000"
        "190000000010000000000000000000000000000000000000090000004800B300A181B03081ADA003"
        "0A0101A10C060A2B06010401823702020AA281970481944E544C4D53535000020000000C000C0038"
        "00000015828AE20D1D8BA31179D008000000000000000050005000440000000A0092270000000F53"
        "005500540033003100310002000C0053005500540033003100310001000C00530055005400330031"
        "00310004000C0053005500540033003100310003000C0053005500540033003100310007000800A1"
        "A1F5ADCBAED00100000000",
        "2729E3440DFDDD839E37193F6E8F20C20CEFB3469E453A70CD980EEC06B8835740A7376008563336"
        "4C8989895ECE81BF102DEEB14D4B7D48AFA76901A7A38387",
    ),
    (  # SESSION_SETUP request 2
        "FE534D4240000100000000000100800000000000000000000300000000000000FFFE000000000000"
        "1900000000100000000000000000000000000000000000001900000101000000000000005800CF01"
        "0000000000000000A18201CB308201C7A0030A0101A28201AA048201A64E544C4D53535000030000"
        "001800180090000000EE00EE00A80000000C000C00580000001A001A0064000000120012007E0000"
        "001000100096010000158288E2060380250000000FECAC77A5F385A8BF9C38C706EEEDDCD3530055"
        "005400330031003100610064006D0069006E006900730074007200610074006F0072004400520049"
        "0056004500520033003100310000000000000000000000000000000000000000000000000063078E"
        "B639FE03E20A231C3AE3BF23080101000000000000A1A1F5ADCBAED001BC4AD05F223CC90F000000"
        "0002000C0053005500540033003100310001000C0053005500540033003100310004000C00530055"
        "00540033003100310003000C0053005500540033003100310007000800A1A1F5ADCBAED001060004"
        "00020000000800300030000000000000000000000000300000B61FEFCAA857EA57BF1EDCEBF8974B"
        "8E0EBA5A6DFD9D07A31D11B548F8C9D0CC0A00100000000000000000000000000000000000090016"
        "0063006900660073002F005300550054003300310031000000000000000000000000003B9BDFF38F"
        "5EE8F9663F11A0F4C03A78A31204100100000063775A9A5FD97F0600000000",
        "0DD13628CC3ED218EF9DF9772D436D0887AB9814BFAE63A80AA845F36909DB7928622DDDAD522D97"
        "51640A459762C5A9D6BB084CBB3CE6BDADEF5D5BCE3C6C01",
    ),
]
PREAUTH_SESSION_KEY = h("270E1BA896585EEB7AF3472D3B4C75A7")
PREAUTH_SIGNING_KEY = h("73FE7A9A77BEF0BDE49C650D8CCB5F76")

# --- "Encryption in SMB 3.0: A protocol perspective" -------------------------------------

SMB30_SESSION_KEY = h("B4546771B515F766A86735532DD6C4F0")
SMB30_SESSION_ID = 0x8E40014000011
SMB30_CLIENT_ENCRYPTION_KEY = h("261B72350558F2E9DCF613070383EDBF")  # "ServerIn "
SMB30_CLIENT_DECRYPTION_KEY = h("8FE2B57EC34D2DB5B1A9727F526BBDB5")  # "ServerOut"
SMB30_NONCE_FIELD = h("66E69A111892584FB5ED524A744DA3EE")
SMB30_WRITE_REQUEST = h(
    "FE534D4240000100000000000900400008000000000000000400000000000000"
    "FFFE0000010000001100001400E4080000000000000000000000000000000000"
    "3100700017000000000000000000000015010000390000020100000039020000"
    "00000000000000007000000000000000536D623320656E6372797074696F6E20"
    "74657374696E67"
)
SMB30_WRITE_TRANSFORMED = h(
    "FD534D4281A286535415445DAE393921E44FA42E66E69A111892584FB5ED524A"
    "744DA3EE87000000000001001100001400E4080025C8FEE16605A437832D1CD5"
    "2DA9F4645333482A175FE5384563F45FCDAFAEF38BC62BA4D5C62897996625A4"
    "4C29BE5658DE2E6117585779E7B59FFD971278D08580D7FA899E410E910EABF5"
    "AA1DB43050B33B49182637759AC15D84BFCDF5B6B238993C0F4CF4D6012023F6"
    "C627297075D84B7803912D0A9639634453595EF3E33FFE4E7AC2AB"
)
SMB30_RESPONSE_TRANSFORMED = h(
    "FD534D42A6015530A18F6D9AFFE22AFAE8E66484860000000000000011000014"
    "00E4080050000000000001001100001400E40800DBF46435C5F14169293CE079"
    "E344479BF670227E49873F458672C3098DAC467DD5809F369D67409166515787"
    "1483E01F7BECD02064EAC3E235F913668BBC2F097980D4B378F1993EFF6E60D1"
    "77309E5B"
)
SMB30_WRITE_RESPONSE = h(
    "FE534D4240000100000000000900210009000000000000000400000000000000"
    "FFFE0000010000001100001400E4080000000000000000000000000000000000"
    "11000000170000000000000000000000"
)

# --- "SMB 3.1.1 Encryption in Windows 10" ----------------------------------------------------

SMB311_SESSION_KEY = h("419FDDF34C1E001909D362AE7FB6AF79")
SMB311_PREAUTH = h(
    "B23F3CBFD69487D9832B79B1594A367CDD950909B774C3A4C412B4FCEA9EDDDBA7DB256BA2EA30E9"
    "77F11F9B113247578E0E915C6D2A513B8F2FCA5707DC8770"
)
SMB311_SESSION_ID = 0x100000000025
SMB311_CLIENT_ENCRYPTION_KEY = h("A2F5E80E5D59103034F32E52F698E5EC")  # SMBC2SCipherKey
SMB311_CLIENT_DECRYPTION_KEY = h("748C50868C90F302962A5C35F5F9A8BF")  # SMBS2CCipherKey
SMB311_NONCE = h("C7D6822D269CAF48904C664C")
SMB311_WRITE_REQUEST = h(
    "FE534D4240000100000000000900010008000000000000000500000000000000FFFE000001000000"
    "25000000001000000000000000000000000000000000000031007000170000000000000000000000"
    "0600000004000000010000000400000000000000000000007000000000000000536D623320656E63"
    "72797074696F6E2074657374696E67"
)
SMB311_WRITE_TRANSFORMED = h(
    "FD534D42BD73D97D2BC9001BCAFAC0FDFF5FEEBCC7D6822D269CAF48904C664C0000000087000000"
    "0000010025000000001000006ECDD2A7AFC7B47763057A041B8FD4DAFFE990B70C9E09D36C084E02"
    "D14EF247F8BDE38ACF6256F8B1D3B56F77FBDEB312FEA5E92CBCC1ED8FB2EBBFAA75E49A4A394BB4"
    "4576545567C24D4C014D47C9FBDFDAFD2C4F9B72F8D256452620A299F48E29E53D6B61D1C13A19E9"
    "1AF013F00D17E3ABC2FC3D36C8C1B6B93973253852DBD442E46EE8"
)
SMB311_RESPONSE_TRANSFORMED = h(
    "FD534D42ACBE1CB7ED343ADF1725EF144D90D4B0E06831DD2E8EB7B4000000000000000050000000"
    "00000100250000000010000026BBBF949983A6C1C796559D0F2C510CB651D1F7B6AC8DED32A2A0B8"
    "F2D793A815C6F6B848D69767A215841A42D400AE6DDB5F0B44173A014973321FDD7950DA6179159B"
    "82E03C9E18A050FF0EA1C967"
)
SMB311_WRITE_RESPONSE = h(
    "FE534D4240000100000000000900010001000000000000000500000000000000FFFE000001000000"
    "25000000001000000000000000000000000000000000000011000000170000000000000000000000"
)


# --- KDF and preauth integrity --------------------------------------------------------------


def test_preauth_integrity_chain_and_signing_key() -> None:
    chain = PreauthIntegrity()
    for message, expected in PREAUTH_STEPS:
        assert chain.update(h(message)) == h(expected)
    keys = derive_session_keys(DIALECT_3_1_1, PREAUTH_SESSION_KEY, chain.value, Cipher.AES_128_GCM)
    assert keys.signing_key == PREAUTH_SIGNING_KEY


def test_preauth_copy_forks() -> None:
    connection = PreauthIntegrity()
    connection.update(b"negotiate")
    session = connection.copy()
    session.update(b"setup")
    assert connection.value != session.value
    assert PreauthIntegrity(connection.value).update(b"setup") == session.value


def test_smb30_encryption_keys() -> None:
    keys = derive_session_keys(DIALECT_3_0, SMB30_SESSION_KEY, None, None)
    # The blog shows the client's keys; the server's are the same two, swapped.
    assert keys.decryption_key == SMB30_CLIENT_ENCRYPTION_KEY
    assert keys.encryption_key == SMB30_CLIENT_DECRYPTION_KEY
    assert derive_session_keys(DIALECT_3_0_2, SMB30_SESSION_KEY, None, Cipher.AES_128_CCM) == keys


def test_smb311_encryption_keys() -> None:
    keys = derive_session_keys(DIALECT_3_1_1, SMB311_SESSION_KEY, SMB311_PREAUTH, Cipher.AES_128_GCM)
    assert keys.decryption_key == SMB311_CLIENT_ENCRYPTION_KEY
    assert keys.encryption_key == SMB311_CLIENT_DECRYPTION_KEY


def test_smb2x_keys_are_the_session_key() -> None:
    for dialect in (DIALECT_2_0_2, DIALECT_2_1):
        keys = derive_session_keys(dialect, b"k" * 16, None, None)
        assert keys.signing_key == keys.application_key == b"k" * 16
        assert keys.encryption_key == keys.decryption_key == b""
    # Shorter GSS keys are zero-padded to 16 bytes.
    assert derive_session_keys(DIALECT_2_1, b"abc", None, None).signing_key == b"abc" + bytes(13)


def test_derive_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError):
        derive_session_keys(DIALECT_3_1_1, b"k" * 16, None, None)
    with pytest.raises(ValueError):
        derive_session_keys(DIALECT_3_0, b"k" * 16, None, Cipher.AES_128_GCM)
    with pytest.raises(ValueError):
        derive_session_keys(0x0222, b"k" * 16, None, None)
    with pytest.raises(ValueError):
        derive_session_keys(DIALECT_3_0, b"", None, None)


@given(
    st.binary(min_size=1, max_size=64),
    st.binary(max_size=40),
    st.binary(max_size=80),
    st.sampled_from([128, 256]),
)
@settings(max_examples=100)
def test_kdf_matches_cryptography_kbkdf(key: bytes, label: bytes, context: bytes, bits: int) -> None:
    reference = KBKDFHMAC(
        algorithm=hashes.SHA256(),
        mode=Mode.CounterMode,
        length=bits // 8,
        rlen=4,
        llen=4,
        location=CounterLocation.BeforeFixed,
        label=label,
        context=context,
        fixed=None,
    ).derive(key)
    assert kdf_sp800_108(key, label, context, bits) == reference


def _smbprotocol_keys(dialect: int, session_key: bytes, messages: list[bytes], cipher: int | None) -> Any:
    """Run the key-derivation tail of smbprotocol's Session.connect with a stub context."""
    connection = SimpleNamespace(
        dialect=dialect,
        cipher_id=cipher,
        preauth_integrity_hash_value=messages,
        session_table={},
        server_name="srv",
        require_signing=True,
        gss_negotiate_token=None,
    )
    session = smbprotocol_session.Session(connection, "user", "password")
    session.session_id = 1
    stub_context = SimpleNamespace(complete=True, session_key=session_key)
    original = smbprotocol_session.spnego.client
    smbprotocol_session.spnego.client = lambda *args, **kwargs: stub_context
    try:
        # It stops at reading the (absent) SESSION_SETUP response, after deriving keys.
        with contextlib.suppress(NameError, UnboundLocalError):
            session.connect()
    finally:
        smbprotocol_session.spnego.client = original
    return session


@pytest.mark.parametrize(
    ("dialect", "cipher", "key_size"),
    [
        (DIALECT_2_0_2, None, 16),
        (DIALECT_2_1, None, 16),
        (DIALECT_3_0, None, 16),
        (DIALECT_3_0_2, None, 16),
        (DIALECT_3_1_1, Cipher.AES_128_CCM, 16),
        (DIALECT_3_1_1, Cipher.AES_128_GCM, 16),
        (DIALECT_3_1_1, Cipher.AES_256_CCM, 32),
        (DIALECT_3_1_1, Cipher.AES_256_GCM, 32),
    ],
)
@pytest.mark.parametrize("session_key", [bytes(range(16)), bytes(range(32)), b"short"], ids=["16", "32", "5"])
def test_keys_agree_with_smbprotocol(
    dialect: int, cipher: int | None, key_size: int, session_key: bytes
) -> None:
    messages = [b"negotiate request", b"negotiate response", b"setup request", b"setup response"]
    chain = PreauthIntegrity()
    for message in messages:
        chain.update(message)
    preauth = chain.value if dialect == DIALECT_3_1_1 else None
    ours = derive_session_keys(dialect, session_key, preauth, cipher)
    theirs = _smbprotocol_keys(dialect, session_key, messages, cipher)
    assert ours.signing_key == theirs.signing_key
    assert ours.application_key == theirs.application_key
    if dialect >= DIALECT_3_0:
        # smbprotocol is the client: its encryption key is our decryption key.
        assert ours.decryption_key == theirs.encryption_key
        assert ours.encryption_key == theirs.decryption_key
        assert len(ours.encryption_key) == key_size


# --- signing ------------------------------------------------------------------------------

# Two SMB2 responses (STATUS_NOT_FOUND to an IOCTL) signed with HMAC-SHA256 by Windows.
CAPTURED_SIGNED = [
    (
        h("D38354CC374339F0524F789146789921"),
        h(
            "fe534d4240000100280100c00b000700"
            "09000000000000000400000000000000"
            "fffe0000010000000100000000040000"
            "fbd284340324c62fbebb65dd1051f3ae"
            "0900000000000000ff"
        ),
    ),
    (
        h("04E707571F8E0353B77A94C3653B87B5"),
        h(
            "fe534d4240000100280100c00b000700"
            "09000000000000000400000000000000"
            "fffe0000010000000500000000040000"
            "a164ffe53d6811981f386772e387e06f"
            "0900000000000000ff"
        ),
    ),
]


@pytest.mark.parametrize(("key", "message"), CAPTURED_SIGNED)
def test_hmac_sha256_captured_signatures(key: bytes, message: bytes) -> None:
    assert len(message) == 73
    assert sign(SigningAlgorithm.HMAC_SHA256, key, message, is_response=True) == message[48:64]
    assert verify(SigningAlgorithm.HMAC_SHA256, key, message, is_response=True)
    tampered = message[:-1] + b"\x00"
    assert not verify(SigningAlgorithm.HMAC_SHA256, key, tampered, is_response=True)


@pytest.mark.parametrize(
    ("message", "mac"),
    [  # RFC 4493 section 4, examples 1-3 (shorter than the signature field's offset + 16)
        ("", "bb1d6929e95937287fa37d129b756746"),
        ("6bc1bee22e409f96e93d7e117393172a", "070a16b46b4d4144f79bdd9dd04a287c"),
        (
            "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411",
            "dfa66747de9ae63030ca32611497c827",
        ),
    ],
)
def test_aes_cmac_rfc4493(message: str, mac: str) -> None:
    from cryptography.hazmat.primitives.ciphers import algorithms
    from cryptography.hazmat.primitives.cmac import CMAC

    key = h("2b7e151628aed2a6abf7158809cf4f3c")
    # sign() takes whole SMB2 messages; check the primitive it uses on the RFC inputs.
    reference = CMAC(algorithms.AES(key))
    reference.update(h(message))
    assert reference.finalize() == h(mac)
    padded = h(message).ljust(64, b"\x00")
    expected = CMAC(algorithms.AES(key))
    expected.update(padded)
    assert sign(SigningAlgorithm.AES_CMAC, key, padded, is_response=False) == expected.finalize()


_smb2_message = st.binary(min_size=64, max_size=300).map(lambda b: b"\xfeSMB" + b[4:])


@given(
    st.sampled_from(list(SigningAlgorithm)),
    st.binary(min_size=16, max_size=16),
    _smb2_message,
    st.booleans(),
    st.booleans(),
)
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_signatures_agree_with_smbprotocol(
    algorithm: SigningAlgorithm, key: bytes, message: bytes, is_response: bool, is_cancel: bool
) -> None:
    message_id = struct.unpack_from("<Q", message, 24)[0]
    oracle = SimpleNamespace(dialect=0x0311, signing_algorithm_id=int(algorithm))
    command = Commands.SMB2_CANCEL if is_cancel else Commands.SMB2_ECHO
    theirs = Connection._generate_signature(oracle, message, key, message_id, is_response, command)
    ours = sign(algorithm, key, message, is_response=is_response, is_cancel=is_cancel)
    assert ours == theirs
    signed = message[:48] + ours + message[64:]
    assert verify(algorithm, key, signed, is_response=is_response, is_cancel=is_cancel)


def test_gmac_nonce_depends_on_role_cancel_and_message_id() -> None:
    key = bytes(range(16))
    message = b"\xfeSMB" + bytes(60) + b"body"
    signatures = {
        sign(SigningAlgorithm.AES_GMAC, key, message, message_id=mid, is_response=resp, is_cancel=cancel)
        for mid in (0, 1)
        for resp in (False, True)
        for cancel in (False, True)
    }
    assert len(signatures) == 8


def test_sign_message_sets_the_flag_and_verifies() -> None:
    key = bytes(range(16))
    message = b"\xfeSMB" + bytes(60) + b"payload"
    signed = sign_message(SigningAlgorithm.AES_CMAC, key, message, is_response=True)
    assert struct.unpack_from("<I", signed, 16)[0] & SMB2_FLAGS_SIGNED
    assert verify(SigningAlgorithm.AES_CMAC, key, signed, is_response=True)
    assert write_signature(signed, signed[48:64]) == signed
    assert not verify(SigningAlgorithm.AES_CMAC, key, signed[:-1] + b"x", is_response=True)
    assert not verify(SigningAlgorithm.AES_CMAC, key, signed[:40], is_response=True)


# --- encryption ----------------------------------------------------------------------------


def test_smb30_encrypt_vector() -> None:
    transformed = encrypt(
        Cipher.AES_128_CCM,
        SMB30_CLIENT_ENCRYPTION_KEY,
        SMB30_SESSION_ID,
        SMB30_WRITE_REQUEST,
        SMB30_NONCE_FIELD,
    )
    assert transformed == SMB30_WRITE_TRANSFORMED
    # The server reads it with its decryption key ("ServerIn ").
    server = derive_session_keys(DIALECT_3_0, SMB30_SESSION_KEY, None, None)
    assert decrypt(Cipher.AES_128_CCM, server.decryption_key, transformed) == (
        SMB30_SESSION_ID,
        SMB30_WRITE_REQUEST,
    )


def test_smb30_decrypt_vector() -> None:
    server = derive_session_keys(DIALECT_3_0, SMB30_SESSION_KEY, None, None)
    # The server's response was encrypted with the server's encryption key ("ServerOut").
    assert decrypt(Cipher.AES_128_CCM, server.encryption_key, SMB30_RESPONSE_TRANSFORMED) == (
        SMB30_SESSION_ID,
        SMB30_WRITE_RESPONSE,
    )


def test_smb311_encrypt_vector() -> None:
    transformed = encrypt(
        Cipher.AES_128_GCM,
        SMB311_CLIENT_ENCRYPTION_KEY,
        SMB311_SESSION_ID,
        SMB311_WRITE_REQUEST,
        SMB311_NONCE,
    )
    assert transformed == SMB311_WRITE_TRANSFORMED
    header = parse_transform_header(transformed)
    assert header.nonce == SMB311_NONCE + bytes(4)
    assert header.original_message_size == len(SMB311_WRITE_REQUEST)


def test_smb311_decrypt_vector() -> None:
    server = derive_session_keys(DIALECT_3_1_1, SMB311_SESSION_KEY, SMB311_PREAUTH, Cipher.AES_128_GCM)
    assert decrypt(Cipher.AES_128_GCM, server.encryption_key, SMB311_RESPONSE_TRANSFORMED) == (
        SMB311_SESSION_ID,
        SMB311_WRITE_RESPONSE,
    )


def _oracle_connection(cipher: Cipher) -> SimpleNamespace:
    return SimpleNamespace(dialect=0x0311, cipher_id=int(cipher))


@given(
    st.sampled_from(list(Cipher)),
    st.data(),
    _smb2_message,
    st.integers(min_value=0, max_value=2**64 - 1),
)
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_encryption_interoperates_with_smbprotocol(
    cipher: Cipher, data: st.DataObject, message: bytes, session_id: int
) -> None:
    key_size = 32 if cipher in (Cipher.AES_256_CCM, Cipher.AES_256_GCM) else 16
    key = data.draw(st.binary(min_size=key_size, max_size=key_size))
    connection = _oracle_connection(cipher)
    oracle_session = SimpleNamespace(session_id=session_id, encryption_key=key, decryption_key=key)
    connection.session_table = {session_id: oracle_session}

    # smbprotocol encrypts, we decrypt.
    header = Connection._encrypt(connection, message, oracle_session)
    assert decrypt(cipher, key, header.pack()) == (session_id, message)

    # We encrypt, smbprotocol decrypts.
    ours = encrypt(cipher, key, session_id, message)
    parsed = SMB2TransformHeader()
    parsed.unpack(ours)
    assert Connection._decrypt(connection, parsed) == message


# --- typed errors on hostile input -----------------------------------------------------------


def test_decrypt_refuses_tampering() -> None:
    transformed = bytearray(SMB311_WRITE_TRANSFORMED)
    transformed[-1] ^= 1
    with pytest.raises(Smb2CryptoError) as excinfo:
        decrypt(Cipher.AES_128_GCM, SMB311_CLIENT_ENCRYPTION_KEY, bytes(transformed))
    assert excinfo.value.ntstatus == NtStatus.STATUS_ACCESS_DENIED
    # The AAD covers the session id.
    transformed = bytearray(SMB311_WRITE_TRANSFORMED)
    transformed[44] ^= 1
    with pytest.raises(Smb2CryptoError):
        decrypt(Cipher.AES_128_GCM, SMB311_CLIENT_ENCRYPTION_KEY, bytes(transformed))
    with pytest.raises(Smb2CryptoError):
        decrypt(Cipher.AES_128_GCM, bytes(16), SMB311_WRITE_TRANSFORMED)


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\xfdSMB",
        b"\xfeSMB" + bytes(60),
        SMB311_WRITE_TRANSFORMED[:TRANSFORM_HEADER_SIZE],  # size claims 0x87 bytes, none follow
        SMB311_WRITE_TRANSFORMED + b"extra",
        SMB311_WRITE_TRANSFORMED[:42] + b"\x02\x00" + SMB311_WRITE_TRANSFORMED[44:],  # flags 2
    ],
)
def test_decrypt_malformed(frame: bytes) -> None:
    with pytest.raises(Smb2CryptoError) as excinfo:
        decrypt(Cipher.AES_128_GCM, SMB311_CLIENT_ENCRYPTION_KEY, frame)
    assert excinfo.value.ntstatus == NtStatus.STATUS_INVALID_PARAMETER


def test_wrong_key_length_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        encrypt(Cipher.AES_256_GCM, bytes(16), 1, SMB311_WRITE_REQUEST)
    with pytest.raises(ValueError):
        encrypt(Cipher.AES_128_GCM, bytes(16), 1, SMB311_WRITE_REQUEST, nonce=bytes(5))


def test_is_transform() -> None:
    assert is_transform(SMB30_WRITE_TRANSFORMED)
    assert not is_transform(SMB30_WRITE_REQUEST)


@given(st.binary(max_size=200), st.sampled_from(list(Cipher)))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_decrypt_only_typed_errors(data: bytes, cipher: Cipher) -> None:
    key = bytes(32 if cipher in (Cipher.AES_256_CCM, Cipher.AES_256_GCM) else 16)
    for frame in (data, b"\xfdSMB" + data, b"\xfdSMB" + data[:48].ljust(48, b"\x00") + data[48:]):
        with contextlib.suppress(Smb2CryptoError):
            decrypt(cipher, key, frame)
        with contextlib.suppress(Smb2CryptoError):
            parse_transform_header(frame)
