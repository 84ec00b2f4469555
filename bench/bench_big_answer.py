"""Memory and time of one huge NetrSessionEnum answer through the real client.

    python -m bench.bench_big_answer                 # 1.7 M entries, ~267 MB stub
    python -m bench.bench_big_answer --entries 200000

A child process encodes the answer into a file (its memory is not measured). The
measured process serves that stub as DCE/RPC response fragments through an
in-memory pipe (read lazily from the file, as a socket would deliver it) to a
``SessionClient`` and walks the enumeration three ways, each in a fresh process:

* ``stream``: iterate the sessions, keep nothing (a streaming consumer);
* ``records``: ``[s.to_dict() for s in ...]`` (what the CLI and the sweep keep);
* ``budget``: the client's default budgets (1,000,000 entries / 256 MiB): refused.

Prints peak RSS (``ru_maxrss``), seconds, and the ratio of peak RSS to the stub size.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from smbsessions.auth import Credentials
from smbsessions.client import SessionClient
from smbsessions.dcerpc import HEADER_SIZE, MAX_FRAG, PType, RpcServerConnection, fragment
from smbsessions.levels import SessionInfo
from smbsessions.messages import EnumResponse
from smbsessions.ndr import encode_enum_response
from smbsessions.status import SmbSessionsError

ROOT = Path(__file__).resolve().parents[1]


def make(path: str, entries: int) -> None:
    infos = [SessionInfo(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", f"user-{i:07d}-" + "x" * 40,
                         None, 5, 0) for i in range(entries)]
    stub = encode_enum_response(EnumResponse(10, infos, entries, entries, 0))
    Path(path).write_bytes(stub)


class FilePipe:
    """Answers the bind, then serves the stub in ``path`` as response fragments."""

    closed = False
    local_address = ("127.0.0.9", 50000)
    dialect_name = "file"
    signing = encryption = False

    def __init__(self, path: str) -> None:
        self.server = RpcServerConnection()
        self.stream = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.total = os.path.getsize(path)
        self.room = (MAX_FRAG - HEADER_SIZE - 8) & ~7
        self.offset = 0
        self.call_id = 0

    def transceive(self, data: bytes, max_output: int = 65536, *, timeout: float | None = None,
                  deadline: float | None = None) -> bytes:
        calls = self.server.receive_data(data)
        if not calls:
            return self.server.next_pdu() or b""
        self.call_id = calls[0].call_id
        self.stream.seek(0)
        self.offset = 0
        return self.read()

    def write(self, data: bytes, *, timeout: float | None = None,
                  deadline: float | None = None) -> int:
        return len(data)

    def read(self, max_len: int = 65536, *, timeout: float | None = None,
                  deadline: float | None = None) -> bytes:
        chunk = self.stream.read(self.room)
        (pdu,) = fragment(PType.RESPONSE, self.call_id, 0, chunk, MAX_FRAG)
        flags = (0x01 if self.offset == 0 else 0) | (0x02 if self.offset + len(chunk) >= self.total else 0)
        self.offset += len(chunk)
        return pdu[:3] + bytes([flags]) + pdu[4:8] + pdu[8:12] + pdu[12:]

    def close(self) -> None:
        self.stream.close()


def measure(path: str, mode: str) -> None:
    pipe = FilePipe(path)
    client = SessionClient("bench", 445, credentials=Credentials("alice", password="x"), timeout=120,
                           deadline=time.monotonic() + 120, open_pipe=lambda *args, **kwargs: pipe)
    if mode != "budget":
        client.max_entries = 10**8
        client.max_bytes = 1 << 31
    client.open()
    start = time.monotonic()
    outcome = ""
    try:
        result = client.enum(10)
        if mode == "records":
            records = [session.to_dict() for session in result]
            outcome = f"{len(records):,} records"
        else:
            count = sum(1 for _ in result)
            outcome = f"{count:,} sessions"
    except SmbSessionsError as exc:
        outcome = f"refused: {exc}"
    seconds = time.monotonic() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    size = os.path.getsize(path)
    print(f"| {mode} | {size / 1e6:.0f} MB | {peak / 1e6:.0f} MB | {peak / size:.1f} | {seconds:.1f} s | {outcome[:70]} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_700_000)
    parser.add_argument("--measure", nargs=2, metavar=("PATH", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(*args.measure)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "stub.bin")
        subprocess.run([sys.executable, "-c", f"from bench import bench_big_answer as b; "
                        f"b.make({path!r}, {args.entries})"], check=True, cwd=ROOT)
        print("| mode | stub | peak RSS | RSS / stub | time | outcome |")
        print("|---|---|---|---|---|---|")
        for mode in ("stream", "records", "budget"):
            subprocess.run([sys.executable, "-m", "bench.bench_big_answer", "--measure", path, mode], check=True,
                           cwd=ROOT)


if __name__ == "__main__":
    main()
