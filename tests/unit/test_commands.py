"""The CLI commands as people type them (issue 9 items 10-19, 22, 25), against a fake client.

``commands._connect`` is replaced by a fake ``SessionClient`` that records what was
asked in which order, so each behaviour is checked without a network.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from smbsessions import cli, commands
from smbsessions.client import Session
from smbsessions.exitcodes import ExitCode
from smbsessions.levels import SessionInfo
from smbsessions.status import NetApiError, NetApiStatus

HOST = "fs.example"
PORT = 4455


def session(cname: str, user: str, opens: int = 0, time: int = 5, own: bool = False) -> Any:
    info = SessionInfo(f"\\\\{cname}", user, opens, time, 0, 0)
    return OwnSession(info, 1, cname) if own else Session(info, 1, cname)


@dataclass(frozen=True)
class OwnSession:
    """Stands for client.Session with its own_session flag set (H2 adds the flag)."""

    info: SessionInfo
    level: int
    raw_client_name: str | None
    own_session: bool = True

    @property
    def client_name(self) -> str | None:
        return self.info.cname

    @property
    def user_name(self) -> str | None:
        return self.info.username

    def to_dict(self) -> dict[str, Any]:
        record = self.info.to_win32(self.level)
        record["client_name_raw"] = self.raw_client_name
        record["level"] = self.level
        return record


class FakeEnumeration:
    def __init__(self, sessions: list[Any], level: int = 1) -> None:
        self.sessions = sessions
        self.level = level
        self.attempts: list[tuple[int, int]] = []
        self.filtered_locally = False

    def __iter__(self) -> Iterator[Any]:
        return iter(self.sessions)


@dataclass
class FakeClient:
    sessions: list[Any] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    enum_error: int | None = None
    delete_error: int | None = None
    host: str = HOST
    port: int = PORT

    def __enter__(self) -> FakeClient:
        self.calls.append("logon")
        return self

    def __exit__(self, *exc: object) -> None:
        self.calls.append("close")

    def enum(self, level: int | None = None, client: str | None = None, user: str | None = None,
             max_length: int = 0) -> FakeEnumeration:
        self.calls.append(f"enum {level} {client} {user}")
        if self.enum_error is not None:
            raise NetApiError(self.enum_error, None, [(level or 502, self.enum_error)])
        matching = [s for s in self.sessions
                    if (user is None or s.user_name == user)
                    and (client is None or s.raw_client_name == client.lstrip("\\"))]
        if (client or user) and not matching:
            status = NetApiStatus.NERR_UserNotFound if user else NetApiStatus.NERR_ClientNameNotFound
            raise NetApiError(status, None, [(level or 1, status)])
        return FakeEnumeration(matching)

    def start_deadline(self, seconds: float | None = None) -> FakeClient:
        self.calls.append("deadline")
        return self

    def delete(self, client: str | None = None, user: str | None = None, *, force_all: bool = False) -> None:
        self.calls.append(f"delete {client} {user} {force_all}")
        if self.delete_error is not None:
            raise NetApiError(self.delete_error)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    client = FakeClient([session("10.0.0.7", "bob", 2), session("10.0.0.8", "bob", 1),
                         session("127.0.0.1", "alice", 0, own=True), session("10.0.0.9", "carol")])

    def connect(args: Any) -> FakeClient:
        commands.credentials_from_args(args, commands._parse_target(args).credentials)
        return client

    monkeypatch.setattr(commands, "_connect", connect)
    monkeypatch.delenv("SMBSESSIONS_PASSWORD", raising=False)
    return client


def run(*argv: str, stdin: str | None = None, monkeypatch: pytest.MonkeyPatch | None = None) -> Run:
    if monkeypatch is not None and stdin is not None:
        monkeypatch.setattr("sys.stdin", Terminal(stdin))
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out, err)
    return Run(code, out.getvalue(), err.getvalue())


AUTH = ["-U", "alice%pw"]


# ---- item 10: -v after the subcommand


@pytest.mark.parametrize(("argv", "level"), [
    (["-v", "enum", HOST, *AUTH], 20), (["enum", "-v", HOST, *AUTH], 20),
    (["enum", HOST, *AUTH, "-vv"], 10), (["-v", "enum", "-v", HOST, *AUTH], 10), (["enum", HOST, *AUTH], 30),
])
def test_verbose_before_or_after_the_subcommand(fake: FakeClient, argv: list[str], level: int) -> None:
    assert run(*argv).code == 0
    import logging
    assert logging.getLogger("smbsessions").level == level


# ---- item 12: a password in the --user filter


@pytest.mark.parametrize("command", [["enum"], ["get", "--client", "10.0.0.7"], ["delete", "--yes"]])
def test_password_in_user_filter_is_caught_before_anything_is_sent(fake: FakeClient, command: list[str]) -> None:
    result = run(command[0], HOST, *AUTH, *command[1:], "--user", "bob%Hunter2")
    assert result.code == ExitCode.USAGE
    assert "-U" in result.err
    assert "Hunter2" not in result.err + result.out
    assert not any(call.startswith(("enum", "delete")) for call in fake.calls)


# ---- item 13: get with several matching sessions


def test_get_says_when_several_sessions_match(fake: FakeClient) -> None:
    fake.sessions.append(session("10.0.0.7", "bob", 9))
    result = run("get", HOST, *AUTH, "--client", "10.0.0.7", "--user", "bob", "--format", "json")
    assert result.code == 0
    assert len(json.loads(result.out)) == 1
    assert "2 sessions of user bob from client 10.0.0.7" in result.err


def test_get_not_found_names_what_was_not_found(fake: FakeClient) -> None:
    result = run("get", HOST, *AUTH, "--client", "10.0.0.7", "--user", "dave")
    assert result.code == ExitCode.NOT_FOUND
    assert "NERR_UserNotFound (2221): no session of user dave from client 10.0.0.7 on fs.example:445" in result.err


# ---- item 14: delete


def test_delete_lists_what_goes_after_logon_then_asks(fake: FakeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run("delete", HOST, *AUTH, "--user", "bob", stdin="y\n", monkeypatch=monkeypatch)
    assert result.code == 0, result.err
    assert fake.calls[:2] == ["logon", "enum None None bob"]
    assert "will disconnect 2 sessions with 3 open files of user bob on fs.example:445" in result.err
    assert "\\\\10.0.0.7  bob  2 open files" in result.err
    assert result.err.index("will disconnect") < result.err.index("Disconnect? [y/N]")
    # --timeout restarts after the question: a person's think time is not the server's.
    assert fake.calls[2:4] == ["deadline", "delete None bob False"]
    assert result.out == "disconnected 2 sessions with 3 open files of user bob on fs.example:445\n"


def test_delete_declined_is_aborted_not_an_error(fake: FakeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run("delete", HOST, *AUTH, "--client", "10.0.0.9", stdin="n\n", monkeypatch=monkeypatch)
    assert result.code == ExitCode.ABORTED == 13
    assert "aborted: nothing was disconnected" in result.err
    assert "error" not in result.err
    assert not any(call.startswith("delete") for call in fake.calls)


def test_delete_confirmation_comes_after_a_failed_logon_never(monkeypatch: pytest.MonkeyPatch) -> None:
    from smbsessions.status import AuthenticationError

    def connect(args: Any) -> FakeClient:
        raise AuthenticationError("STATUS_LOGON_FAILURE")

    monkeypatch.setattr(commands, "_connect", connect)
    result = run("delete", HOST, *AUTH, "--user", "bob", stdin="y\n", monkeypatch=monkeypatch)
    assert result.code == ExitCode.AUTH
    assert "Disconnect?" not in result.err


def test_delete_nothing_matching_names_the_user(fake: FakeClient) -> None:
    result = run("delete", HOST, *AUTH, "--user", "dave", "--yes")
    assert result.code == ExitCode.NOT_FOUND
    assert "no session of user dave on fs.example:445: nothing to disconnect" in result.err
    assert "computer" not in result.err.lower()


def test_delete_all_goes_client_by_client_own_last(fake: FakeClient) -> None:
    result = run("delete", HOST, *AUTH, "--all", "--yes")
    assert result.code == 0, result.err
    deletes = [c for c in fake.calls if c.startswith("delete")]
    assert deletes == ["delete 10.0.0.7 None False", "delete 10.0.0.8 None False",
                       "delete 10.0.0.9 None False", "delete 127.0.0.1 None False"]
    assert result.out.startswith("disconnected 4 sessions with 3 open files (every session)")


def test_delete_all_unlisted_and_refused_explains(fake: FakeClient) -> None:
    fake.enum_error = NetApiStatus.ERROR_ACCESS_DENIED
    fake.delete_error = NetApiStatus.ERROR_INVALID_PARAMETER
    result = run("delete", HOST, *AUTH, "--all", "--yes")
    assert result.code == ExitCode.NET_API
    assert "delete None None True" in fake.calls
    error_at = result.err.index("ERROR_INVALID_PARAMETER")
    assert result.err.index("neither client nor user") > error_at


def test_ctrl_c_at_the_confirmation_is_130(fake: FakeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    class Interrupting(Terminal):
        def readline(self, size: int | None = -1) -> str:
            raise KeyboardInterrupt

    monkeypatch.setattr("sys.stdin", Interrupting(""))
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["delete", HOST, *AUTH, "--user", "bob"], out, err) == ExitCode.INTERRUPTED == 130


# ---- item 15: a filter matching nothing


@pytest.mark.parametrize(("fmt", "expected"), [("json", "[]\n"), ("jsonl", ""), ("table", "")])
def test_empty_filter_result_is_an_empty_list(fake: FakeClient, fmt: str, expected: str) -> None:
    result = run("enum", HOST, *AUTH, "--user", "dave", "--format", fmt)
    assert result.code == ExitCode.OK
    assert result.out == expected


def test_empty_filter_result_csv_has_its_header(fake: FakeClient) -> None:
    result = run("enum", HOST, *AUTH, "--user", "dave", "--format", "csv")
    assert result.code == 0
    assert result.out.splitlines() == [",".join(["host", "port", "client_name", "user_name", "num_opens",
                                                 "active_time", "idle_time", "user_flags", "client_name_raw",
                                                 "level", "own_session"])]


def test_fail_if_empty_keeps_exit_4_for_scripts(fake: FakeClient) -> None:
    result = run("enum", HOST, *AUTH, "--user", "dave", "--format", "json", "--fail-if-empty")
    assert result.code == ExitCode.NOT_FOUND == 4
    assert result.out == "[]\n"
    assert "no sessions of user dave" in result.err


# ---- item 16: exit codes


def test_ctrl_c_at_the_password_prompt_is_130(fake: FakeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", Terminal(""))

    def interrupt(prompt: str = "") -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr("getpass.getpass", interrupt)
    result = run("enum", HOST, "-U", "alice")
    assert result.code == ExitCode.INTERRUPTED


def test_missing_optional_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_import(commands: Any) -> None:
        raise ModuleNotFoundError("No module named 'impacket'", name="impacket")

    monkeypatch.setitem(cli.LAZY_COMMANDS, "serve", (broken_import, cli.LAZY_COMMANDS["serve"][1]))
    result = run("serve", "--port", "4455")
    assert result.code == ExitCode.USAGE
    assert "pip install 'smbsessions[server]'" in result.err
    assert "Traceback" not in result.err


def test_kerberos_without_gssapi_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    result = run("enum", HOST, "-k")
    assert result.code == ExitCode.USAGE
    assert "pip install 'smbsessions[kerberos]'" in result.err


@pytest.mark.parametrize("error", [ConnectionResetError(104, "Connection reset by peer"),
                                   ConnectionRefusedError(111, "refused")])
def test_a_raw_connection_error_is_unreachable(error: OSError) -> None:
    assert cli.exit_code_for(error) == ExitCode.UNREACHABLE


# ---- item 17: our own session, Samba's "just now"


def test_own_session_is_marked_and_just_now_normalised(fake: FakeClient) -> None:
    fake.sessions.append(session("10.0.0.10", "dave", 0, time=0xFFFFFFFF))
    as_json = json.loads(run("enum", HOST, *AUTH, "--format", "json").out)
    own = [r["own_session"] for r in as_json]
    assert own == [False, False, True, False, False]
    assert as_json[-1]["active_time"] == 0
    rows = list(csv.DictReader(io.StringIO(run("enum", HOST, *AUTH, "--format", "csv").out)))
    assert [r["own_session"] for r in rows] == ["False", "False", "True", "False", "False"]
    assert rows[-1]["active_time"] == "0"
    table = run("enum", HOST, *AUTH)
    assert "\\\\127.0.0.1 *" in table.out
    assert "<1s" in table.out
    assert "* = this command's own session" in table.err


# ---- item 18: the access-denied hint


@pytest.mark.parametrize(("level", "hint"), [([], commands.HARDENING_HINT), (["--level", "1"], commands.level_denied_hint(1))])
def test_denied_hint_fits_the_question_and_follows_the_error(fake: FakeClient, level: list[str], hint: str) -> None:
    fake.enum_error = NetApiStatus.ERROR_ACCESS_DENIED
    result = run("enum", HOST, *AUTH, *level)
    assert result.code == ExitCode.DENIED
    assert result.err.index("smbsessions: error: ERROR_ACCESS_DENIED (5)") < result.err.index(hint)
    assert len(hint) < 260


# ---- item 19: -A authentication file


def test_authentication_file(fake: FakeClient, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    original = commands.credentials_from_args

    def spy(args: Any, from_target: Any, prompt: Any = None) -> Any:
        seen.append(original(args, from_target, prompt))
        return seen[-1]

    monkeypatch.setattr(commands, "credentials_from_args", spy)
    path = tmp_path / "cred"
    path.write_text("# smbclient -A\nusername = alice\npassword = s3 cret\ndomain   = CORP\n")
    assert run("enum", HOST, "-A", str(path)).code == 0
    assert (seen[0].domain, seen[0].username, seen[0].password) == ("CORP", "alice", "s3 cret")
    path.write_text("username = alice\npasswd = oops-secret\n")
    bad = run("enum", HOST, "-A", str(path))
    assert bad.code == ExitCode.USAGE and "line 2" in bad.err and "oops-secret" not in bad.err
    both = run("enum", HOST, "-A", str(path), *AUTH)
    assert both.code == ExitCode.USAGE


def test_user_spec_help_tells_how_to_keep_the_password_out_of_ps() -> None:
    text = cli.build_parser(["enum"])._subparsers._group_actions[0].choices["enum"].format_help()  # type: ignore[union-attr]
    assert "'ps'" in text and "SMBSESSIONS_PASSWORD" in text and "-A FILE" in text and "prompt" in text


# ---- item 22: host, port, timestamp


def test_records_carry_host_port_and_timestamp(fake: FakeClient) -> None:
    for fmt in ("json", "jsonl"):
        text = run("enum", HOST, *AUTH, "--format", fmt).out
        records = json.loads(text) if fmt == "json" else [json.loads(line) for line in text.splitlines()]
        assert {(r["host"], r["port"]) for r in records} == {(HOST, PORT)}
        assert all(r["timestamp"].endswith("Z") and r["timestamp"][:2] == "20" for r in records)
    rows = list(csv.DictReader(io.StringIO(run("enum", HOST, *AUTH, "--format", "csv").out)))
    assert {(r["host"], r["port"]) for r in rows} == {(HOST, str(PORT))}


def test_error_messages_cannot_drive_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from smbsessions.status import ProtocolError

    def connect(args: Any) -> FakeClient:
        raise ProtocolError("the server said \x1b]0;owned\x07 and \u202egnp.exe\x9b")

    monkeypatch.setattr(commands, "_connect", connect)
    result = run("enum", HOST, *AUTH)
    assert result.code == ExitCode.PROTOCOL
    assert "\x1b" not in result.err and "\u202e" not in result.err and "\x9b" not in result.err
    assert "\\x1b]0;owned\\x07" in result.err


def test_delete_says_when_a_client_reconnected(fake: FakeClient) -> None:
    real_delete = fake.delete

    def delete_then_reconnect(client: str | None = None, user: str | None = None, *, force_all: bool = False) -> None:
        real_delete(client, user, force_all=force_all)
        # bob's 10.0.0.8 session went; 10.0.0.7 came straight back (Windows reconnects)
        fake.sessions[:] = [s for s in fake.sessions if s.raw_client_name != "10.0.0.8"]

    fake.delete = delete_then_reconnect  # type: ignore[method-assign]
    result = run("delete", HOST, *AUTH, "--user", "bob", "--yes")
    assert result.code == 0, result.err
    assert result.out.startswith("disconnected 2 sessions")
    assert "note: 1 matching session exists again (a client reconnected" in result.err
    assert fake.calls[-2:] == ["enum None None bob", "close"]


def test_delete_of_our_own_session_does_not_list_again(fake: FakeClient) -> None:
    result = run("delete", HOST, *AUTH, "--user", "alice", "--yes")
    assert result.code == 0, result.err
    assert [c for c in fake.calls if c.startswith("enum")] == ["enum None None alice"]


def test_delete_needs_a_qualifier_or_all_and_confirmation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    err = io.StringIO()
    assert cli.main(["delete", "127.0.0.1:9", "-U", "a%b"], io.StringIO(), err) == cli.EXIT_USAGE
    assert "--all" in err.getvalue()
    err = io.StringIO()
    assert cli.main(["delete", "127.0.0.1:9", "-U", "a%b", "--user", "x"], io.StringIO(), err) == cli.EXIT_USAGE
    assert "--yes" in err.getvalue()


def test_password_never_appears_in_errors() -> None:
    err = io.StringIO()
    code = cli.main(["enum", "127.0.0.1:9", "-U", "alice%S3cretPW", "--timeout", "2"], io.StringIO(), err)
    assert code == cli.EXIT_UNREACHABLE
    assert "S3cretPW" not in err.getvalue()
