"""SessionClient against impacket's srvsvc client, both talking to the same Samba in the same run.

    python -m bench.bench_client                     # 50 held sessions, 30 cold and 300 warm runs each
    python -m bench.bench_client --sessions 100 --cold-runs 50 --warm-runs 500
    python -m bench.bench_client --quick             # 10 sessions, a few seconds

Needs root and Samba (like the interop tests): a private smbd is started on
the first free port in 4530-4539, warmed up (samba-dcerpcd spawns on the
first RPC), given N held sessions from distinct loopback addresses, and
stopped at the end.

Measured, ours (smbprotocol + our DCE/RPC and NDR) vs impacket (SMBTransport,
DCERPC bind, ``srvs.hNetrSessionEnum``), runs interleaved so drift hits both:

* cold: connect, negotiate, authenticate (NTLM), tree connect IPC$, open
  \\PIPE\\srvsvc, bind, NetrSessionEnum level 1, close;
* warm: NetrSessionEnum level 1 on an already bound pipe, answer decoded.

Medians of wall time (perf_counter) and client CPU (process_time: every
thread of this process, so smbprotocol's receive thread counts; smbd's CPU
does not). The ratio is impacket / ours. Import time is measured in fresh
interpreters: ``import smbsessions.client`` vs impacket's transport + srvs.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from impacket.dcerpc.v5 import srvs, transport
from impacket.dcerpc.v5.dtypes import NULL

from smbsessions.auth import Credentials
from smbsessions.client import SessionClient
from tests.peers.holders import SessionHolder
from tests.peers.samba import (
    ALICE,
    BOB,
    PortInUseError,
    SambaServer,
    port_is_free,
    unavailable_reason,
)

PORTS = range(4530, 4540)
TIMEOUT = 10.0

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Sample:
    wall: float
    cpu: float


def measure(run: Callable[[], int]) -> tuple[Sample, int]:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    count = run()
    return Sample(time.perf_counter() - wall0, time.process_time() - cpu0), count


# --------------------------------------------------------------------------- the two clients


def ours_cold(host: str, port: int) -> int:
    with SessionClient(host, port, credentials=Credentials(ALICE.name, password=ALICE.password),
                       timeout=TIMEOUT) as client:
        return len(list(client.enum(1)))


def impacket_connect(host: str, port: int) -> Any:
    rpc = transport.SMBTransport(host, dstport=port, filename=r"\srvsvc",
                                 username=ALICE.name, password=ALICE.password)
    rpc.set_connect_timeout(TIMEOUT)
    dce = rpc.get_dce_rpc()
    dce.connect()
    dce.bind(srvs.MSRPC_UUID_SRVS)
    return dce


def impacket_enum(dce: Any) -> int:
    reply = srvs.hNetrSessionEnum(dce, NULL, NULL, 1)
    return len(reply["InfoStruct"]["SessionInfo"]["Level1"]["Buffer"])


def impacket_cold(host: str, port: int) -> int:
    dce = impacket_connect(host, port)
    try:
        return impacket_enum(dce)
    finally:
        dce.disconnect()


# --------------------------------------------------------------------------- runs


def bench_pair(
    ours: Callable[[], int], theirs: Callable[[], int], runs: int
) -> tuple[list[Sample], list[Sample], set[int]]:
    """Interleaved runs of both; returns their samples and the entry counts seen."""
    mine: list[Sample] = []
    other: list[Sample] = []
    counts: set[int] = set()
    for _ in range(runs):
        sample, count = measure(ours)
        mine.append(sample)
        counts.add(count)
        sample, count = measure(theirs)
        other.append(sample)
        counts.add(count)
    return mine, other, counts


def import_time(statement: str, runs: int) -> float:
    """Median seconds for ``statement`` in a fresh interpreter (the interpreter start excluded)."""
    code = (
        "import time; t = time.perf_counter(); "
        f"{statement}; print(time.perf_counter() - t)"
    )
    times = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              timeout=60, env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
        times.append(float(done.stdout.strip()))
    return statistics.median(times)


def start_server() -> SambaServer:
    reason = unavailable_reason()
    if reason:
        sys.exit(f"cannot run Samba here: {reason}")
    for port in PORTS:
        if not port_is_free(port):
            continue
        server = SambaServer(port)
        try:
            server.start()
        except PortInUseError:
            continue
        try:
            server.warm_up()
        except BaseException:
            server.stop()
            raise
        return server
    sys.exit(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def row(name: str, ours: list[Sample], theirs: list[Sample]) -> list[str]:
    ow, oc = statistics.median(s.wall for s in ours), statistics.median(s.cpu for s in ours)
    tw, tc = statistics.median(s.wall for s in theirs), statistics.median(s.cpu for s in theirs)
    return [name, ms(ow), ms(tw), f"{tw / ow:.2f}x", ms(oc), ms(tc), f"{tc / oc:.2f}x"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=50, help="held sessions besides the callers (default 50)")
    parser.add_argument("--cold-runs", type=int, default=30)
    parser.add_argument("--warm-runs", type=int, default=300)
    parser.add_argument("--import-runs", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="10 sessions, 10 cold, 50 warm, 3 import runs")
    args = parser.parse_args()
    if args.quick:
        args.sessions, args.cold_runs, args.warm_runs, args.import_runs = 10, 10, 50, 3

    server = start_server()
    try:
        sources = [f"127.0.{100 + i // 200}.{2 + i % 200}" for i in range(args.sessions)]
        with SessionHolder(server.host, server.port, args.sessions, source_ips=sources,
                           credentials=[(ALICE.name, ALICE.password), (BOB.name, BOB.password)]):
            host, port = server.host, server.port
            # One of each first: imports, code paths and smbd's caches are warm.
            ours_cold(host, port)
            impacket_cold(host, port)
            cold_ours, cold_theirs, cold_counts = bench_pair(
                lambda: ours_cold(host, port), lambda: impacket_cold(host, port), args.cold_runs
            )
            dce = impacket_connect(host, port)
            with SessionClient(host, port, credentials=Credentials(ALICE.name, password=ALICE.password),
                               timeout=TIMEOUT) as client:
                warm_ours, warm_theirs, warm_counts = bench_pair(
                    lambda: len(list(client.enum(1))), lambda: impacket_enum(dce), args.warm_runs
                )
            dce.disconnect()
    finally:
        server.stop()

    imports_ours = import_time("import smbsessions.client", args.import_runs)
    imports_theirs = import_time(
        "import impacket.dcerpc.v5.transport, impacket.dcerpc.v5.srvs", args.import_runs
    )

    smbd = subprocess.run(["smbd", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    print(f"# SessionClient vs impacket, {args.sessions} held sessions")
    print()
    print(f"Python {platform.python_version()}, impacket {version('impacket')}, "
          f"smbprotocol {version('smbprotocol')}, "
          f"{smbd}, {platform.machine()}; loopback; medians of {args.cold_runs} cold and "
          f"{args.warm_runs} warm runs, interleaved. Entries per answer: cold {sorted(cold_counts)}, "
          f"warm {sorted(warm_counts)}. Ratio = impacket / ours.")
    print()
    headers = ["level 1", "ours wall ms", "impacket wall ms", "wall ratio",
               "ours CPU ms", "impacket CPU ms", "CPU ratio"]
    rows = [
        row("cold (connect+auth+bind+enum+close)", cold_ours, cold_theirs),
        row("warm (enum on a bound pipe)", warm_ours, warm_theirs),
    ]
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|")
    for cells in rows:
        print("| " + " | ".join(cells) + " |")
    print()
    print("| import (fresh interpreter) | ours ms | impacket ms | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| `smbsessions.client` vs impacket `transport` + `srvs` | {ms(imports_ours)} | "
          f"{ms(imports_theirs)} | {imports_theirs / imports_ours:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
