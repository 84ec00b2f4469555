"""Whole-process cost of the ``smbsessions`` command: three paired ratios, measured in one run.

    python -m bench.bench_cli               # 21 pairs each
    python -m bench.bench_cli --pairs 41
    python -m bench.bench_cli --quick       # 5 pairs each, a smaller big listing

Every figure is a *pair* of whole processes started one after the other (A B
A B ...), and the figure reported is the median over the pairs of the ratio
(or difference) within each pair, so drift of the machine hits both sides:

1. start-up: ``smbsessions --version`` vs ``python -c pass`` (same interpreter);
2. one small enumeration: ``smbsessions enum HOST -U alice --level 1 --format json``
   vs Samba's ``rpcclient -c "netsessenum 1"``, both against the same private
   Samba holding 50 sessions (needs root and Samba, like the interop tests);
3. a large listing: ``smbsessions enum --level 502 --format json`` against our
   own server with 10,000 decoy sessions vs the same server with 50 decoys;
   the difference divided by the 9,950 extra entries is the end-to-end cost
   of one more entry (server encoding and client decoding and output included).

Ports: the first free ones in ``SMBSESSIONS_INTEROP_PORTS`` (default 4475-4479).
Passwords travel in the environment (``SMBSESSIONS_PASSWORD``, rpcclient's
``PASSWD``), never in argv.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.bench_server import serve
from tests.peers.holders import SessionHolder
from tests.peers.samba import ALICE, BOB, PortInUseError, SambaServer, port_is_free, unavailable_reason

GOALS = {"version": 6.0, "enum": 2.5, "per_entry_us": 25.0}
EXE = Path(sys.executable).parent / "smbsessions"


def ports() -> list[int]:
    low, _, high = os.environ.get("SMBSESSIONS_INTEROP_PORTS", "4475-4479").partition("-")
    return [p for p in range(int(low), int(high or low) + 1) if port_is_free(p)]


CPU: dict[str, list[float]] = {}
"""User + system seconds of each measured process, by its argv[1] (``--version``, ``enum``, ...)."""


def wall(argv: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Seconds from start to exit of one process (its output discarded); it must succeed.

    Its CPU seconds (user + system, the kernel's accounting) go to ``CPU``.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                          stdin=subprocess.DEVNULL, timeout=120, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({done.returncode}): {done.stderr.decode(errors='replace')[-400:]}")
    CPU.setdefault(" ".join(argv[1:4]), []).append(
        after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return elapsed


def pairs(a: Sequence[str], b: Sequence[str], count: int, env_a: dict[str, str] | None = None,
          env_b: dict[str, str] | None = None) -> list[tuple[float, float]]:
    wall(a, env_a)
    wall(b, env_b)  # one of each first: page cache, smbd's forks, samba-dcerpcd
    return [(wall(a, env_a), wall(b, env_b)) for _ in range(count)]


def median_ratio(samples: list[tuple[float, float]]) -> float:
    return statistics.median(a / b for a, b in samples)


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f}"


def start_samba(candidates: list[int]) -> SambaServer:
    reason = unavailable_reason()
    if reason:
        raise SystemExit(f"cannot run Samba here: {reason}")
    for port in candidates:
        server = SambaServer(port)
        try:
            server.start()
        except PortInUseError:
            continue
        server.warm_up()
        return server
    raise SystemExit("no free port for Samba")


def enum_argv(host: str, port: int, level: int) -> list[str]:
    return [str(EXE), "enum", f"{host}:{port}", "-U", ALICE.name, "--level", str(level), "--format", "json"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=21, help="paired runs per figure (default 21)")
    parser.add_argument("--big", type=int, default=10_000, help="entries of the large listing (default 10,000)")
    parser.add_argument("--small", type=int, default=50, help="held sessions / small listing (default 50)")
    parser.add_argument("--quick", action="store_true", help="5 pairs, 2,000 entries")
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs, args.big = 5, 2_000
    free = ports()
    # As installed: pip writes bytecode, so the measured processes may too (this
    # machine's environment may forbid it, which would time compiling instead).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    env = dict(os.environ)
    env["SMBSESSIONS_PASSWORD"] = ALICE.password
    rows: list[tuple[str, str, str, str, str]] = []

    # 1. start-up
    version = pairs([str(EXE), "--version"], [sys.executable, "-c", "pass"], args.pairs)
    ratio = median_ratio(version)
    rows.append(("`smbsessions --version` vs `python -c pass`", ms([a for a, _ in version]),
                 ms([b for _, b in version]), f"{ratio:.1f}x", f"<= {GOALS['version']:g}x"))

    # 2. one small enumeration vs rpcclient, same Samba
    server = start_samba(free)
    try:
        sources = [f"127.0.{110 + i // 200}.{2 + i % 200}" for i in range(args.small)]
        with SessionHolder(server.host, server.port, args.small, source_ips=sources,
                           credentials=[(ALICE.name, ALICE.password), (BOB.name, BOB.password)]):
            rpc_env = dict(os.environ)
            rpc_env.pop("LD_PRELOAD", None)
            rpc_env["PASSWD"] = ALICE.password
            rpcclient = shutil.which("rpcclient") or "rpcclient"
            rpc = [rpcclient, "-s", str(server.client_conf), "-p", str(server.port), "-U", ALICE.name,
                   server.host, "-c", "netsessenum 1"]
            small = pairs(enum_argv(server.host, server.port, 1), rpc, args.pairs, env, rpc_env)
    finally:
        server.stop()
    ratio = median_ratio(small)
    rows.append((f"`enum --level 1 --format json`, {args.small} sessions, vs `rpcclient -c netsessenum`",
                 ms([a for a, _ in small]), ms([b for _, b in small]), f"{ratio:.2f}x",
                 f"<= {GOALS['enum']:g}x"))

    # 3. a large listing vs a small one, our server (its own process), level 502
    big_port, small_port = [p for p in free if p != server.port and port_is_free(p)][:2]
    with serve(args.big, big_port), serve(args.small, small_port):
        large = pairs(enum_argv("127.0.0.1", big_port, 502), enum_argv("127.0.0.1", small_port, 502),
                      args.pairs, env, env)
    extra = args.big - args.small
    per_entry = statistics.median(a - b for a, b in large) / extra * 1e6
    big_cpu = CPU[" ".join(enum_argv("127.0.0.1", big_port, 502)[1:4])][1:]
    small_cpu = CPU[" ".join(enum_argv("127.0.0.1", small_port, 502)[1:4])][1:]
    cpu_per_entry = statistics.median(a - b for a, b in zip(big_cpu, small_cpu, strict=True)) / extra * 1e6
    rows.append((f"`enum --level 502 --format json`, {args.big:,} vs {args.small} entries (our server)",
                 ms([a for a, _ in large]), ms([b for _, b in large]),
                 f"{per_entry:.1f} µs per extra entry (client CPU {cpu_per_entry:.1f} µs)",
                 f"<= {GOALS['per_entry_us']:g} µs"))

    smbd = subprocess.run(["smbd", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    print(f"# smbsessions CLI, whole processes, {args.pairs} interleaved pairs per row (medians)\n")
    print(f"Python {platform.python_version()}, {smbd}, {platform.machine()}, {os.cpu_count()} cores; loopback.\n")
    print("| what (A vs B) | A ms | B ms | paired figure | goal |")
    print("|---|---:|---:|---:|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
