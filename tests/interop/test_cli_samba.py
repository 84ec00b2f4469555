"""The ``smbsessions`` command line against a real Samba smbd.

Every command in every output format, parsed back; the exit codes that tell
apart "denied", "not found", "unreachable", "authentication failed" and
"protocol error"; the hints on stderr; deletions that really disconnect; and
the password (from SMBSESSIONS_PASSWORD, ``-U user%pw`` or an NT hash) never
appearing in any output, even with ``-vv``.

Most runs are in-process (``cli.main`` with string streams); the secrecy
checks run the real entry point in a subprocess so that everything the
process writes is captured, logging included.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from smbsessions import cli, commands
from smbsessions.auth import PASSWORD_ENV, nt_hash_of

from ..peers.holders import ANONYMOUS as HOLD_ANONYMOUS
from ..peers.holders import SessionHolder
from ..peers.samba import ALICE, BOB, SambaServer
from .test_client_samba import addresses, closed_port, private_samba, start_private_samba, unc, wait_until

__all__ = ["private_samba"]  # a fixture: imported to be found here

HoldSessions = Callable[..., SessionHolder]
FORMATS = ("table", "json", "jsonl", "csv")
LEVEL_1_HEADERS = ["Client", "User", "Opens", "Time", "Idle", "Flags"]
SMB1_ONLY = ["server min protocol = NT1", "server max protocol = NT1"]
# A password with the characters the command-line forms split on.
SECRET = "Zq7%pa55@Wo:rd/x"


@dataclass
class Run:
    code: int
    out: str
    err: str


def run_cli(*argv: str) -> Run:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out, err)
    return Run(code, out.getvalue(), err.getvalue())


def target(server: SambaServer) -> str:
    return f"{server.host}:{server.port}"


def as_alice(server: SambaServer) -> list[str]:
    return [target(server), "-U", f"{ALICE.name}%{ALICE.password}"]


def as_bob(server: SambaServer) -> list[str]:
    return [target(server), "-U", f"{BOB.name}%{BOB.password}"]


def parse(fmt: str, text: str) -> list[dict[str, Any]]:
    """Records back from any output format (table cells stay strings)."""
    if fmt == "json":
        records: list[dict[str, Any]] = json.loads(text)
        return records
    if fmt == "jsonl":
        return [json.loads(line) for line in text.splitlines()]
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(text)))
    lines = text.splitlines()
    headers = re.split(r"\s{2,}", lines[0].strip())
    assert set(lines[1]) <= {"-", " "}
    return [dict(zip(headers, re.split(r"\s{2,}", line.strip()), strict=True)) for line in lines[2:]]


def client_user(fmt: str, record: dict[str, Any]) -> tuple[str, str]:
    if fmt == "table":
        return record["Client"], record["User"]
    return record["client_name"], record["user_name"]


@pytest.fixture
def bob_sessions(samba: SambaServer, hold_sessions: HoldSessions) -> SessionHolder:
    """bob from 127.0.60.2-4, two open files each."""
    return hold_sessions(samba.host, samba.port, 3, credentials=[(BOB.name, BOB.password)],
                         source_ips=addresses(60, 3), open_files=2)


# --------------------------------------------------------------------------- enum and get


@pytest.mark.parametrize("fmt", FORMATS)
def test_enum_in_every_format(samba: SambaServer, bob_sessions: SessionHolder, fmt: str) -> None:
    result = run_cli("enum", *as_alice(samba), "--format", fmt)

    assert result.code == 0, result.err
    # No level asked for: Samba's refusals of the richer levels are reported.
    assert ("level 1 answered (tried first: 502 (ERROR_INVALID_LEVEL), 10 (ERROR_INVALID_LEVEL), "
            "2 (ERROR_INVALID_LEVEL))") in result.err
    records = parse(fmt, result.out)
    found = {client_user(fmt, r) for r in records}
    assert {(unc(a), "bob") for a in addresses(60, 3)} <= found
    own_client = "\\\\127.0.0.1" + (" *" if fmt == "table" else "")  # the CLI's own session, marked
    assert (own_client, "alice") in found
    mine = next(r for r in records if client_user(fmt, r) == (unc(addresses(60, 3)[0]), "bob"))
    if fmt == "table":
        assert list(mine) == LEVEL_1_HEADERS
        assert (mine["Opens"], mine["Flags"]) == ("2", "-")
        return
    if fmt == "csv":
        assert list(mine) == ["host", "port", "client_name", "user_name", "num_opens", "active_time",
                              "idle_time", "user_flags", "client_name_raw", "level", "own_session"]
        assert (mine["num_opens"], mine["level"], mine["client_name_raw"]) == ("2", "1", "127.0.60.2")
        assert (mine["host"], mine["port"], mine["own_session"]) == (samba.host, str(samba.port), "False")
        return
    assert mine["num_opens"] == 2 and mine["level"] == 1 and mine["user_flags"] == 0
    assert mine["client_name_raw"] == "127.0.60.2"
    assert (mine["host"], mine["port"], mine["own_session"]) == (samba.host, samba.port, False)
    assert all(0 <= r["active_time"] < 0xFFFFFFFF for r in records)  # Samba's "just now" as 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", mine["timestamp"])


def test_enum_normalises_v6_and_netbios_names(samba: SambaServer, hold_sessions: HoldSessions) -> None:
    hold_sessions(samba.host, samba.port, 1, credentials=[(BOB.name, BOB.password)],
                  source_ips=addresses(61, 1), calling_names="WS-ONE")
    hold_sessions("::1", samba.port, 1, credentials=[(BOB.name, BOB.password)])

    result = run_cli("enum", *as_alice(samba), "--level", "1", "--format", "jsonl")

    assert result.code == 0, result.err
    raw_by_name = {r["client_name"]: r["client_name_raw"] for r in parse("jsonl", result.out)}
    assert raw_by_name["\\\\ws-one"] == "ws-one"
    assert raw_by_name["\\\\[::1]"] == "::1"
    assert "tried first" not in result.err  # an explicit level is not a fallback


def test_enum_level_0_shows_only_client_names(samba: SambaServer, bob_sessions: SessionHolder) -> None:
    table = run_cli("enum", samba.host, "--port", str(samba.port), "-U", f"{ALICE.name}%{ALICE.password}",
                    "--level", "0")
    csv_out = run_cli("enum", *as_alice(samba), "--level", "0", "--format", "csv")

    assert table.code == csv_out.code == 0
    rows = parse("table", table.out)
    assert all(list(row) == ["Client"] for row in rows)
    assert {unc(a) for a in addresses(60, 3)} <= {row["Client"] for row in rows}
    assert csv_out.out.splitlines()[0] == "host,port,client_name,client_name_raw,level,own_session"


def test_enum_level_0_with_user_qualifier(samba: SambaServer, hold_sessions: HoldSessions) -> None:
    sources = addresses(68, 2)
    hold_sessions(samba.host, samba.port, 2, credentials=[(BOB.name, BOB.password), (ALICE.name, ALICE.password)],
                  source_ips=sources)

    bobs = run_cli("enum", *as_alice(samba), "--level", "0", "--user", "bob", "--format", "jsonl")
    nobody = run_cli("enum", *as_alice(samba), "--level", "0", "--client", sources[1], "--user", "bob")

    assert bobs.code == 0, bobs.err
    names = {r["client_name"] for r in parse("jsonl", bobs.out)}
    assert unc(sources[0]) in names and unc(sources[1]) not in names
    assert nobody.code == 0 and nobody.out == "" and "NERR_UserNotFound" in nobody.err


@pytest.mark.parametrize("level", ["2", "10", "502"])
def test_unsupported_level_exits_5_with_the_supported_levels(
    samba: SambaServer, bob_sessions: SessionHolder, level: str
) -> None:
    result = run_cli("enum", *as_alice(samba), "--level", level, "--format", "json")

    assert result.code == cli.EXIT_NET_API == 5
    assert result.out == ""
    assert "ERROR_INVALID_LEVEL (124)" in result.err
    assert "hint: this server supports level(s) 1, 0" in result.err


@pytest.mark.parametrize("fmt", FORMATS)
def test_enum_qualifiers_are_applied_locally(samba: SambaServer, bob_sessions: SessionHolder, fmt: str) -> None:
    wanted = addresses(60, 3)[1]
    result = run_cli("enum", *as_alice(samba), "--client", wanted, "--user", "BOB", "--format", fmt)

    assert result.code == 0, result.err
    assert [client_user(fmt, r) for r in parse(fmt, result.out)] == [(unc(wanted), "bob")]
    assert "the server ignored the client/user qualifiers; they were applied locally" in result.err


@pytest.mark.parametrize(
    ("qualifiers", "name"),
    [
        (["--user", "nosuchuser"], "NERR_UserNotFound (2221)"),
        (["--client", "\\\\nosuchclient"], "NERR_ClientNameNotFound (2312)"),
        (["--client", "127.0.60.2", "--user", "alice"], "NERR_UserNotFound (2221)"),
    ],
)
def test_enum_qualifiers_matching_nothing_are_an_empty_list(
    samba: SambaServer, bob_sessions: SessionHolder, qualifiers: list[str], name: str
) -> None:
    as_json = run_cli("enum", *as_alice(samba), *qualifiers, "--format", "json")
    as_csv = run_cli("enum", *as_alice(samba), *qualifiers, "--format", "csv")
    strict = run_cli("enum", *as_alice(samba), *qualifiers, "--format", "jsonl", "--fail-if-empty")

    assert (as_json.code, as_json.out) == (0, "[]\n")
    assert as_csv.code == 0 and as_csv.out.splitlines()[0].startswith("host,port,client_name")
    assert len(as_csv.out.splitlines()) == 1
    assert strict.code == cli.EXIT_NOT_FOUND == 4
    assert strict.out == ""
    assert name.split(" ")[0] in strict.err


@pytest.mark.parametrize("fmt", FORMATS)
def test_get_in_every_format(samba: SambaServer, bob_sessions: SessionHolder, fmt: str) -> None:
    wanted = addresses(60, 3)[2]
    result = run_cli("get", *as_alice(samba), "--client", unc(wanted), "--user", "bob", "--format", fmt)

    assert result.code == 0, result.err
    records = parse(fmt, result.out)
    assert [client_user(fmt, r) for r in records] == [(unc(wanted), "bob")]
    opens = records[0]["Opens" if fmt == "table" else "num_opens"]
    assert str(opens) == "2"


def test_get_failures(samba: SambaServer, bob_sessions: SessionHolder) -> None:
    wanted = addresses(60, 3)[0]
    wrong_user = run_cli("get", *as_alice(samba), "--client", wanted, "--user", "alice")
    no_client = run_cli("get", *as_alice(samba), "--client", "nosuchclient", "--user", "bob")
    level_10 = run_cli("get", *as_alice(samba), "--client", wanted, "--user", "bob", "--level", "10")

    assert (wrong_user.code, no_client.code, level_10.code) == (4, 4, 5)
    assert "NERR_UserNotFound" in wrong_user.err
    assert "NERR_ClientNameNotFound" in no_client.err
    assert "hint: this server supports level(s) 1, 0" in level_10.err


# --------------------------------------------------------------------------- refusals and failures


@pytest.mark.parametrize("level", [None, "0", "1", "2", "10", "502"])
def test_plain_user_is_denied_at_every_level(samba: SambaServer, level: str | None) -> None:
    extra = ["--level", level] if level else []
    result = run_cli("enum", *as_bob(samba), *extra)

    assert result.code == cli.EXIT_DENIED == 3
    assert result.out == ""
    hint = commands.HARDENING_HINT if level is None else commands.level_denied_hint(int(level))
    assert result.err.index("ERROR_ACCESS_DENIED (5)") < result.err.index(hint)


def test_anonymous_is_denied(samba: SambaServer) -> None:
    result = run_cli("enum", target(samba), "--anonymous", "--format", "json")

    assert result.code == 3
    assert "ERROR_ACCESS_DENIED" in result.err
    assert "level 0: ERROR_ACCESS_DENIED" in result.err  # every level was tried


def test_anonymous_session_shows_as_guest(samba: SambaServer, hold_sessions: HoldSessions) -> None:
    hold_sessions(samba.host, samba.port, 1, credentials=[HOLD_ANONYMOUS], source_ips=addresses(62, 1))

    table = run_cli("get", *as_alice(samba), "--client", addresses(62, 1)[0], "--user", "nobody")

    assert table.code == 0, table.err
    assert parse("table", table.out)[0]["Flags"] == "SESS_GUEST"


def test_outcomes_are_distinguishable(samba: SambaServer, bob_sessions: SessionHolder) -> None:
    smb1_only = start_private_samba(warm=False, extra_global=SMB1_ONLY)
    try:
        protocol = run_cli("enum", *as_alice(smb1_only))
    finally:
        smb1_only.stop()
    ok = run_cli("enum", *as_alice(samba), "--format", "json")
    denied = run_cli("enum", *as_bob(samba), "--format", "json")
    not_found = run_cli("enum", *as_alice(samba), "--user", "nosuchuser", "--format", "json")
    unreachable = run_cli("enum", f"127.0.0.1:{closed_port()}", "-U", "alice%x", "--timeout", "5")
    bad_password = run_cli("enum", target(samba), "-U", "alice%wrong-password")
    no_password = run_cli("enum", target(samba), "-U", "alice")  # stdin is no terminal here

    codes = {
        "ok": ok.code, "denied": denied.code, "not found": not_found.code,
        "unreachable": unreachable.code, "authentication": bad_password.code,
        "protocol": protocol.code,
    }
    assert codes == {"ok": 0, "denied": 3, "not found": 0, "unreachable": 7, "authentication": 6,
                     "protocol": 8}
    assert json.loads(ok.out)  # Samba always lists at least the caller's own session
    assert "connection refused" in unreachable.err
    assert "STATUS_LOGON_FAILURE" in bad_password.err
    assert "SMB1" in protocol.err
    assert no_password.code == 2 and PASSWORD_ENV in no_password.err


def test_nt_hash_logon(samba: SambaServer, bob_sessions: SessionHolder) -> None:
    result = run_cli("enum", target(samba), "-U", ALICE.name, "--hashes", f":{nt_hash_of(ALICE.password)}",
                     "--format", "jsonl")

    assert result.code == 0, result.err
    assert (unc(addresses(60, 1)[0]), "bob") in {client_user("jsonl", r) for r in parse("jsonl", result.out)}


# --------------------------------------------------------------------------- delete


def test_delete_disconnects_the_named_client(samba: SambaServer, hold_sessions: HoldSessions) -> None:
    sources = addresses(63, 3)
    held = hold_sessions(samba.host, samba.port, 3, credentials=[(BOB.name, BOB.password)], source_ips=sources)

    result = run_cli("delete", *as_alice(samba), "--client", sources[1], "--yes")

    assert result.code == 0, result.err
    assert result.out == f"disconnected 1 session with 0 open files from client {sources[1]} on {target(samba)}\n"
    wait_until(lambda: not held.alive(1), "the named client is cut off")
    assert held.alive(0) and held.alive(2)
    listed = run_cli("enum", *as_alice(samba), "--format", "jsonl")
    names = {r["client_name"] for r in parse("jsonl", listed.out)}
    assert unc(sources[1]) not in names and unc(sources[0]) in names


def test_delete_refusals(samba: SambaServer, hold_sessions: HoldSessions) -> None:
    sources = addresses(64, 1)
    held = hold_sessions(samba.host, samba.port, 1, credentials=[(BOB.name, BOB.password)], source_ips=sources)

    unqualified = run_cli("delete", *as_alice(samba), "--yes")
    unconfirmed = run_cli("delete", *as_alice(samba), "--client", sources[0])
    plain_user = run_cli("delete", *as_bob(samba), "--client", sources[0], "--yes")
    no_match = run_cli("delete", *as_alice(samba), "--client", "nosuchclient", "--yes")

    assert unqualified.code == unconfirmed.code == cli.EXIT_USAGE
    assert "--all" in unqualified.err
    assert "--yes" in unconfirmed.err
    assert plain_user.code == 3 and "ERROR_ACCESS_DENIED" in plain_user.err
    # Listed first: nothing matches, so nothing is sent (Samba would say ERROR_ACCESS_DENIED).
    assert no_match.code == cli.EXIT_NOT_FOUND
    assert "no session from client nosuchclient" in no_match.err
    assert commands.DELETE_DENIED_HINT in plain_user.err
    assert "" == plain_user.out == no_match.out == unqualified.out
    assert held.alive(0)


def test_delete_own_session_by_qualifiers_succeeds(
    private_samba: SambaServer, hold_sessions: HoldSessions
) -> None:
    server = private_samba
    bystanders = hold_sessions(server.host, server.port, 2, credentials=[(BOB.name, BOB.password)],
                               source_ips=addresses(65, 2))

    # Samba kills the CLI's own connection before replying.
    result = run_cli("delete", *as_alice(server), "--client", "127.0.0.1", "--user", "alice", "--yes")

    assert result.code == 0, result.err
    assert result.out.startswith("disconnected 1 session with")
    assert result.out.endswith(f"of user alice from client 127.0.0.1 on {target(server)}\n")
    assert bystanders.alive_all() == [True, True]


def test_delete_all_disconnects_everyone(private_samba: SambaServer, hold_sessions: HoldSessions) -> None:
    server = private_samba
    held = hold_sessions(server.host, server.port, 3,
                         credentials=[(BOB.name, BOB.password), (ALICE.name, ALICE.password)],
                         source_ips=addresses(66, 3), open_files=1)

    result = run_cli("delete", *as_alice(server), "--all", "--yes")

    assert result.code == 0, result.err
    assert re.match(r"disconnected \d+ sessions with \d+ open files \(every session\)", result.out)
    wait_until(lambda: not any(held.alive_all()), "every session is cut off")


# --------------------------------------------------------------------------- secrets


@pytest.fixture
def secret_alice(private_samba: SambaServer) -> Iterator[SambaServer]:
    """alice's password on the private server set to SECRET for one test, then restored."""
    def set_password(password: str) -> None:
        subprocess.run(["smbpasswd", "-c", str(private_samba.conf), "-s", ALICE.name],
                       input=f"{password}\n{password}\n", text=True, env=private_samba.tool_env(),
                       check=True, capture_output=True, timeout=30)

    set_password(SECRET)
    try:
        yield private_samba
    finally:
        set_password(ALICE.password)


def run_process(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "smbsessions.cli", *argv], capture_output=True, text=True,
                          env=environment, timeout=60, check=False, stdin=subprocess.DEVNULL)


def test_password_from_environment_never_printed(secret_alice: SambaServer, hold_sessions: HoldSessions) -> None:
    server = secret_alice
    hold_sessions(server.host, server.port, 2, credentials=[(BOB.name, BOB.password)], source_ips=addresses(67, 2))
    secret_hash = nt_hash_of(SECRET)
    runs = {
        "env": run_process("-vv", "enum", target(server), "-U", ALICE.name, "--format", "jsonl",
                           env={PASSWORD_ENV: SECRET}),
        "argv": run_process("-vv", "get", target(server), "-U", f"{ALICE.name}%{SECRET}",
                            "--client", addresses(67, 2)[0], "--user", "bob", "--format", "json"),
        "hash": run_process("-vv", "enum", target(server), "-U", ALICE.name, "--hashes", secret_hash,
                            "--level", "1", "--format", "csv"),
        "impacket form": run_process("-vv", "enum", f"{ALICE.name}:{SECRET}@{target(server)}", "--level", "10"),
        "failed logon": run_process("-vv", "enum", target(server), "-U", ALICE.name,
                                    env={PASSWORD_ENV: SECRET + "x"}),
    }

    assert {name: run.returncode for name, run in runs.items()} == {
        "env": 0, "argv": 0, "hash": 0, "impacket form": 5, "failed logon": 6,
    }
    records = parse("jsonl", runs["env"].stdout)
    assert {(unc(a), "bob") for a in addresses(67, 2)} <= {client_user("jsonl", r) for r in records}
    assert "NetrSessionEnum level 1" in runs["env"].stderr  # -vv really logged the exchange
    for name, run in runs.items():
        everything = run.stdout + run.stderr
        for secret in (SECRET, secret_hash, secret_hash.upper(), SECRET.encode("utf-16-le").hex()):
            assert secret not in everything, f"{name}: secret leaked"


# --------------------------------------------------------------------------- issue 9: the CLI as people type it


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_unc_and_smb_url_targets(samba: SambaServer, bob_sessions: SessionHolder) -> None:
    auth = ["-U", f"{ALICE.name}%{ALICE.password}"]
    unc_form = run_cli("enum", f"\\\\{samba.host}", "--port", str(samba.port), *auth, "--format", "jsonl")
    url_form = run_cli("enum", f"smb://{samba.host}:{samba.port}/IPC$", *auth, "--format", "jsonl")
    bad = run_cli("enum", f"127.0.0.300:{samba.port}", *auth)

    assert unc_form.code == url_form.code == 0, unc_form.err + url_form.err
    for run in (unc_form, url_form):
        assert {(unc(a), "bob") for a in addresses(60, 3)} <= {client_user("jsonl", r) for r in parse("jsonl", run.out)}
    assert bad.code == cli.EXIT_USAGE and "not a valid IPv4 address" in bad.err


def test_delete_shows_sessions_and_open_files_then_aborts_on_no(
    samba: SambaServer, hold_sessions: HoldSessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = addresses(69, 2)
    held = hold_sessions(samba.host, samba.port, 2, credentials=[(BOB.name, BOB.password)],
                         source_ips=sources, open_files=2)
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))

    result = run_cli("delete", *as_alice(samba), "--client", sources[0])

    assert result.code == cli.EXIT_ABORTED == 13
    assert f"will disconnect 1 session with 2 open files from client {sources[0]}" in result.err
    assert f"{unc(sources[0])}  bob  2 open files" in result.err
    assert "aborted: nothing was disconnected" in result.err
    assert held.alive_all() == [True, True]


def test_authentication_file_keeps_the_password_out_of_argv(
    secret_alice: SambaServer, hold_sessions: HoldSessions, tmp_path: Any
) -> None:
    server = secret_alice
    credentials = tmp_path / "alice.cred"
    credentials.write_text(f"username = {ALICE.name}\npassword = {SECRET}\n")

    run = run_process("enum", target(server), "-A", str(credentials), "--format", "jsonl")

    assert run.returncode == 0, run.stderr
    assert SECRET not in run.stdout + run.stderr
    assert ("\\\\127.0.0.1", "alice") in {client_user("jsonl", r) for r in parse("jsonl", run.stdout)}


def test_connection_reset_before_negotiate_is_unreachable() -> None:
    import socket
    import struct
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]

    def reset_each() -> None:
        for _ in range(4):
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # RST

    thread = threading.Thread(target=reset_each, daemon=True)
    thread.start()
    try:
        result = run_cli("enum", f"127.0.0.1:{port}", "-U", "alice%x", "--timeout", "5")
    finally:
        listener.close()

    assert result.code == cli.EXIT_UNREACHABLE == 7, result.err
    assert "Traceback" not in result.err


def test_readme_library_example_runs_as_written(samba: SambaServer, bob_sessions: SessionHolder,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from ..unit.test_readme import library_example

    code = library_example()
    # Only the lines naming the server and account change: the rest runs as written.
    code = code.replace('HOST, PORT = "127.0.0.1", 4455', f'HOST, PORT = "{samba.host}", {samba.port}')
    code = code.replace('Credentials(username="alice", password="pw")',
                        f'Credentials(username="{ALICE.name}", password="{ALICE.password}")')
    exec(compile(code, "README.md", "exec"), {})

    printed = capsys.readouterr().out
    assert re.search(rf"level 1: \d+ session\(s\) on {re.escape(samba.host)}:{samba.port}", printed)
    assert f"{unc(addresses(60, 3)[0])} bob 2" in printed


@pytest.mark.parametrize("fmt", FORMATS)
def test_own_session_is_marked_in_every_format(samba: SambaServer, bob_sessions: SessionHolder, fmt: str) -> None:
    result = run_cli("enum", *as_alice(samba), "--format", fmt)

    assert result.code == 0, result.err
    records = parse(fmt, result.out)
    if fmt == "table":
        marked = [r for r in records if r["Client"].endswith(" *")]
        assert [(r["Client"], r["User"]) for r in marked] == [("\\\\127.0.0.1 *", "alice")]
        assert "* = this command's own session" in result.err
        return
    own = [client_user(fmt, r) for r in records if r["own_session"] in (True, "True")]
    assert own == [("\\\\127.0.0.1", "alice")]
    assert all(r["own_session"] in (False, "False") for r in records if client_user(fmt, r)[1] == "bob")
