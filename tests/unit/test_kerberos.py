"""kerberos.py without a KDC: error typing, SPN names, --dc-ip's krb5.conf, option parsing.

The real exchanges (tickets, every error produced by a KDC) are in
tests/interop/test_kerberos.py against a Samba AD DC.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from smbsessions import kerberos
from smbsessions.auth import Credentials
from smbsessions.cli_args import UsageError, add_auth_arguments, credentials_from_args
from smbsessions.status import AuthenticationError

HAVE_KRB5 = kerberos.gssapi_available()


@pytest.mark.parametrize(
    ("code", "kind", "words"),
    [
        (kerberos.KRB5KRB_AP_ERR_SKEW, kerberos.ClockSkewError, "clock skew"),
        (kerberos.KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN, kerberos.UnknownPrincipalError, "does not know alice"),
        (kerberos.KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN, kerberos.UnknownPrincipalError, "service principal"),
        (kerberos.KRB5KDC_ERR_PREAUTH_FAILED, kerberos.WrongPasswordError, "refused the password"),
        (kerberos.KRB5KRB_AP_ERR_BAD_INTEGRITY, kerberos.WrongPasswordError, "refused the password"),
        (kerberos.KRB5KRB_AP_ERR_TKT_EXPIRED, kerberos.TicketExpiredError, "expired"),
        (kerberos.KRB5_KDC_UNREACH, kerberos.KdcUnreachableError, "--dc-ip"),
        (kerberos.KRB5_REALM_UNKNOWN, kerberos.KdcUnreachableError, "--dc-ip"),
        (kerberos.KRB5_FCC_NOFILE, kerberos.NoTicketError, "kinit"),
        (kerberos.KRB5KDC_ERR_ETYPE_NOSUPP, kerberos.UnsupportedKeyError, "RC4"),
    ],
)
def test_krb5_codes_become_typed_errors(code: int, kind: type, words: str) -> None:
    error = kerberos.translate_code(code, "krb5 text", who="alice")
    assert type(error) is kind
    assert isinstance(error, AuthenticationError)  # exit code AUTH, sweep status auth-failed
    assert words in str(error)
    assert error.code == code
    assert error.code_name is not None and error.code_name in str(error)


def test_an_unknown_code_keeps_krb5s_words() -> None:
    error = kerberos.translate_code(-1765328999, "something odd")
    assert type(error) is kerberos.KerberosError
    assert "something odd" in str(error) and "-1765328999" in str(error)


class _FakeGssError(Exception):
    def __init__(self, min_code: int) -> None:
        super().__init__("gss failure")
        self.min_code = min_code


class _FakeSpnegoError(Exception):
    def __init__(self, base: Exception) -> None:
        super().__init__("wrapped")
        self.base_error = base


def test_translate_finds_the_minor_code_in_pyspnegos_wrapping() -> None:
    unsigned_skew = kerberos.KRB5KRB_AP_ERR_SKEW + (1 << 32)  # GSSAPI minor codes are unsigned
    try:
        try:
            raise _FakeSpnegoError(_FakeGssError(unsigned_skew))
        except _FakeSpnegoError as inner:
            raise RuntimeError("smbprotocol wrapper") from inner
    except RuntimeError as outer:
        error = kerberos.translate(outer, where="dc1:445")
    assert isinstance(error, kerberos.ClockSkewError)
    assert str(error).startswith("dc1:445: ")


def test_translate_reads_a_minor_code_from_text_and_ignores_others() -> None:
    text = f"Received error (Major (851968), Minor ({kerberos.KRB5_KDC_UNREACH}))"
    assert isinstance(kerberos.translate(Exception(text)), kerberos.KdcUnreachableError)
    assert kerberos.translate(ValueError("NTLM: bad signature")) is None


def test_spn_host_needs_a_name() -> None:
    creds = Credentials("alice", kerberos=True)
    assert kerberos.spn_host(creds, "fs1.example.com") == "fs1.example.com"
    for address in ("10.0.0.5", "::1", "fe80::1%eth0"):
        with pytest.raises(kerberos.NeedsHostNameError, match="--target-name"):
            kerberos.spn_host(creds, address)
    named = Credentials("alice", kerberos=True, target_name="fs1.example.com")
    assert kerberos.spn_host(named, "10.0.0.5") == "fs1.example.com"


def test_realm_from_the_dns_domain_only() -> None:
    assert kerberos.realm_of(Credentials("a", domain="corp.example.com", kerberos=True)) == "CORP.EXAMPLE.COM"
    assert kerberos.realm_of(Credentials("a", domain="CORP", kerberos=True)) is None
    assert kerberos.realm_of(Credentials("a", kerberos=True)) is None


def test_dc_ip_writes_a_private_krb5_conf_first_in_krb5_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KRB5_CONFIG", "/etc/krb5.conf")
    path = kerberos.use_kdc("example.com", "192.0.2.10")
    text = Path(path).read_text()
    assert "default_realm = EXAMPLE.COM" in text and "kdc = 192.0.2.10" in text
    assert "dns_lookup_kdc = false" in text and "dns_canonicalize_hostname = false" in text
    assert os.environ["KRB5_CONFIG"] == f"{path}:/etc/krb5.conf"
    assert oct(Path(path).parent.stat().st_mode & 0o777) == "0o700"
    # Asked again: same file, not stacked twice.
    assert kerberos.use_kdc("EXAMPLE.COM", "192.0.2.10") == path
    assert os.environ["KRB5_CONFIG"] == f"{path}:/etc/krb5.conf"


def test_ipv6_kdc_is_bracketed() -> None:
    assert "kdc = [2001:db8::1]" in kerberos.krb5_conf_text("EXAMPLE.COM", "2001:db8::1")


def test_gssapi_missing_names_the_extra_and_the_system_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kerberos.errors, "gssapi_available", lambda: False)
    with pytest.raises(kerberos.GssapiMissingError) as info:
        kerberos.prepare(Credentials("alice", kerberos=True))
    assert "smbsessions[kerberos]" in str(info.value) and "libkrb5-dev" in str(info.value)


def test_prepare_leaves_other_credentials_alone() -> None:
    creds = Credentials("alice", password="pw")
    assert kerberos.prepare(creds) is creds


@pytest.mark.skipif(not HAVE_KRB5, reason="the kerberos extra is not installed")
def test_missing_ticket_cache_is_no_ticket(tmp_path: Path) -> None:
    creds = Credentials(kerberos=True, ccache=f"FILE:{tmp_path}/none")
    with pytest.raises(kerberos.NoTicketError, match=r"does not exist.*kinit"):
        kerberos.prepare(creds)


def test_credentials_carry_kerberos_settings_without_showing_secrets() -> None:
    creds = Credentials("alice", kerberos=True, aes_key="ab" * 32, kdc="192.0.2.1")
    assert "abab" not in repr(creds) and "192.0.2.1" in repr(creds)
    with pytest.raises(ValueError, match="AES key"):
        Credentials("alice", kerberos=True, aes_key="ab" * 20)
    with pytest.raises(ValueError, match="needs Kerberos"):
        Credentials("alice", password="x", target_name="fs1")


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_auth_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_kerberos_options() -> None:
    nt = "8846f7eaee8fb117ad06bdd830b7586c"
    creds = credentials_from_args(_parse("-k", "-U", "corp.example.com/alice", "--hashes", f":{nt}",
                                         "--dc-ip", "192.0.2.1"), None)
    assert creds.kerberos and creds.nt_hash == nt and creds.kdc == "192.0.2.1"
    creds = credentials_from_args(_parse("-k", "-U", "alice", "--aes-key", "00" * 16), None)
    assert creds.kerberos and creds.aes_key == "00" * 16 and creds.password is None
    creds = credentials_from_args(_parse("-k", "--target-name", "fs1.example.com"), None)
    assert creds.kerberos and creds.target_name == "fs1.example.com" and not creds.username
    creds = credentials_from_args(_parse("-k", "-U", "alice%pw"), None)
    assert creds.kerberos and creds.password == "pw"


@pytest.mark.parametrize(
    "argv",
    [
        ("-U", "alice%pw", "--dc-ip", "192.0.2.1"),  # needs -k
        ("-U", "alice%pw", "--target-name", "fs1"),
        ("-k", "--hashes", ":8846f7eaee8fb117ad06bdd830b7586c"),  # no user
        ("-k", "-U", "alice%pw", "--aes-key", "00" * 16),  # two secrets
    ],
)
def test_cli_kerberos_option_mistakes(argv: tuple[str, ...]) -> None:
    with pytest.raises(UsageError):
        credentials_from_args(_parse(*argv), None)


def test_server_clock_skew_from_the_negotiate_time() -> None:
    import datetime

    now = datetime.datetime.now(datetime.UTC)
    behind = kerberos.server_clock_skew(now - datetime.timedelta(hours=2), "fs1:445", 0xC000006D)
    assert isinstance(behind, kerberos.ClockSkewError)
    assert "120 min behind" in str(behind) and "0xC000006D" in str(behind)
    ahead = kerberos.server_clock_skew((now + datetime.timedelta(minutes=30)).replace(tzinfo=None), "fs1")
    assert isinstance(ahead, kerberos.ClockSkewError) and "30 min ahead" in str(ahead)
    assert kerberos.server_clock_skew(now + datetime.timedelta(minutes=4), "fs1") is None
    assert kerberos.server_clock_skew(None, "fs1") is None


def test_sweep_refuses_one_target_name_for_many_hosts() -> None:
    import io

    from smbsessions.cli import main
    from smbsessions.exitcodes import ExitCode

    err = io.StringIO()
    code = main(["sweep", "-k", "--target-name", "fs1.example.com", "10.0.0.1", "10.0.0.2"],
                out=io.StringIO(), err=err)
    assert code == ExitCode.USAGE
    assert "--target-name names one server" in err.getvalue()
