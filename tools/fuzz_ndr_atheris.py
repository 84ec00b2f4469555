"""Coverage-guided fuzzing of the NDR decoders with atheris (by hand, not part of the tests).

    .venv/bin/pip install atheris
    .venv/bin/python -m tools.fuzz_ndr_atheris -max_total_time=300 -max_len=4096

The corpus lives in $TMPDIR/smbsessions-fuzz-ndr-corpus, seeded with valid
stubs of every kind. The property is the one tests/unit/test_ndr_fuzz.py checks with hypothesis:
every input either raises DecodeError or decodes to a value that re-encodes
and decodes to itself. Anything else (another exception, a mismatch) is a
crash that atheris reports with the input that caused it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import atheris

with atheris.instrument_imports():
    from smbsessions import messages, ndr
    from smbsessions.levels import SessionInfo
    from smbsessions.status import DecodeError

_ROUND_TRIPS: list[tuple[Any, Any]] = [
    (ndr.decode_enum_response, ndr.encode_enum_response),
    (ndr.decode_enum_request, ndr.encode_enum_request),
    (ndr.decode_del_request, ndr.encode_del_request),
    (ndr.decode_del_response, ndr.encode_del_response),
]


def test_one_input(data: bytes) -> None:
    if not data:
        return
    decode, encode = _ROUND_TRIPS[data[0] % len(_ROUND_TRIPS)]
    try:
        value = decode(data[1:])
    except DecodeError:
        return
    again = decode(encode(value))
    if again != value:
        raise AssertionError(f"round trip changed {value!r} into {again!r}")


def seeds() -> list[bytes]:
    """Valid stubs of every kind, written into a corpus directory for a head start."""
    rows = [SessionInfo("\\\\10.0.0.1", "alice", 1, 2, 3, 0, "Windows", "\\Device\\Tcp"),
            SessionInfo(None, "\U0001F600", 4, 5, 6, 1, None, "x")]
    out = []
    for level in (0, 1, 2, 10, 502):
        out.append(b"\0" + ndr.encode_enum_response(messages.EnumResponse(level, rows, 2, 1, 234)))
        out.append(b"\1" + ndr.encode_enum_request(messages.EnumRequest(level, "s", "\\\\c", "u")))
    out.append(b"\2" + ndr.encode_del_request(messages.DelRequest(None, "\\\\c", "bob")))
    out.append(b"\3" + ndr.encode_del_response(2312))
    return out


def main() -> None:
    # Outside the repository: the corpus grows as atheris finds new paths.
    corpus = Path(tempfile.gettempdir()) / "smbsessions-fuzz-ndr-corpus"
    if not corpus.exists():
        corpus.mkdir()
        for index, seed in enumerate(seeds()):
            (corpus / f"seed{index:02d}").write_bytes(seed)
    atheris.Setup([*sys.argv, str(corpus)], test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
