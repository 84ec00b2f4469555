"""Sweep benchmark: ``smbsessions`` sweep engine vs a thread pool of impacket calls.

Same run, same targets, same concurrency and timeout:

* real hosts: private smbd instances (free ports in 4500-4507) listening on the
  wildcard address, so every 127.0.10.x / 127.0.11.x address is a distinct
  reachable host; ``hosts allow`` keeps them to loopback clients;
* silent hosts (every ``--silent-every``-th target): Python listeners on
  127.0.12.x port 4510 that accept and never answer.

Printed: hosts/s and wall time for both, their ratio, the ideal wall time
(silent hosts x timeout / concurrency: the time the silent hosts alone must
hold the slots) and a no-overlap estimate (that plus the real hosts swept
alone), and our ratio to each. Also: the client CPU per host of both (this
process and its reaped worker processes) and the engine's own overhead.

Run as root with Samba installed (scripts/install-peers.sh): ``python -m bench.bench_sweep``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from smbsessions.auth import Credentials
from smbsessions.sweep.pool import run_sweep
from smbsessions.sweep.records import HostRecord, host_record
from smbsessions.sweep.runner import SweepConfig
from smbsessions.sweep.targets import Target
from tests.peers.samba import ALICE, SambaServer, port_is_free, unavailable_reason

SAMBA_PORTS = tuple(range(4500, 4508))
SILENT_PORT = 4510


class SilentHosts:
    """Listeners that accept connections and never send a byte."""

    def __init__(self, addresses: list[str], port: int) -> None:
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        for address in addresses:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            sock.listen(128)
            sock.settimeout(0.2)
            self._socks.append(sock)
        self._thread = threading.Thread(target=self._accept_all, daemon=True)
        self._thread.start()

    def _accept_all(self) -> None:
        listeners = list(self._socks)
        while not self._stop.is_set():
            for sock in listeners:
                sock.setblocking(False)
                try:
                    conn, _ = sock.accept()
                except (BlockingIOError, OSError):
                    continue
                with self._lock:
                    self._socks.append(conn)
            time.sleep(0.005)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        with self._lock:
            for sock in self._socks:
                with contextlib.suppress(OSError):
                    sock.close()


@contextlib.contextmanager
def samba_servers(count: int) -> Iterator[list[SambaServer]]:
    servers: list[SambaServer] = []
    free = [port for port in SAMBA_PORTS if port_is_free(port, ("0.0.0.0",))]
    if len(free) < count:
        raise SystemExit(f"bench_sweep: need {count} free ports in {SAMBA_PORTS}, found {free}")
    try:
        for port in free[:count]:
            server = SambaServer(
                port,
                bind_addrs=("127.0.0.1",),
                extra_global=("bind interfaces only = no", "hosts allow = 127.0.0.0/8 ::1"),
                log_level=0,
            )
            server.start()
            servers.append(server)
            server.warm_up()
        yield servers
    finally:
        for server in reversed(servers):
            server.stop()


def real_address(index: int) -> str:
    # 127.0.10.1 .. 127.0.11.254: up to 508 distinct reachable hosts.
    block, offset = divmod(index, 254)
    return f"127.0.{10 + block}.{offset + 1}"


def build_targets(total: int, silent_every: int, ports: list[int]) -> tuple[list[Target], list[str]]:
    targets: list[Target] = []
    silent: list[str] = []
    real = 0
    for i in range(total):
        if silent_every and i % silent_every == silent_every - 1:
            address = f"127.0.12.{len(silent) + 1}"
            silent.append(address)
            targets.append(Target(address, SILENT_PORT))
        else:
            targets.append(Target(real_address(real), ports[real % len(ports)]))
            real += 1
    return targets, silent


# --------------------------------------------------------------------------- contenders


class Result:
    """Wall time, client CPU (this process and its reaped children) and statuses of one run."""

    def __init__(self, wall: float, cpu: float, statuses: Counter[str], hosts: int) -> None:
        self.wall = wall
        self.cpu = cpu
        self.statuses = statuses
        self.hosts = hosts

    @property
    def rate(self) -> float:
        return self.hosts / self.wall

    def line(self, name: str) -> str:
        return (f"  {name:<28}: {self.wall:7.2f} s  {self.rate:7.1f} hosts/s  "
                f"client CPU {self.cpu / self.hosts * 1000:5.2f} ms/host  {dict(self.statuses)}")


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_ours(targets: list[Target], concurrency: int, timeout: float, level: int | None) -> Result:
    config = SweepConfig(Credentials(username=ALICE.name, password=ALICE.password), level=level,
                         timeout=timeout, margin=min(1.0, 0.25 + 0.1 * timeout))
    statuses: Counter[str] = Counter()

    def on_record(record: HostRecord) -> None:
        statuses[record.status] += 1

    cpu = _cpu()
    start = time.perf_counter()
    run_sweep(targets, config, on_record, concurrency=concurrency)
    return Result(time.perf_counter() - start, _cpu() - cpu, statuses, len(targets))


def impacket_probe(target: Target, timeout: float, level: int) -> str:
    """How existing collectors do it: SMBTransport + srvs.hNetrSessionEnum."""
    from impacket.dcerpc.v5 import srvs, transport
    from impacket.dcerpc.v5.dtypes import NULL

    try:
        rpc = transport.SMBTransport(
            target.host, dstport=target.port, filename=r"\srvsvc",
            username=ALICE.name, password=ALICE.password,
        )
        rpc.set_connect_timeout(timeout)
        dce = rpc.get_dce_rpc()
        dce.connect()
        try:
            dce.bind(srvs.MSRPC_UUID_SRVS)
            srvs.hNetrSessionEnum(dce, NULL, NULL, level)
        finally:
            with contextlib.suppress(Exception):
                dce.disconnect()
        return "ok"
    except Exception as exc:
        text = str(exc).lower()
        return "timeout" if "timed out" in text or "timeout" in text else "error"


def run_impacket(targets: list[Target], concurrency: int, timeout: float, level: int) -> Result:
    from impacket.dcerpc.v5 import srvs, transport  # noqa: F401  imported before the clock starts

    cpu = _cpu()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        statuses = Counter(pool.map(lambda t: impacket_probe(t, timeout, level), targets))
    return Result(time.perf_counter() - start, _cpu() - cpu, statuses, len(targets))


def engine_overhead(count: int = 20000) -> float:
    """Seconds of wall time per host spent by the engine alone (a probe that returns at once)."""
    config = SweepConfig(Credentials(username="x", password="y"), timeout=5)
    targets = [Target(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 445) for i in range(count)]
    start = time.perf_counter()
    run_sweep(targets, config, lambda record: None, concurrency=50, probe=instant_probe)
    return (time.perf_counter() - start) / count


def instant_probe(target: Target, config: SweepConfig, client: Any) -> HostRecord:
    return host_record(target, "ok-empty", elapsed=0.0)


def settle() -> None:
    time.sleep(1.5)  # let smbd reap the previous run's children


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=500)
    parser.add_argument("--silent-every", type=int, default=10, help="every Nth target is silent")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--servers", type=int, default=4, help="smbd instances (1-8)")
    parser.add_argument("--level", type=int, default=1,
                        help="level for both (Samba serves 0 and 1; default 1)")
    parser.add_argument("--auto-level", action="store_true",
                        help="let our client pick the level (502, 10, 2 refused first on Samba)")
    args = parser.parse_args()
    if args.silent_every < 2:
        parser.error("--silent-every must be at least 2")
    if args.targets - args.targets // args.silent_every > 508:
        parser.error("at most 508 real hosts (127.0.10.1 - 127.0.11.254)")
    reason = unavailable_reason()
    if reason:
        print(f"bench_sweep: skipped: {reason}")
        return 0
    our_level = None if args.auto_level else args.level
    overhead = engine_overhead()

    with samba_servers(args.servers) as servers:
        ports = [s.port for s in servers]
        targets, silent_addresses = build_targets(args.targets, args.silent_every, ports)
        real = [t for t in targets if t.port != SILENT_PORT]
        silent = SilentHosts(silent_addresses, SILENT_PORT)
        try:
            ours_real = run_ours(real, args.concurrency, args.timeout, our_level)
            settle()
            imp_real = run_impacket(real, args.concurrency, args.timeout, args.level)
            settle()
            ours = run_ours(targets, args.concurrency, args.timeout, our_level)
            settle()
            imp = run_impacket(targets, args.concurrency, args.timeout, args.level)
        finally:
            silent.close()

    n, n_silent = len(targets), len(silent_addresses)
    ideal = n_silent * args.timeout / args.concurrency
    no_overlap = ideal + ours_real.wall
    level = "auto (fallback)" if args.auto_level else str(args.level)
    print(f"sweep benchmark: {n} targets ({n_silent} silent, {len(real)} real SMB on {len(ports)} smbd), "
          f"concurrency {args.concurrency}, timeout {args.timeout:g} s, level {level}, "
          f"{os.cpu_count()} CPUs shared with smbd, load average before: {os.getloadavg()[0]:.1f}")
    print(f"  engine overhead alone (instant probe): {overhead * 1e6:.0f} us/host")
    print(ours_real.line("smbsessions, real hosts only"))
    print(imp_real.line("impacket pool, real only"))
    print(ours.line("smbsessions sweep, all"))
    print(imp.line("impacket pool, all"))
    print(f"  hosts/s ratio ours/impacket: {ours.rate / imp.rate:.2f}x (all targets), "
          f"{ours_real.rate / imp_real.rate:.2f}x (real hosts only)")
    print(f"  ideal wall = silent x timeout / concurrency = {ideal:.2f} s; ours / ideal = {ours.wall / ideal:.2f}")
    # Below 1: the silent hosts' waiting overlapped the real hosts' (CPU-bound) work.
    print(f"  no-overlap estimate = ideal + our real-hosts-only wall = {no_overlap:.2f} s; "
          f"ours / that = {ours.wall / no_overlap:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
