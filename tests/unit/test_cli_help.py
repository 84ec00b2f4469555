"""Issue 9 item 25: ``python -m smbsessions``; every command's help documents every option,
its exit codes (from the one ExitCode enum) and two examples."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from smbsessions import cli
from smbsessions.exitcodes import COMMAND_CODES, MEANINGS

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
