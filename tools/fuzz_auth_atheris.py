"""Coverage-guided fuzzing of the NTLM, SPNEGO and SMB2 transform parsers with atheris (by hand).

    .venv/bin/pip install atheris
    .venv/bin/python -m tools.fuzz_auth_atheris -max_total_time=300 -max_len=4096

The first input byte picks a target; the rest is the token. The property is the one
tests/unit/test_ntlm.py, test_spnego.py and test_smb2_crypto.py check with
hypothesis: every input either succeeds or raises the module's typed error
(NtlmError, SpnegoError, Smb2CryptoError). Anything else is a crash that atheris
reports with its input. The corpus lives in $TMPDIR/smbsessions-fuzz-auth-corpus,
seeded with real tokens from pyspnego's client.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from smbsessions import ntlm, spnego
    from smbsessions.server import smb2_crypto

_HASHES = {"alice": ntlm.nt_hash("Secret1!")}
_KEY = bytes(range(16))


def _acceptor() -> ntlm.NtlmAcceptor:
    return ntlm.NtlmAcceptor(
        lambda user: _HASHES.get(user.lower()),
        server_name="SRV1",
        domain_name="WORKGROUP",
        challenge=b"\x01\x23\x45\x67\x89\xab\xcd\xef",
        timestamp=0,
    )


def _ntlm_exchange(data: bytes) -> None:
    acceptor = _acceptor()
    acceptor.step(ntlm.build_negotiate(0xE2088297))
    acceptor.step(data)


def _ntlm_negotiate(data: bytes) -> None:
    _acceptor().step(data)


def _spnego_first(data: bytes) -> None:
    spnego.SpnegoAcceptor(_acceptor()).step(data)


def _spnego_second(data: bytes) -> None:
    acceptor = spnego.SpnegoAcceptor(_acceptor())
    acceptor.step(
        spnego.encode_neg_token_init((spnego.OID_NTLMSSP,), mech_token=ntlm.build_negotiate(0xE2088297))
    )
    acceptor.step(data)


def _av_pairs(data: bytes) -> None:
    ntlm.decode_av_pairs(data)


def _decrypt(data: bytes) -> None:
    smb2_crypto.decrypt(smb2_crypto.Cipher.AES_128_GCM, _KEY, data)


def _verify(data: bytes) -> None:
    smb2_crypto.verify(smb2_crypto.SigningAlgorithm.AES_GMAC, _KEY, data, is_response=False)


_TARGETS: list[Callable[[bytes], None]] = [
    _ntlm_negotiate,
    _ntlm_exchange,
    _spnego_first,
    _spnego_second,
    _av_pairs,
    _decrypt,
    _verify,
]
_TYPED = (ntlm.NtlmError, smb2_crypto.Smb2CryptoError)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    target = _TARGETS[data[0] % len(_TARGETS)]
    try:
        target(data[1:])
    except _TYPED:
        return


def seeds() -> list[bytes]:
    """Real tokens from pyspnego's NTLM and Negotiate clients, one per target."""
    import spnego as pyspnego

    out: list[bytes] = []
    for protocol, negotiate_target, later_target in (("ntlm", 0, 1), ("negotiate", 2, 3)):
        client = pyspnego.client("alice", "Secret1!", hostname="srv1", protocol=protocol)
        first = client.step()
        assert first is not None
        out.append(bytes([negotiate_target]) + first)
        if protocol == "ntlm":
            challenge = _acceptor().step(first)
            reply = client.step(challenge)
        else:
            challenge_resp, _ = spnego.SpnegoAcceptor(_acceptor()).step(first)
            reply = client.step(challenge_resp)
        assert reply is not None
        out.append(bytes([later_target]) + reply)
    out.append(b"\x04" + ntlm.encode_av_pairs([(ntlm.AvId.MsvAvFlags, b"\x02\x00\x00\x00")]))
    message = b"\xfeSMB" + bytes(60) + b"body"
    out.append(b"\x05" + smb2_crypto.encrypt(smb2_crypto.Cipher.AES_128_GCM, _KEY, 7, message))
    out.append(
        b"\x06"
        + smb2_crypto.sign_message(smb2_crypto.SigningAlgorithm.AES_GMAC, _KEY, message, is_response=False)
    )
    return out


def main() -> None:
    corpus = Path(tempfile.gettempdir()) / "smbsessions-fuzz-auth-corpus"
    corpus.mkdir(exist_ok=True)
    for index, seed in enumerate(seeds()):
        (corpus / f"seed-{index}").write_bytes(seed)
    atheris.Setup([*sys.argv, str(corpus)], test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
