"""The README agrees with the code: the exit-code table is ExitCode, the library example is complete."""

from __future__ import annotations

import re
from pathlib import Path

from smbsessions.exitcodes import MEANINGS, ExitCode

README = Path(__file__).resolve().parents[2] / "README.md"


def library_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Library", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_exit_code_table_is_the_enum() -> None:
    text = README.read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| (\d+) \| `\w+` \| (.+) \|$", text, re.M))
    assert rows == {str(int(code)): MEANINGS[code] for code in ExitCode}


def test_library_example_has_no_placeholder_and_no_delete() -> None:
    code = library_example()
    compile(code, "README.md", "exec")
    assert "..." not in code
    assert ".delete(" not in code and "NetSessionDel" not in code
    assert "PORT" in code and "len(" in code
