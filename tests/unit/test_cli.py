"""The root command line (cli.py): --help, --version and argument errors import no protocol library
(issue 13); every command's help documents its options, exit codes and examples (issue 9 item 25);
errors map to exit codes."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys

import pytest

from smbsessions import cli, cli_args
from smbsessions.exitcodes import COMMAND_CODES, MEANINGS, ExitCode
from smbsessions.status import (
    AuthenticationError,
    DecodeError,
    HostTimeoutError,
    HostUnreachableError,
    NetApiError,
    RpcFaultError,
)

HEAVY = ("smbprotocol", "spnego", "cryptography", "impacket")

PROBE = """
import json, sys
from smbsessions import cli
code = None
try:
    code = cli.main({argv!r})
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
print(json.dumps({{"code": code, "heavy": heavy}}), file=sys.__stdout__)
"""


def probe(argv: list[str]) -> dict[str, object]:
    run = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)], capture_output=True,
                         text=True, timeout=60, check=True, stdin=subprocess.DEVNULL)
    result: dict[str, object] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def test_importing_the_cli_pulls_in_no_protocol_library() -> None:
    run = subprocess.run(
        [sys.executable, "-c", f"import sys, smbsessions.cli; print(sorted(m for m in sys.modules "
                               f"if m.split('.')[0] in {HEAVY!r}))"],
        capture_output=True, text=True, timeout=60, check=True)
    assert run.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["--help"], 0),
        (["--version"], 0),
        (["enum", "--help"], 0),
        (["delete", "--help"], 0),
        (["enum"], 2),  # missing target
        (["enum", "h", "--level", "3"], 2),
        (["enum", "127.0.0.300", "-U", "a%b"], 2),  # bad target: found before connecting
        (["nosuchcommand"], 2),
    ],
)
def test_help_version_and_argument_errors_stay_light(argv: list[str], code: int) -> None:
    result = probe(argv)
    assert result == {"code": code, "heavy": []}


def test_the_clis_copies_of_shared_words_agree_with_their_homes() -> None:
    from smbsessions import addresses, auth, cli, cli_args, levels
    from smbsessions.exitcodes import ExitCode

    assert cli_args.PASSWORD_ENV == auth.PASSWORD_ENV
    assert cli_args.DEFAULT_PORT == addresses.SMB_PORT
    assert ", ".join(map(str, levels.VALID_LEVELS[:-1])) + f" or {levels.VALID_LEVELS[-1]}" == cli_args.LEVELS_TEXT
    assert cli.EXIT_DENIED is ExitCode.DENIED and cli.EXIT_INTERRUPTED is ExitCode.INTERRUPTED
    from smbsessions.rpc_auth import RpcAuthLevel

    assert tuple(level.value for level in RpcAuthLevel) == cli_args.RPC_AUTH_LEVELS


EXIT_PROBE = """
import atexit, gc, sys
from smbsessions import cli
atexit.register(lambda: print("atexit ran; frozen", gc.get_freeze_count() > 0, "enabled", gc.isenabled()))
sys.argv = ["smbsessions", *{argv!r}]
sys.stdout.write("buffered output ")
sys.exit(cli.main())
"""


@pytest.mark.parametrize(("argv", "code"), [(["enum", "127.0.0.300", "-U", "a%b"], 2), (["get", "--help"], 0)])
def test_program_entry_freezes_the_collector_keeps_output_and_atexit(argv: list[str], code: int) -> None:
    run = subprocess.run([sys.executable, "-c", EXIT_PROBE.format(argv=argv)], capture_output=True, text=True,
                         timeout=60, check=False, stdin=subprocess.DEVNULL)
    assert run.returncode == code, run.stderr
    assert run.stdout.startswith("buffered output ")
    if code == 2:  # argparse's --help exits inside main: the freeze is for commands that ran
        assert run.stdout.rstrip().endswith("atexit ran; frozen True enabled True")
    else:
        assert "atexit ran" in run.stdout


def test_a_broken_command_module_fails_loudly_instead_of_vanishing_from_help(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import smbsessions.server
    from smbsessions import cli

    monkeypatch.setitem(sys.modules, "smbsessions.server.cli", None)  # import of it raises ImportError
    monkeypatch.delattr(smbsessions.server, "cli", raising=False)  # an earlier test may have imported it
    with pytest.raises(ImportError) as raised:
        cli.build_parser()
    assert raised.value.name == "smbsessions.server.cli"
    with pytest.raises(ImportError):
        cli.build_parser(["serve"])
    assert "serve" in cli.build_parser(["enum"]).format_help()  # not chosen: listed, not imported


# ---- help texts (issue 9 item 25)



OWN_COMMANDS = ("enum", "get", "delete")


def subparser(command: str) -> argparse.ArgumentParser:
    parser = cli.build_parser([command])
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    chosen: argparse.ArgumentParser = action.choices[command]
    return chosen


def test_python_dash_m_smbsessions_runs() -> None:
    version = subprocess.run([sys.executable, "-m", "smbsessions", "--version"], capture_output=True,
                             text=True, timeout=60, check=False)
    usage = subprocess.run([sys.executable, "-m", "smbsessions", "enum"], capture_output=True, text=True,
                           timeout=60, check=False)
    assert version.returncode == 0 and version.stdout.startswith("smbsessions ")
    assert usage.returncode == 2 and "usage: smbsessions enum" in usage.stderr


@pytest.mark.parametrize("command", OWN_COMMANDS)
def test_every_option_has_help(command: str) -> None:
    for action in subparser(command)._actions:
        assert action.help, f"{command}: {action.option_strings or action.dest} has no help"


@pytest.mark.parametrize("command", OWN_COMMANDS)
def test_help_lists_exit_codes_and_two_examples(command: str) -> None:
    text = subparser(command).format_help()
    examples = text.split("examples:\n", 1)[1].split("\n\n", 1)[0]
    assert len(re.findall(rf"^  smbsessions {command} ", examples, re.M)) >= 2
    codes = text.split("exit codes:\n", 1)[1]
    for code in COMMAND_CODES[command]:
        assert re.search(rf"^  {int(code)}\s+{re.escape(MEANINGS[code])}$", codes, re.M), code


def test_main_help_lists_every_exit_code() -> None:
    text = cli.build_parser([]).format_help()
    for code, meaning in MEANINGS.items():
        assert f"{int(code):<4} {meaning}" in text


@pytest.mark.parametrize("command", ["sweep", "watch", "history"])
def test_other_commands_help_documents_options_exit_codes_and_examples(command: str) -> None:
    sub = subparser(command)
    assert all(action.help for action in sub._actions)
    text = sub.format_help()
    examples = text.split("examples:\n", 1)[1].split("\n\n", 1)[0]
    assert len(re.findall(rf"smbsessions {command} ", examples)) >= 2
    assert "exit codes:" in text


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (NetApiError(5), cli.EXIT_DENIED),
        (NetApiError(2221), cli.EXIT_NOT_FOUND),
        (NetApiError(2312), cli.EXIT_NOT_FOUND),
        (NetApiError(124), cli.EXIT_NET_API),
        (AuthenticationError("x"), cli.EXIT_AUTH),
        (HostUnreachableError("x"), cli.EXIT_UNREACHABLE),
        (HostTimeoutError("x"), cli.EXIT_UNREACHABLE),
        (RpcFaultError(0x1C010002), cli.EXIT_PROTOCOL),
        (DecodeError("x"), cli.EXIT_PROTOCOL),
        (cli_args.UsageError("x"), cli.EXIT_USAGE),
    ],
)
def test_exit_codes(error: Exception, code: int) -> None:
    assert cli.exit_code_for(error) == code


def test_serve_help_lists_its_exit_codes_from_the_one_enum() -> None:
    text = subparser("serve").format_help()
    codes = text.split("exit codes:\n", 1)[1]
    for code in COMMAND_CODES["serve"]:
        assert re.search(rf"^  {int(code)}\s+\S", codes, re.M), code
    assert MEANINGS[ExitCode.LISTEN_FAILED] in codes
