"""Soak: many held SMB sessions while many clients enumerate, against `smbsessions serve`.

    python -m tools.soak_server                       # 200 sessions, 20 clients, 60 s
    python -m tools.soak_server --duration 20 --sessions 100 --clients 10

Starts ``smbsessions serve`` in its own process, holds N authenticated SMB
sessions from distinct loopback addresses (127.0.0.2, 127.0.0.3, ...; alice
and bob alternating), then runs C client threads for the duration. Each
thread connects with our SessionClient, enumerates level 502 ten times
(checking every held session is listed), disconnects, and starts over, so
connection churn is part of the load. Errors are counted with their first
messages; the server's RSS and thread count (from /proc/PID/status) are
sampled at the start, the middle and the end.

Prints a markdown summary. Goals: zero errors, every held session still
alive at the end, and flat memory (end RSS within 10% + 4 MiB of the middle
sample, i.e. no growth once warm).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bench.bench_server import ADMIN, serve
from smbsessions.auth import Credentials
from smbsessions.client import SessionClient
from tests.peers.holders import SessionHolder

CALLS_PER_CONNECTION = 10


def proc_status(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "Threads", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--port", type=int, default=4464)  # H1b's interop range
    args = parser.parse_args(argv)

    calls = Counter[str]()
    errors: Counter[str] = Counter()
    first_errors: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    credentials = Credentials(username=ADMIN[0], password=ADMIN[1])

    def worker(index: int) -> None:
        while not stop.is_set():
            try:
                with SessionClient("127.0.0.1", args.port, credentials=credentials, timeout=30) as client:
                    for _ in range(CALLS_PER_CONNECTION):
                        if stop.is_set():
                            break
                        sessions = list(client.enum(502))
                        held = sum(1 for s in sessions if s.client_name != "\\\\127.0.0.1")
                        with lock:
                            calls["enum"] += 1
                        if held != args.sessions:
                            raise AssertionError(f"{held} held sessions listed, expected {args.sessions}")
                with lock:
                    calls["connections"] += 1
            except Exception as exc:  # counted and reported, never fatal to the soak
                with lock:
                    errors[type(exc).__name__] += 1
                    if len(first_errors) < 5:
                        first_errors.append(f"client {index}: {exc!r}")
                time.sleep(0.1)

    with tempfile.TemporaryDirectory(prefix="smbsessions-soak-"), serve(0, args.port) as proc:
        samples: list[tuple[str, float, dict[str, int]]] = []
        opened = time.perf_counter()
        with SessionHolder("127.0.0.1", args.port, args.sessions,
                           credentials=[("alice", "alicepw")], workers=16, timeout=30) as holder:
            open_seconds = time.perf_counter() - opened
            samples.append(("start", 0.0, proc_status(proc.pid)))
            threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(args.clients)]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            stop.wait(args.duration / 2)
            samples.append(("middle", time.monotonic() - started, proc_status(proc.pid)))
            stop.wait(args.duration / 2)
            stop.set()
            for thread in threads:
                thread.join(60)
            elapsed = time.monotonic() - started
            time.sleep(0.5)  # let the server drop the clients' connections
            samples.append(("end", elapsed, proc_status(proc.pid)))
            alive = sum(holder.alive_all())
        exit_code = proc.poll()

    middle_rss = samples[1][2]["VmRSS"]
    end_rss = samples[2][2]["VmRSS"]
    flat = end_rss <= middle_rss * 1.10 + 4096
    print(f"## Soak: {args.sessions} held sessions, {args.clients} enumerating clients, "
          f"{args.duration:.0f} s, level 502\n")
    print(f"- held sessions opened in {open_seconds:.1f} s from {args.sessions} loopback addresses; "
          f"still alive at the end: {alive}/{args.sessions}")
    print(f"- enumerations: {calls['enum']} ({calls['enum'] / elapsed:.1f}/s), "
          f"client connections completed: {calls['connections']}")
    print(f"- errors: {sum(errors.values())} {dict(errors) if errors else ''}")
    for line in first_errors:
        print(f"  - {line}")
    print(f"- server still running after the soak: {'yes' if exit_code is None else f'NO (exit {exit_code})'}\n")
    print("| sample | t (s) | server RSS (MiB) | peak RSS (MiB) | server threads |")
    print("|---|---:|---:|---:|---:|")
    for name, at, status in samples:
        print(f"| {name} | {at:.0f} | {status['VmRSS'] / 1024:.1f} | {status['VmHWM'] / 1024:.1f} | "
              f"{status['Threads']} |")
    print(f"\nmemory flat (end within 10% + 4 MiB of middle): {'yes' if flat else 'NO'}")
    ok = not errors and alive == args.sessions and exit_code is None and flat
    print(f"goals (zero errors, all held sessions alive, flat memory): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
