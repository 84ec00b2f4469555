"""The options the commands share (cli_args.py): credentials from every form, argument types."""

from __future__ import annotations

import io

import pytest

from smbsessions import cli, cli_args
from smbsessions.auth import Credentials


def parse(*argv: str) -> object:
    return cli.build_parser().parse_args(list(argv))


def test_credentials_from_every_form(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMBSESSIONS_PASSWORD", raising=False)
    args = parse("enum", "h", "-U", "CORP/alice%pw")
    creds = cli_args.credentials_from_args(args, None)  # type: ignore[arg-type]
    assert (creds.domain, creds.username, creds.password) == ("CORP", "alice", "pw")
    args = parse("enum", "h", "-U", "alice", "--hashes", ":" + "a" * 32)
    assert cli_args.credentials_from_args(args, None).nt_hash == "a" * 32  # type: ignore[arg-type]
    args = parse("enum", "h", "--anonymous")
    assert cli_args.credentials_from_args(args, None).anonymous  # type: ignore[arg-type]
    monkeypatch.setenv("SMBSESSIONS_PASSWORD", "from-env")
    args = parse("enum", "h", "-U", "alice")
    assert cli_args.credentials_from_args(args, None).password == "from-env"  # type: ignore[arg-type]
    with pytest.raises(cli_args.UsageError):
        cli_args.credentials_from_args(parse("enum", "h", "--anonymous", "-U", "x"), None)  # type: ignore[arg-type]
    with pytest.raises(cli_args.UsageError):
        cli_args.credentials_from_args(
            parse("enum", "h", "-U", "x"), Credentials(username="y", password="p")  # type: ignore[arg-type]
        )


def test_no_password_and_no_terminal_is_a_usage_error_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMBSESSIONS_PASSWORD", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    err = io.StringIO()
    code = cli.main(["enum", "127.0.0.1:9", "-U", "alice"], io.StringIO(), err)
    assert code == cli.EXIT_USAGE == 2
    assert "SMBSESSIONS_PASSWORD" in err.getvalue()


def test_level_is_validated() -> None:
    with pytest.raises(SystemExit):
        parse("enum", "h", "--level", "3")
