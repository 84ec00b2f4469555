"""`smbsessions serve` configuration parsing: accounts, the refusal of file shares, decoy shares."""

from __future__ import annotations

import argparse
import io

import pytest

from smbsessions.ntlm import nt_hash
from smbsessions.server import cli
from smbsessions.server.accounts import Account, parse_account
from smbsessions.server.shell import FILE_SHARES_REFUSED, build_server


def test_accounts_keep_colons_in_passwords_and_never_print_them() -> None:
    account = parse_account("alice:pa:ss:admin")
    assert (account.user, account.nt_hash, account.admin) == ("alice", nt_hash("pa:ss"), True)
    assert not parse_account("bob:pw").admin
    assert "pa:ss" not in repr(account) and nt_hash("pa:ss").hex() not in repr(account)
    with pytest.raises(ValueError):
        parse_account("nocolon")


@pytest.mark.parametrize("user", ["", "a\\b", "a/b", "a@b", "a\nb"])
def test_bad_account_names_are_refused(user: str) -> None:
    with pytest.raises(ValueError):
        Account.with_password(user, "pw")


def test_file_shares_are_refused_with_a_pointer_to_file_servers() -> None:
    with pytest.raises(ValueError, match="Samba or impacket-smbserver"):
        build_server("127.0.0.1", 0, shares=["data=/tmp"])
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["serve", "--port", "0", "--share", "data=/tmp", "--quiet"])
    out, err = io.StringIO(), io.StringIO()
    assert cli.run(args, out, err) == cli.EXIT_USAGE
    assert FILE_SHARES_REFUSED in err.getvalue()


def test_identity_carries_name_domain_comment_and_decoy_shares() -> None:
    server = build_server("127.0.0.1", 0, server_name="FILES01", domain="CORP", comment="finance",
                          decoy_shares=["data:Shared data", "C$"])
    try:
        identity = server.identity
        assert (identity.name, identity.domain, identity.comment) == ("FILES01", "CORP", "finance")
        assert [s.netname for s in identity.shares()] == ["IPC$", "data", "C$"]
    finally:
        server.stop()


def test_account_store_is_case_insensitive() -> None:
    server = build_server("127.0.0.1", 0, accounts=["Alice:pw:admin", "bob:pw2"])
    try:
        assert server.lookup_nt_hash("ALICE") == nt_hash("pw") and server.is_admin("alice")
        assert server.lookup_nt_hash("bob") == nt_hash("pw2") and not server.is_admin("BOB")
        assert server.lookup_nt_hash("carol") is None and not server.is_admin("carol")
    finally:
        server.stop()


def test_the_server_and_demo_never_import_impacket() -> None:
    import subprocess
    import sys

    code = ("import sys\n"
            "import smbsessions.cli, smbsessions.demo, smbsessions.server.cli, smbsessions.server.shell\n"
            "import smbsessions.server.srvsvc\n"
            "from smbsessions.server.shell import build_server\n"
            "build_server('127.0.0.1', 0, accounts=['a:b']).stop()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'impacket'))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_server_cli_validates_its_port() -> None:
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["serve", "--port", "0"]).port == 0
    assert parser.parse_args(["serve"]).port == 445
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--port", "70000"])
