"""Issue 13: --help, --version and argument errors import no protocol library."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

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
    from smbsessions import auth, cli, cli_args, levels
    from smbsessions.exitcodes import ExitCode

    assert cli_args.PASSWORD_ENV == auth.PASSWORD_ENV
    assert cli_args.DEFAULT_PORT == auth.SMB_PORT
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
    from smbsessions import cli

    monkeypatch.setitem(sys.modules, "smbsessions.server.cli", None)  # import of it raises ImportError
    with pytest.raises(ImportError) as raised:
        cli.build_parser()
    assert raised.value.name == "smbsessions.server.cli"
    with pytest.raises(ImportError):
        cli.build_parser(["serve"])
    assert "serve" in cli.build_parser(["enum"]).format_help()  # not chosen: listed, not imported
