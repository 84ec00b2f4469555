"""Issue 9 item 6: any string the server sends is written safely in every format."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from smbsessions.output import FORMATS, RecordWriter, json_text, printable, write_sessions

# A lone surrogate (valid NDR, decoded with surrogatepass), ESC/CSI, BEL, C1 CSI,
# DEL, bidi override and isolate, line separator, an astral tag character.
HOSTILE = "ws\udcff\x1b[31m\x07\x9b2J\x7f\u202eexe.txt\u2066\u2028\U000e0001"
RECORD = {"client_name": "\\\\" + HOSTILE, "user_name": HOSTILE, "num_opens": 1, "active_time": 3,
          "idle_time": 0, "user_flags": 0, "client_type": HOSTILE, "transport": "TCP",
          "client_name_raw": HOSTILE, "level": 502}
# What must never reach a terminal raw.
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_writes_a_hostile_name_as_utf8_without_controls(fmt: str) -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="")

    assert write_sessions([RECORD, RECORD], 502, fmt, stream) == 2
    stream.flush()

    text = raw.getvalue().decode("utf-8")  # strict: no surrogate got through
    assert not UNSAFE.search(text.replace("\r\n", "").replace("\n", ""))


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_escapes_are_lossless(fmt: str) -> None:
    out = io.StringIO()
    write_sessions([RECORD], 502, fmt, out)
    text = out.getvalue()
    records = json.loads(text) if fmt == "json" else [json.loads(line) for line in text.splitlines()]
    assert records == [RECORD]
    assert "\\udcff" in text and "\\u001b" in text and "\\u009b" in text and "\\u202e" in text


def test_csv_and_table_show_python_escapes() -> None:
    out = io.StringIO()
    write_sessions([RECORD], 502, "csv", out)
    row = next(csv.DictReader(io.StringIO(out.getvalue())))
    assert row["user_name"] == printable(HOSTILE)
    assert row["user_name"].startswith("ws\\udcff\\x1b[31m\\x07\\x9b2J\\x7f\\u202eexe.txt")
    table = io.StringIO()
    write_sessions([RECORD], 502, "table", table)
    assert "ws\\udcff\\x1b[31m" in table.getvalue()


def test_nested_values_in_csv_cells_are_escaped_too() -> None:
    out = io.StringIO()
    writer = RecordWriter(out, "csv", ["host", "users"])
    writer.write({"host": HOSTILE, "users": [HOSTILE]})
    writer.close()
    assert not UNSAFE.search(out.getvalue().replace("\r\n", ""))
    assert json.loads(next(csv.DictReader(io.StringIO(out.getvalue())))["users"]) == [HOSTILE]


def test_plain_text_is_untouched() -> None:
    value = {"user_name": "Jürgen Ωmega 東京", "n": 1}
    assert json_text(value) == json.dumps(value, ensure_ascii=False)
    assert printable("Jürgen Ωmega 東京 \\\\WS1") == "Jürgen Ωmega 東京 \\\\WS1"
