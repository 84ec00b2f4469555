"""`smbsessions serve` configuration parsing: shares and accounts."""

from __future__ import annotations

from pathlib import Path

import pytest

from smbsessions.server.accounts import parse_account
from smbsessions.server.engine import parse_share


def test_shares_are_read_write_unless_marked_ro(tmp_path: Path) -> None:
    share = parse_share(f"data={tmp_path}")
    assert (share.name, share.path, share.read_only) == ("data", str(tmp_path), False)
    assert parse_share(f"data={tmp_path}:ro").read_only
    assert not parse_share(f"data={tmp_path}:rw").read_only


def test_a_directory_whose_name_ends_in_ro_is_taken_as_is(tmp_path: Path) -> None:
    odd = tmp_path / "x:ro"
    odd.mkdir()
    share = parse_share(f"data={odd}")
    assert (share.path, share.read_only) == (str(odd), False)


@pytest.mark.parametrize("spec", ["data", "=x", "data=", "IPC$=/tmp"])
def test_bad_shares_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_share(spec)


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a directory"):
        parse_share(f"data={tmp_path / 'missing'}")


def test_accounts_keep_colons_in_passwords_and_never_print_them() -> None:
    account = parse_account("alice:pa:ss:admin")
    assert (account.user, account.password, account.admin) == ("alice", "pa:ss", True)
    assert not parse_account("bob:pw").admin
    assert "pa:ss" not in repr(account)
    with pytest.raises(ValueError):
        parse_account("nocolon")
