"""NetrSessionEnum of 10,000 sessions from our server: our client against impacket's, same run.

    python bench/bench_server.py                  # 10k decoys, level 502, 5 rounds
    python bench/bench_server.py --sessions 2000 --rounds 3

Starts ``smbsessions serve`` in its own process (so the server's CPU does not
share the clients' GIL) with a ``--sessions-file`` of N decoys, then, in turn:

* ours: ``SessionClient`` connect + bind, then ``enum(502)`` with
  MAX_PREFERRED_LENGTH (one call, a multi-fragment reply), listed;
* impacket: ``SMBTransport`` connect + ``bind``, then ``srvs.hNetrSessionEnum``
  at 502 with MAX_PREFERRED_LENGTH, every entry's strings read out.

Connect and call are timed separately (best and median of the rounds). Both
must return N+1 entries (the decoys and the caller). Prints a markdown table
and whether the goal holds (our call >= 20x faster than impacket's).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from smbsessions.auth import Credentials
from smbsessions.client import SessionClient
from smbsessions.levels import SessionInfo

GOAL_RATIO = 20.0
ADMIN = ("alice", "alicepw")
DEFAULT_PORT = 4528


def decoys(count: int) -> list[dict[str, Any]]:
    return [
        SessionInfo(f"\\\\10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", f"user{i:05d}", i % 5,
                    100 + i, i % 60, 0, "SMB 3.1.1", "\\Device\\NetbiosSmb").to_win32(502)
        for i in range(count)
    ]


@contextmanager
def serve(count: int, port: int, accounts_lines: tuple[str, ...] = (f"{ADMIN[0]}:{ADMIN[1]}:admin",)
          ) -> Iterator[subprocess.Popen[str]]:
    """``smbsessions serve`` in its own process with ``count`` decoys; stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="smbsessions-bench-") as tmp:
        sessions = Path(tmp, "sessions.json")
        sessions.write_text(json.dumps(decoys(count)))
        accounts = Path(tmp, "accounts")
        accounts.write_text("".join(line + "\n" for line in accounts_lines))
        exe = Path(sys.executable).parent / "smbsessions"
        proc = subprocess.Popen(
            [str(exe), "serve", "--port", str(port), "--accounts-file", str(accounts),
             "--sessions-file", str(sessions), "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("listening on"):
                raise SystemExit(f"smbsessions serve did not start: {line!r}")
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def ours(port: int) -> tuple[float, float, int]:
    start = time.perf_counter()
    client = SessionClient("127.0.0.1", port, credentials=Credentials(username=ADMIN[0], password=ADMIN[1]),
                           timeout=60)
    client.open()
    connected = time.perf_counter()
    try:
        rows = [(s.client_name, s.user_name) for s in client.enum(502)]
    finally:
        done = time.perf_counter()
        client.close()
    return connected - start, done - connected, len(rows)


def impacket(port: int) -> tuple[float, float, int]:
    from impacket.dcerpc.v5 import srvs, transport
    from impacket.dcerpc.v5.dtypes import NULL

    start = time.perf_counter()
    rpc = transport.SMBTransport("127.0.0.1", dstport=port, filename=r"\srvsvc",
                                 username=ADMIN[0], password=ADMIN[1])
    dce = rpc.get_dce_rpc()
    dce.connect()
    dce.bind(srvs.MSRPC_UUID_SRVS)
    connected = time.perf_counter()
    try:
        answer = srvs.hNetrSessionEnum(dce, NULL, NULL, 502)
        buffer = answer["InfoStruct"]["SessionInfo"]["Level502"]["Buffer"]
        rows = [(item["sesi502_cname"], item["sesi502_username"]) for item in buffer]
    finally:
        done = time.perf_counter()
        dce.disconnect()
    return connected - start, done - connected, len(rows)


def measure(name: str, run: Callable[[int], tuple[float, float, int]], port: int, rounds: int,
            expected: int) -> dict[str, Any]:
    connects, calls = [], []
    for _ in range(rounds):
        connect, call, count = run(port)
        if count != expected:
            raise SystemExit(f"{name}: {count} entries, expected {expected}")
        connects.append(connect)
        calls.append(call)
        time.sleep(0.05)  # let the server forget the previous connection
    return {"name": name, "connect": connects, "call": calls}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--impacket-rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    expected = args.sessions + 1
    with serve(args.sessions, args.port):
        ours(args.port)  # warm-up: imports, first-connection costs
        impacket(args.port)
        results = [
            measure("smbsessions SessionClient.enum(502)", ours, args.port, args.rounds, expected),
            measure("impacket srvs.hNetrSessionEnum(502)", impacket, args.port, args.impacket_rounds, expected),
        ]
    print(f"NetrSessionEnum level 502, MAX_PREFERRED_LENGTH, {args.sessions:,} decoys + the caller, "
          f"server `smbsessions serve` in its own process, loopback\n")
    print("| client | connect+bind best (ms) | call best (ms) | call median (ms) | "
          "connect+call best (ms) | us/entry (call) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        best_call = min(r["call"])
        total = min(c + k for c, k in zip(r["connect"], r["call"], strict=True))
        print(f"| {r['name']} | {min(r['connect']) * 1e3:.1f} | {best_call * 1e3:.1f} | "
              f"{statistics.median(r['call']) * 1e3:.1f} | {total * 1e3:.1f} | {best_call / expected * 1e6:.1f} |")
    mine, theirs = results
    call_ratio = min(theirs["call"]) / min(mine["call"])
    total_ratio = min(c + k for c, k in zip(theirs["connect"], theirs["call"], strict=True)) / min(
        c + k for c, k in zip(mine["connect"], mine["call"], strict=True))
    print(f"\nratio impacket / ours: call {call_ratio:.1f}x, connect+call {total_ratio:.1f}x "
          f"(goal: call >= {GOAL_RATIO:.0f}x: {'met' if call_ratio >= GOAL_RATIO else 'NOT met'})")
    print("Both calls include the server's work (snapshot, rules, NDR encoding, fragmenting), "
          "which is the same for both clients.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
