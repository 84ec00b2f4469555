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
    from smbsessions import auth, cli, levels
    from smbsessions.exitcodes import ExitCode

    assert cli._PASSWORD_ENV == auth.PASSWORD_ENV
    assert cli.DEFAULT_PORT == auth.SMB_PORT
    assert ", ".join(map(str, levels.VALID_LEVELS[:-1])) + f" or {levels.VALID_LEVELS[-1]}" == cli._LEVELS_TEXT
    assert cli.EXIT_DENIED is ExitCode.DENIED and cli.EXIT_INTERRUPTED is ExitCode.INTERRUPTED
