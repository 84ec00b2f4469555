"""The server core's benchmarks, each against the incumbent in the same run.

    python -m bench.bench_server                  # everything below
    python -m bench.bench_server --only decoys --sessions 2000 --rounds 3
    python -m bench.bench_server --only warm      # needs root and Samba (make peers)
    python -m bench.bench_server --only idle --idle 5000

1. ``decoys``: NetrSessionEnum of 10,000 decoys at level 502 (MAX_PREFERRED_LENGTH, and
   paged with PreferedMaximumLength 4096), our client against impacket's.
2. ``warm``: warm enumerations per second at level 1 with 1, 4 and 16 clients (one
   process each, one bound pipe each), our server against Samba's smbd, and the
   server CPU per call (from /proc).
3. ``idle``: N idle authenticated connections held against ``smbsessions serve``:
   server RSS per connection, and an administrator's connect+enumerate meanwhile.

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
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from smbsessions.auth import Credentials
from smbsessions.client import SessionClient
from smbsessions.levels import SessionInfo

GOAL_RATIO = 20.0
ADMIN = ("alice", "alicepw")
DEFAULT_PORT = 4463  # H1b's interop range


def decoys(count: int) -> list[dict[str, Any]]:
    return [
        SessionInfo(f"\\\\10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", f"user{i:05d}", i % 5,
                    100 + i, i % 60, 0, "SMB 3.1.1", "\\Device\\NetbiosSmb").to_win32(502)
        for i in range(count)
    ]


@contextmanager
def serve(count: int, port: int, accounts_lines: tuple[str, ...] = (f"{ADMIN[0]}:{ADMIN[1]}:admin",),
          extra: tuple[str, ...] = ()) -> Iterator[subprocess.Popen[str]]:
    """``smbsessions serve`` in its own process with ``count`` decoys; stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="smbsessions-bench-") as tmp:
        sessions = Path(tmp, "sessions.json")
        sessions.write_text(json.dumps(decoys(count)))
        accounts = Path(tmp, "accounts")
        accounts.write_text("".join(line + "\n" for line in accounts_lines))
        exe = Path(sys.executable).parent / "smbsessions"
        proc = subprocess.Popen(
            [str(exe), "serve", "--port", str(port), "--accounts-file", str(accounts),
             "--sessions-file", str(sessions), "--quiet", *extra],
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


def ours_paged(port: int) -> tuple[float, float, int]:
    start = time.perf_counter()
    client = SessionClient("127.0.0.1", port, credentials=Credentials(username=ADMIN[0], password=ADMIN[1]),
                           timeout=60)
    client.open()
    connected = time.perf_counter()
    try:
        rows = [(s.client_name, s.user_name) for s in client.enum(502, max_length=4096)]
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


def bench_decoys(args: argparse.Namespace) -> None:
    expected = args.sessions + 1
    with serve(args.sessions, args.port):
        ours(args.port)  # warm-up: imports, first-connection costs
        impacket(args.port)
        results = [
            measure("smbsessions SessionClient.enum(502)", ours, args.port, args.rounds, expected),
            measure("smbsessions enum(502), PreferedMaximumLength 4096 (paged)", ours_paged, args.port,
                    args.rounds, expected),
            measure("impacket srvs.hNetrSessionEnum(502)", impacket, args.port, args.impacket_rounds, expected),
        ]
    print(f"\n## 1. NetrSessionEnum level 502, {args.sessions:,} decoys + the caller, server "
          f"`smbsessions serve` in its own process, loopback\n")
    print("| client | connect+bind best (ms) | call best (ms) | call median (ms) | "
          "connect+call best (ms) | us/entry (call) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        best_call = min(r["call"])
        total = min(c + k for c, k in zip(r["connect"], r["call"], strict=True))
        print(f"| {r['name']} | {min(r['connect']) * 1e3:.1f} | {best_call * 1e3:.1f} | "
              f"{statistics.median(r['call']) * 1e3:.1f} | {total * 1e3:.1f} | {best_call / expected * 1e6:.1f} |")
    mine, paged, theirs = results
    call_ratio = min(theirs["call"]) / min(mine["call"])
    print(f"\nratio impacket / ours: call {call_ratio:.1f}x "
          f"(goal: call >= {GOAL_RATIO:.0f}x: {'met' if call_ratio >= GOAL_RATIO else 'NOT met'}); "
          f"paged 4096 best {min(paged['call']):.2f} s (goal: <= {PAGED_BEFORE / 3:.1f} s, "
          f"3x faster than the impacket engine's {PAGED_BEFORE} s: "
          f"{'met' if min(paged['call']) <= PAGED_BEFORE / 3 else 'NOT met'})")


PAGED_BEFORE = 4.5  # seconds, 10k decoys paged at 4096 on the impacket engine (README before issue #8)


# ---------------------------------------------------------------- 2. warm enumerations/s


def _cpu_seconds(pids: list[int], children: bool) -> float:
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used = int(fields[11]) + int(fields[12])
        if children:
            used += int(fields[13]) + int(fields[14])
        total += used / tick
    return total


def _pids_matching(text: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if text in Path(f"/proc/{entry}/cmdline").read_bytes().decode("utf-8", "replace"):
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def _warm_worker(host: str, port: int, seconds: float, queue: Any, go: Any) -> None:
    client = SessionClient(host, port, credentials=Credentials(username=ADMIN[0], password=ADMIN[1]),
                           timeout=30)
    client.open()
    try:
        list(client.enum(1))
        queue.put("ready")
        go.wait()
        calls = 0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            list(client.enum(1))
            calls += 1
        queue.put(calls)
    finally:
        client.close()


def warm_rate(host: str, port: int, clients: int, seconds: float, cpu: Callable[[], float]) -> tuple[float, float]:
    """(calls per second, server CPU ms per call) with ``clients`` processes."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    queues = [ctx.Queue() for _ in range(clients)]
    go = ctx.Event()
    procs = [ctx.Process(target=_warm_worker, args=(host, port, seconds, q, go)) for q in queues]
    for p in procs:
        p.start()
    for q in queues:
        assert q.get(timeout=120) == "ready"
    cpu_before = cpu()
    go.set()
    calls = sum(int(q.get(timeout=seconds + 120)) for q in queues)
    cpu_used = cpu() - cpu_before
    for p in procs:
        p.join(30)
    return calls / seconds, cpu_used / max(calls, 1) * 1e3


def bench_warm(args: argparse.Namespace) -> None:
    from tests.peers.samba import SambaServer, port_is_free, unavailable_reason

    sessions = 50  # decoys on ours; Samba lists its real sessions (the clients')
    rows = []
    with serve(sessions, args.port) as proc:
        for n in (1, 4, 16):
            rate, cpu = warm_rate("127.0.0.1", args.port, n, args.seconds,
                                  lambda: _cpu_seconds([proc.pid], children=False))
            rows.append(("smbsessions serve", n, rate, cpu))
    reason = unavailable_reason()
    if reason:
        print(f"(Samba skipped: {reason})")
    else:
        port = next(p for p in range(4460, 4465) if p != args.port and port_is_free(p))
        samba = SambaServer(port)
        samba.start()
        try:
            samba.warm_up()
            for n in (1, 4, 16):
                rate, cpu = warm_rate("127.0.0.1", port, n, args.seconds,
                                      lambda: _cpu_seconds(_pids_matching(str(samba.workdir)), children=True))
                rows.append(("Samba smbd 4.17", n, rate, cpu))
        finally:
            samba.stop()
    print(f"\n## 2. Warm NetrSessionEnum level 1, one bound pipe per client process, {args.seconds:g} s each "
          f"(ours: {sessions} decoys + the clients; Samba: its live sessions)\n")
    print("| server | clients | calls/s | server CPU per call (ms) |")
    print("|---|---:|---:|---:|")
    for name, n, rate, cpu in rows:
        print(f"| {name} | {n} | {rate:.0f} | {cpu:.2f} |")
    by = {(name, n): rate for name, n, rate, _ in rows}
    for n in (1, 4, 16):
        if ("Samba smbd 4.17", n) in by:
            print(f"ratio ours / Samba at {n} clients: {by['smbsessions serve', n] / by['Samba smbd 4.17', n]:.2f}")


# ---------------------------------------------------------------- 3. idle connections


IDLE_USER = ("bob", "bobpw")


def _raw_logon(port: int) -> Any:
    """One authenticated SMB 2.1 session on a plain socket (pyspnego NTLM), left idle."""
    import socket
    import struct

    import spnego

    sock = socket.create_connection(("127.0.0.1", port), timeout=30)

    def exchange(command: int, message_id: int, session_id: int, body: bytes) -> bytes:
        header = b"\xfeSMB" + struct.pack("<HHIHHIIQIIQ", 64, 0, 0, command, 1, 0, 0, message_id, 0, 0,
                                          session_id) + bytes(16)
        frame = header + body
        sock.sendall(len(frame).to_bytes(4, "big") + frame)
        length = int.from_bytes(_exact(sock, 4)[1:], "big")
        return _exact(sock, length)

    exchange(0, 0, 0, struct.pack("<HHHHI16sIHH", 36, 1, 1, 0, 0, bytes(16), 0, 0, 0) + struct.pack("<H", 0x0210))
    ntlm = spnego.client(IDLE_USER[0], IDLE_USER[1], protocol="ntlm")

    def setup(token: bytes, message_id: int, session_id: int) -> bytes:
        return exchange(1, message_id, session_id, struct.pack("<HBBIIHHQ", 25, 0, 1, 0, 0, 88, len(token), 0) + token)

    reply = setup(ntlm.step(), 1, 0)
    session_id = struct.unpack_from("<Q", reply, 40)[0]
    offset, length = struct.unpack_from("<HH", reply, 68)
    reply = setup(ntlm.step(reply[offset:offset + length]), 2, session_id)
    if struct.unpack_from("<I", reply, 8)[0] != 0:
        raise SystemExit("idle logon failed")
    return sock


def _exact(sock: Any, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise SystemExit("server closed an idle connection")
        data += chunk
    return data


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _admin_latency(port: int, rounds: int = 5) -> dict[str, list[float]]:
    """Seconds for an administrator to connect+log on+bind, to get one session's info
    (NetSessionGetInfo: one small call), and to enumerate everything at level 10."""
    times: dict[str, list[float]] = {"connect": [], "get_info": [], "enum": []}
    for _ in range(rounds):
        start = time.perf_counter()
        client = SessionClient("127.0.0.1", port, credentials=Credentials(username=ADMIN[0], password=ADMIN[1]),
                               timeout=60)
        with client:
            connected = time.perf_counter()
            client.get_info("127.0.0.1", ADMIN[0], 10)
            got = time.perf_counter()
            list(client.enum(10))
            done = time.perf_counter()
        times["connect"].append(connected - start)
        times["get_info"].append(got - connected)
        times["enum"].append(done - got)
    return times


def _hold_idle(port: int, count: int, ready: Any, stop: Any) -> None:
    """Hold ``count`` idle authenticated connections until ``stop`` (a separate process, so the
    measuring client's own sockets keep small descriptor numbers: smbprotocol uses select())."""
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks = [_raw_logon(port) for _ in range(count)]
    ready.put(len(socks))
    stop.wait()
    for sock in socks:
        sock.close()


def bench_idle(args: argparse.Namespace) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    per_process = 1000
    accounts = (f"{ADMIN[0]}:{ADMIN[1]}:admin", f"{IDLE_USER[0]}:{IDLE_USER[1]}")
    limits = ("--max-connections", str(args.idle + 100), "--max-per-account", str(args.idle))
    with serve(0, args.port, accounts, extra=limits) as proc:
        _admin_latency(args.port, 1)
        base = _rss(proc.pid)
        quiet = _admin_latency(args.port)
        ready, stop = ctx.Queue(), ctx.Event()
        counts = [min(per_process, args.idle - i) for i in range(0, args.idle, per_process)]
        holders = [ctx.Process(target=_hold_idle, args=(args.port, n, ready, stop)) for n in counts]
        for holder in holders:
            holder.start()
        try:
            held_count = sum(int(ready.get(timeout=600)) for _ in holders)
            time.sleep(1)
            held = _rss(proc.pid)
            loaded = _admin_latency(args.port)
        finally:
            stop.set()
            for holder in holders:
                holder.join(60)
    print(f"\n## 3. {held_count:,} idle authenticated connections (bob, SMB 2.1, NTLM) against "
          f"`smbsessions serve`; the admin is alice\n")
    print("| measure | value |")
    print("|---|---:|")
    print(f"| server RSS before | {base / 2**20:.1f} MiB |")
    print(f"| server RSS with the connections | {held / 2**20:.1f} MiB |")
    print(f"| RSS per connection | {(held - base) / max(held_count, 1) / 1024:.1f} KiB |")
    for what, label in (("connect", "admin connect+logon+bind"), ("get_info", "admin NetSessionGetInfo (one call)"),
                        ("enum", "admin NetSessionEnum level 10 (every session)")):
        print(f"| {label}: idle server / with the connections (median ms) | "
              f"{statistics.median(quiet[what]) * 1e3:.1f} / {statistics.median(loaded[what]) * 1e3:.1f} |")
    print(flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("decoys", "warm", "idle"))
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--impacket-rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="per warm measurement")
    parser.add_argument("--idle", type=int, default=5000, help="idle connections to hold")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    print("Machine: shared, noisy; ratios are from the same run.", flush=True)
    if args.only in (None, "decoys"):
        bench_decoys(args)
    if args.only in (None, "warm"):
        bench_warm(args)
    if args.only in (None, "idle"):
        bench_idle(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
