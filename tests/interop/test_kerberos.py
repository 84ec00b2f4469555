"""``-k`` in a real Samba AD domain (samba_ad.py), the way users run it.

The CLI runs as a separate process in the client network namespace, where DNS is
the DC and /etc/krb5.conf names the realm (as on a domain member): ``kinit`` then
``smbsessions enum -k fs1.smbskrb.test``, or ``-k -U realm/user%password``. The
``--dc-ip`` tests take the KDC's DNS records away (a krb5.conf without DNS lookups).

Sessions are enumerated and deleted on ``fs1``, a Samba member server joined to the
domain (the ticket is for cifs/fs1...), and on the DC; the sweep covers both (and a
second DNS name of the DC).

Skips with the reason when not root, when Samba AD / krb5 tools are missing, or
when the ``kerberos`` extra (gssapi, krb5) is not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from smbsessions.exitcodes import ExitCode

from ..peers.samba_ad import (
    ALICE,
    BOB,
    CLIENT_IP,
    DC_FQDN,
    DC_IP,
    DC_NAME,
    DNS_DOMAIN,
    MEMBER_FQDN,
    MEMBER_IP,
    REALM,
    DomainAccount,
    NamespacesBusyError,
    SambaAD,
    unavailable_reason,
)

EXIT_AUTH = int(ExitCode.AUTH)
KERBEROS_MISSING = None
try:
    import gssapi  # noqa: F401
    import krb5
except ImportError as exc:  # pragma: no cover - depends on the machine
    KERBEROS_MISSING = f"the 'kerberos' extra is not installed ({exc})"

SECOND_NAME = f"files.{DNS_DOMAIN}"
"""A second DNS name (and SPN) of the DC, so a sweep has more than one server name."""


@pytest.fixture(scope="module")
def ad(request: pytest.FixtureRequest) -> Iterator[SambaAD]:
    reason = unavailable_reason() or KERBEROS_MISSING
    if reason:
        pytest.skip(f"Samba AD DC fixture unavailable: {reason}")
    dc = SambaAD()
    try:
        dc.start()
    except NamespacesBusyError as exc:
        pytest.skip(f"Samba AD DC fixture unavailable: {exc}")
    try:
        # A second name for the DC: DNS A record and SPN cifs/files...
        dc.samba_tool("dns", "add", DC_IP, DNS_DOMAIN, "files", "A", DC_IP,
                      "-U", f"Administrator%{_admin_password()}", in_namespace=True)
        dc.samba_tool("spn", "add", f"cifs/{SECOND_NAME}", f"{DC_NAME.upper()}$")
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        message = (f"samba AD fixture: started in {dc.start_seconds:.1f} s (provision "
                   f"{dc.provision_seconds:.1f} s, member join + start {dc.member_seconds or 0:.1f} s)")
        if capture is not None:
            with capture.global_and_fixture_disabled():
                print(f"\n{message}", file=sys.stderr)
        yield dc
    finally:
        dc.stop()


def _admin_password() -> str:
    from ..peers.samba_ad import ADMINISTRATOR

    return ADMINISTRATOR.password


def smb(ad: SambaAD, *args: str, env: dict[str, str] | None = None,
        wrapper: Sequence[str] = (), timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """``smbsessions ARGS`` in the client namespace."""
    return ad.client_run([sys.executable, "-m", "smbsessions.cli", *args], env=env, wrapper=wrapper,
                         timeout=timeout)


def ccache(ad: SambaAD, name: str) -> str:
    return f"FILE:{ad.w}/client/{name}.cc"


def sessions(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    return data if isinstance(data, list) else data["sessions"]


def users(records: list[dict[str, Any]]) -> list[str]:
    return [str(r.get("user_name", "")).lower() for r in records]


def _me(account: DomainAccount) -> str:
    return f"smbskrb\\{account.name}"


# ---------------------------------------------------------------- ticket cache


@pytest.mark.parametrize("server", [MEMBER_FQDN, DC_FQDN])
def test_enum_from_a_ticket_cache(ad: SambaAD, server: str) -> None:
    cache = ccache(ad, f"alice-enum-{server}")
    ad.kinit(ALICE, cache)
    result = smb(ad, "enum", "-k", server, "--format", "json", env={"KRB5CCNAME": cache})
    records = sessions(result)
    assert _me(ALICE) in users(records)
    assert any(str(r.get("client_name", "")).lstrip("\\") == CLIENT_IP for r in records)
    # The ticket the logon used is the one for cifs/<the name given>.
    klist = ad.client_run(["klist"], env={"KRB5CCNAME": cache})
    assert f"cifs/{server}@{REALM}" in klist.stdout


def test_get_from_a_ticket_cache(ad: SambaAD) -> None:
    cache = ccache(ad, "alice-get")
    ad.kinit(ALICE, cache)
    # Samba names the session's user DOMAIN\\user.
    result = smb(ad, "get", "-k", MEMBER_FQDN, "--client", CLIENT_IP, "--user", f"SMBSKRB\\{ALICE.name}",
                 "--format", "json", env={"KRB5CCNAME": cache})
    records = sessions(result)
    assert records
    assert all(_me(ALICE) == u for u in users(records))


def test_enum_from_impackets_gettgt_cache(ad: SambaAD) -> None:
    script = Path(sys.executable).parent / "getTGT.py"
    if not script.exists():
        pytest.skip("impacket's getTGT.py is not installed (dev extra)")
    where = ad.w / "client" / "gettgt"
    where.mkdir(exist_ok=True)
    got = ad.client_run([sys.executable, str(script), f"{DNS_DOMAIN}/{ALICE.name}:{ALICE.password}",
                         "-dc-ip", DC_IP], cwd=where)
    saved = where / f"{ALICE.name}.ccache"
    if got.returncode == 0 and not saved.exists() and "ASN.1 schema object" in got.stdout:
        # impacket 0.13.1 with pyasn1 0.6 fails while writing the ccache (its own bug).
        pytest.skip(f"impacket's getTGT could not save the ticket: {got.stdout.strip().splitlines()[-1]}")
    assert got.returncode == 0 and saved.exists(), got.stdout + got.stderr
    cache = f"FILE:{saved}"
    result = smb(ad, "enum", "-k", MEMBER_FQDN, "--format", "json", env={"KRB5CCNAME": cache})
    assert _me(ALICE) in users(sessions(result))


def test_plain_user_is_denied_after_a_good_kerberos_logon(ad: SambaAD) -> None:
    cache = ccache(ad, "bob")
    ad.kinit(BOB, cache)
    result = smb(ad, "enum", "-k", MEMBER_FQDN, env={"KRB5CCNAME": cache})
    assert result.returncode != 0
    assert "ACCESS_DENIED" in result.stderr
    assert "Kerberos" not in result.stderr  # the logon itself worked


# ---------------------------------------------------------------- secrets -> our own TGT


def test_enum_with_a_password_gets_one_ticket(ad: SambaAD) -> None:
    before = ad.as_req_count(ALICE)
    # -A FILE: the password stays out of argv; KRB5CCNAME must not receive our ticket.
    result = smb(ad, "enum", "-k", "-A", _auth_file(ad, ALICE), MEMBER_FQDN, "--format", "json",
                 env={"KRB5CCNAME": ccache(ad, "must-not-be-used")})
    assert _me(ALICE) in users(sessions(result))
    assert ad.as_req_count(ALICE) == before + 1
    # Our ticket went to a private cache, not to KRB5CCNAME.
    assert not Path(ccache(ad, "must-not-be-used")[5:]).exists()


def _auth_file(ad: SambaAD, account: DomainAccount, password: str | None = None) -> str:
    """An smbclient-style authentication file (keeps the password out of argv)."""
    path = ad.w / "client" / f"auth-{account.name}-{time.monotonic_ns()}"
    path.write_text(f"username = {account.name}\npassword = {password or account.password}\n"
                    f"domain = {DNS_DOMAIN}\n")
    path.chmod(0o600)
    return str(path)


def test_password_in_user_spec(ad: SambaAD) -> None:
    result = smb(ad, "enum", "-k", "-U", f"{DNS_DOMAIN}/{ALICE.name}%{ALICE.password}", MEMBER_FQDN,
                 "--format", "json")
    assert _me(ALICE) in users(sessions(result))


def test_nt_hash_is_used_as_the_rc4_key(ad: SambaAD) -> None:
    from smbsessions.auth import nt_hash_of

    result = smb(ad, "enum", "-k", "-U", f"{DNS_DOMAIN}/{ALICE.name}", "--hashes",
                 f":{nt_hash_of(ALICE.password)}", MEMBER_FQDN, "--format", "json")
    assert _me(ALICE) in users(sessions(result))


def test_aes256_key(ad: SambaAD) -> None:
    ctx = krb5.init_context()
    salt = f"{REALM}{ALICE.name}".encode()
    key = krb5.c_string_to_key(ctx, 18, ALICE.password.encode(), salt)
    result = smb(ad, "enum", "-k", "-U", f"{DNS_DOMAIN}/{ALICE.name}", "--aes-key", bytes(key.data).hex(),
                 MEMBER_FQDN, "--format", "json")
    assert _me(ALICE) in users(sessions(result))


# ---------------------------------------------------------------- names and KDCs


def test_ip_target_explains_that_kerberos_needs_a_name(ad: SambaAD) -> None:
    cache = ccache(ad, "alice-ip")
    ad.kinit(ALICE, cache)
    result = smb(ad, "enum", "-k", DC_IP, env={"KRB5CCNAME": cache})
    assert result.returncode == EXIT_AUTH
    assert "needs the server's name" in result.stderr and "--target-name" in result.stderr
    named = smb(ad, "enum", "-k", DC_IP, "--target-name", DC_FQDN, "--format", "json",
                env={"KRB5CCNAME": cache})
    assert _me(ALICE) in users(sessions(named))


def test_a_name_the_domain_does_not_know(ad: SambaAD) -> None:
    cache = ccache(ad, "alice-spn")
    ad.kinit(ALICE, cache)
    result = smb(ad, "enum", "-k", MEMBER_IP, "--target-name", f"nosuch.{DNS_DOMAIN}",
                 env={"KRB5CCNAME": cache})
    assert result.returncode == EXIT_AUTH
    assert "no service principal" in result.stderr and "KDC_ERR_S_PRINCIPAL_UNKNOWN" in result.stderr


def test_dc_ip_when_dns_does_not_know_the_realm(ad: SambaAD) -> None:
    env = {"KRB5_CONFIG": str(ad.client_krb5_conf_no_kdc), "KRB5CCNAME": ccache(ad, "unused")}
    spec = f"{DNS_DOMAIN}/{ALICE.name}%{ALICE.password}"
    lost = smb(ad, "enum", "-k", "-U", spec, DC_FQDN, env=env)
    assert lost.returncode == EXIT_AUTH
    assert "--dc-ip" in lost.stderr and "no KDC" in lost.stderr
    found = smb(ad, "enum", "-k", "-U", spec, "--dc-ip", DC_IP, MEMBER_FQDN, "--format", "json", env=env)
    assert _me(ALICE) in users(sessions(found))


# ---------------------------------------------------------------- errors, produced for real


def test_wrong_password(ad: SambaAD) -> None:
    result = smb(ad, "enum", "-k", "-A", _auth_file(ad, BOB, "not-the-password"), DC_FQDN)
    assert result.returncode == EXIT_AUTH
    assert "refused the password" in result.stderr and "KDC_ERR_PREAUTH_FAILED" in result.stderr
    assert "not-the-password" not in result.stderr


def test_unknown_principal(ad: SambaAD) -> None:
    result = smb(ad, "enum", "-k", "-U", f"{DNS_DOMAIN}/nosuchuser%whatever", DC_FQDN)
    assert result.returncode == EXIT_AUTH
    assert "does not know nosuchuser@SMBSKRB.TEST" in result.stderr
    assert "KDC_ERR_C_PRINCIPAL_UNKNOWN" in result.stderr


def test_no_ticket(ad: SambaAD) -> None:
    result = smb(ad, "enum", "-k", DC_FQDN, env={"KRB5CCNAME": ccache(ad, "never-created")})
    assert result.returncode == EXIT_AUTH
    assert "no Kerberos ticket" in result.stderr and "kinit" in result.stderr


def test_kdc_unreachable(ad: SambaAD) -> None:
    # 127.0.0.1 of the client namespace: nothing listens on port 88 there.
    result = smb(ad, "enum", "-k", "-U", f"{DNS_DOMAIN}/{ALICE.name}%{ALICE.password}", "--dc-ip",
                 "127.0.0.1", DC_FQDN, env={"KRB5_CONFIG": str(ad.client_krb5_conf_no_kdc)})
    assert result.returncode == EXIT_AUTH
    assert "no KDC could be reached" in result.stderr and "KRB5_KDC_UNREACH" in result.stderr


def test_expired_ticket(ad: SambaAD) -> None:
    cache = ccache(ad, "short")
    ad.kinit(ALICE, cache, lifetime="4s")
    end = time.monotonic() + 30
    while time.monotonic() < end:  # bounded wait for the KDC-issued end time to pass
        if ad.client_run(["klist", "-s"], env={"KRB5CCNAME": cache}).returncode != 0:
            break
        time.sleep(0.5)
    result = smb(ad, "enum", "-k", DC_FQDN, env={"KRB5CCNAME": cache})
    assert result.returncode == EXIT_AUTH
    assert "expired" in result.stderr and "kinit" in result.stderr


FAKETIME = "/usr/bin/faketime"
SKEWED = [FAKETIME, "-f", "+2h"]
"""This process's clock two hours ahead (libfaketime), the KDC's and servers' not."""


def _need_faketime() -> None:
    if not os.path.exists(FAKETIME):
        pytest.skip("faketime is not installed (apt-get install faketime)")


@pytest.mark.parametrize("service_ticket_cached", [False, True])
def test_clock_skew_with_a_ticket_cache(ad: SambaAD, service_ticket_cached: bool) -> None:
    """kinit while the clocks agreed; then this machine's clock runs 2 h ahead.

    Without a service ticket the KDC refuses the TGS-REQ (KRB_AP_ERR_SKEW from the
    KDC); with one cached, the server refuses the AP-REQ with a bare
    STATUS_LOGON_FAILURE, and the skew is told from its NEGOTIATE clock.
    """
    _need_faketime()
    cache = ccache(ad, f"skew-{service_ticket_cached}")
    ad.kinit(ALICE, cache)
    env = {"KRB5CCNAME": cache, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    if service_ticket_cached:
        assert smb(ad, "enum", "-k", MEMBER_FQDN, env=env).returncode == 0
    result = smb(ad, "enum", "-k", MEMBER_FQDN, env=env, wrapper=SKEWED)
    assert result.returncode == EXIT_AUTH, result.stderr
    assert "clock" in result.stderr and "KRB_AP_ERR_SKEW" in result.stderr
    if service_ticket_cached:
        assert "120 min behind this machine's" in result.stderr


def test_clock_skew_getting_a_ticket(ad: SambaAD) -> None:
    _need_faketime()
    # MIT krb5 corrects a skewed clock from the KDC's answer to the AS-REQ when
    # kdc_timesync is on (its default; then -k with a password just works): this
    # machine has it off, as hardened configurations do, and gets the KDC's refusal.
    conf = ad.w / "client" / "krb5-no-timesync.conf"
    conf.write_text(Path("/etc/netns/smbskrb-cli/krb5.conf").read_text().replace(
        "[libdefaults]\n", "[libdefaults]\n    kdc_timesync = 0\n"))
    result = smb(ad, "enum", "-k", "-U", f"{DNS_DOMAIN}/{ALICE.name}%{ALICE.password}", DC_FQDN,
                 env={"KRB5_CONFIG": str(conf), "FAKETIME_DONT_FAKE_MONOTONIC": "1"}, wrapper=SKEWED)
    assert result.returncode == EXIT_AUTH, result.stderr
    assert "clock skew" in result.stderr and "KRB_AP_ERR_SKEW" in result.stderr


# ---------------------------------------------------------------- delete


def test_delete_a_session_with_kerberos(ad: SambaAD) -> None:
    # bob holds an SMB session (NTLM, through our own transport) from the client namespace.
    code = (
        "import sys\n"
        "from smbsessions.auth import Credentials\n"
        "from smbsessions.transport import SmbPipe\n"
        f"p = SmbPipe.open({MEMBER_FQDN!r}, 445, credentials=Credentials({BOB.name!r}, 'SMBSKRB', "
        "password=sys.stdin.readline().strip()))\n"
        "print('READY', flush=True)\n"
        "sys.stdin.read()\n"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("KRB5") and k != "LD_PRELOAD"}
    proc = subprocess.Popen(["ip", "netns", "exec", "smbskrb-cli", sys.executable, "-c", code],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=base)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(BOB.password + "\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "READY"
        cache = ccache(ad, "alice-del")
        ad.kinit(ALICE, cache)
        env = {"KRB5CCNAME": cache}
        listed = users(sessions(smb(ad, "enum", "-k", MEMBER_FQDN, "--format", "json", env=env)))
        assert _me(BOB) in listed
        result = smb(ad, "delete", "-k", MEMBER_FQDN, "--user", f"SMBSKRB\\{BOB.name}", "--client", CLIENT_IP,
                     "--yes",
                     env=env)
        assert result.returncode == 0, result.stderr
        after = users(sessions(smb(ad, "enum", "-k", MEMBER_FQDN, "--format", "json", env=env)))
        assert _me(BOB) not in after
    finally:
        proc.kill()
        proc.wait(10)


# ---------------------------------------------------------------- sweep


def test_sweep_explains_an_address_per_host(ad: SambaAD) -> None:
    result = smb(ad, "sweep", "-k", "-A", _auth_file(ad, ALICE), "--format", "jsonl",
                 MEMBER_FQDN, MEMBER_IP, timeout=180)
    records = {r["host"]: r for r in map(json.loads, result.stdout.splitlines()) if r}
    assert records[MEMBER_FQDN]["status"] == "ok"
    failed = records[MEMBER_IP]
    assert failed["status"] == "auth-failed" and "needs the server's name" in json.dumps(failed)


def test_sweep_gets_one_ticket_for_every_host(ad: SambaAD) -> None:
    before = ad.as_req_count(ALICE)
    hosts = [MEMBER_FQDN, DC_FQDN, SECOND_NAME, DC_NAME]
    result = smb(ad, "sweep", "-k", "-A", _auth_file(ad, ALICE), "--format", "jsonl",
                 "--processes", "2", *hosts, timeout=180)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert sorted(r["host"] for r in records) == sorted(hosts)
    assert all(r["status"] == "ok" for r in records), records
    assert ad.as_req_count(ALICE) == before + 1  # one AS-REQ, not one per host
