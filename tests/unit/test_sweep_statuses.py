"""Sweep statuses (``smbsessions.sweep.statuses``): declared once, the help and the README follow."""

from __future__ import annotations

from pathlib import Path

import pytest

from smbsessions.cli import main
from smbsessions.sweep.statuses import (
    ANSWERED,
    RETRIED_ON_RESUME,
    STATUS_DESCRIPTIONS,
    STATUSES,
    UNREACHABLE_STATUSES,
    SweepStatus,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_status_has_one_description_and_the_groups_use_only_statuses() -> None:
    assert set(STATUS_DESCRIPTIONS) == set(SweepStatus) and tuple(s.value for s in SweepStatus) == STATUSES
    assert set(SweepStatus) >= ANSWERED | RETRIED_ON_RESUME | UNREACHABLE_STATUSES
    assert not ANSWERED & UNREACHABLE_STATUSES and RETRIED_ON_RESUME <= UNREACHABLE_STATUSES


def test_the_help_lists_each_status_with_its_description(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for status in SweepStatus:
        assert f"{status.value} {' '.join(status.description.split())}" in help_text


def test_the_readme_names_every_status() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("* Statuses (`smbsessions.sweep.statuses.SweepStatus`)"):]
    section = section[: section.index("\n* ")]
    for status in SweepStatus:
        assert f"`{status.value}`" in section
