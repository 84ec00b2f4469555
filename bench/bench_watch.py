"""Watch benchmark: what the history store adds to a poll round, and history query latency.

Runs inside a private network namespace (``unshare --net``, root), where only ``lo``
exists: there our servers (``smbsessions serve``, one process each, with a sessions file
of decoys) may listen on the wildcard address, so every 127.x address reaches them and
1,000 distinct targets cost ``--servers`` processes. Each round one server (a tenth of the
targets) is restarted with half of its decoys replaced: those sessions end and new ones
begin. Nothing leaves the namespace.

Measured in the same run, per round over the same targets and the same churn:

* the sweep alone (``poll.run_round`` with a callback that does nothing), its threads in this
  process (``processes=1``) so that the CPU counted is the whole client side and nothing of
  the servers;
* a watch round (``Watcher.run_round``): the same sweep, the tracker (diff) and the store
  write (one transaction), for SQLite and PostgreSQL; rows written;
* ``history --user X`` on a store of 1,000,000 recorded sessions (rows generated directly);
* memory (RSS) of a watcher over ``--memory-rounds`` rounds.

``python -m bench.bench_watch`` (as root; PostgreSQL from scripts/install-peers.sh).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from smbsessions.auth import Credentials
from smbsessions.levels import SessionInfo
from smbsessions.sweep.runner import SweepConfig
from smbsessions.sweep.targets import Target
from smbsessions.watch import history
from smbsessions.watch.diffing import HostPoll
from smbsessions.watch.events import Event
from smbsessions.watch.poll import run_round
from smbsessions.watch.schema import sessions_table
from smbsessions.watch.store import Store
from smbsessions.watch.watcher import RoundResult, Watcher
from tests.peers.postgres import PostgresServer, start_postgres
from tests.peers.postgres import unavailable_reason as pg_unavailable

NETNS_FLAG = "SMBSESSIONS_BENCH_NETNS"
ADMIN = ("alice", "alicepw")
BASE_PORT = 5001


# --------------------------------------------------------------------------- the fleet


def decoys(server: int, generation: int, count: int, churn: int) -> list[SessionInfo]:
    """``count`` decoys of one server; the first ``churn`` change with each generation."""
    sessions = []
    for k in range(count):
        gen = generation if k < churn else 0
        sessions.append(SessionInfo(
            cname=f"\\\\10.{server}.{k}.{gen % 250 + 1}", username=f"user{server:02d}{k:02d}g{gen}",
            num_opens=1, time=600 + 60 * k, idle_time=5, user_flags=0, cltype_name="SMB 3.1.1",
            transport="tcp"))
    return sessions


class Fleet:
    """``--servers`` ``smbsessions serve`` processes on 0.0.0.0:BASE_PORT+i inside the namespace."""

    def __init__(self, workdir: Path, servers: int, decoys_each: int, churn: int) -> None:
        self.workdir, self.count, self.decoys_each, self.churn = workdir, servers, decoys_each, churn
        self.processes: dict[int, subprocess.Popen[str]] = {}
        self.generation = [0] * servers
        accounts = workdir / "accounts.txt"
        accounts.write_text(f"{ADMIN[0]}:{ADMIN[1]}:admin\n")
        self.accounts = accounts

    def start(self, index: int) -> None:
        path = self.workdir / f"decoys{index}.json"
        path.write_text(json.dumps([d.to_win32(502) for d in decoys(index, self.generation[index],
                                                                     self.decoys_each, self.churn)]))
        argv = [sys.executable, "-c", "import sys; from smbsessions.cli import main; sys.exit(main())",
                "serve", "--bind", "0.0.0.0", "--port", str(BASE_PORT + index), "--accounts-file",
                str(self.accounts), "--sessions-file", str(path), "--quiet"]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert process.stdout is not None
        line = process.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"server {index} did not start: {line!r}")
        self.processes[index] = process

    def stop(self, index: int) -> None:
        process = self.processes.pop(index)
        process.terminate()
        process.wait(20)
        if process.stdout:
            process.stdout.close()

    def churn_one(self, index: int) -> None:
        """Restart server ``index`` with its changing decoys replaced."""
        self.stop(index)
        self.generation[index] += 1
        for _ in range(50):
            try:
                self.start(index)
                return
            except RuntimeError:
                time.sleep(0.1)
        raise RuntimeError(f"server {index} would not restart")

    def __enter__(self) -> Fleet:
        for index in range(self.count):
            self.start(index)
        return self

    def __exit__(self, *exc: object) -> None:
        for index in list(self.processes):
            self.stop(index)

    def targets(self, hosts: int) -> list[Target]:
        per = hosts // self.count
        return [Target(f"127.{20 + i}.{j // 250}.{j % 250 + 1}", BASE_PORT + i)
                for i in range(self.count) for j in range(per)]


# --------------------------------------------------------------------------- measuring


def cpu() -> float:
    """CPU seconds of this process: the sweep runs its threads here (``processes=1``), so this is
    the whole client side; the servers are other processes and are not counted."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def postgres_cpu(server: PostgresServer | None) -> float:
    """CPU seconds of the PostgreSQL cluster's processes (postmaster and its children)."""
    if server is None:
        return 0.0
    try:
        postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        if pid == postmaster or ppid == postmaster:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class TimedWatcher(Watcher):
    """A Watcher that adds up the time of its tracker and of its store writes."""

    pg: PostgresServer | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.diff_cpu = 0.0
        self.write_wall = 0.0
        self.write_cpu = 0.0
        self.write_server_cpu = 0.0

    def apply(self, poll: HostPoll) -> list[Event]:
        start = time.thread_time()
        try:
            return super().apply(poll)
        finally:
            self.diff_cpu += time.thread_time() - start

    def flush(self, result: RoundResult | None = None) -> bool:
        wall, thread, server = time.perf_counter(), time.thread_time(), postgres_cpu(self.pg)
        try:
            return super().flush(result)
        finally:
            self.write_wall += time.perf_counter() - wall
            self.write_cpu += time.thread_time() - thread
            self.write_server_cpu += postgres_cpu(self.pg) - server

    def reset(self) -> None:
        self.diff_cpu = self.write_wall = self.write_cpu = self.write_server_cpu = 0.0


def sweep_alone(targets: Sequence[Target], config: SweepConfig, concurrency: int) -> tuple[float, float, int]:
    answered = 0

    def on_poll(poll: HostPoll) -> None:
        nonlocal answered
        answered += poll.answered

    wall, used = time.perf_counter(), cpu()
    run_round(targets, config, on_poll, concurrency=concurrency, processes=1)
    return time.perf_counter() - wall, cpu() - used, answered


# --------------------------------------------------------------------------- parts


def bench_rounds(fleet: Fleet, targets: list[Target], config: SweepConfig, url: str, label: str,
                 pg: PostgresServer | None, rounds: int, concurrency: int) -> dict[str, Any]:
    store = Store.open(url)
    TimedWatcher.pg = pg
    watcher = TimedWatcher(store, targets, config, concurrency=concurrency, processes=1)
    watcher.start()
    first = watcher.run_round()
    first_write = watcher.write_wall
    rows = []
    for r in range(rounds):
        fleet.churn_one(r % fleet.count)
        s_wall, s_cpu, answered = sweep_alone(targets, config, concurrency)
        watcher.reset()
        wall, used = time.perf_counter(), cpu()
        result = watcher.run_round()
        w_wall, w_cpu = time.perf_counter() - wall, cpu() - used
        events = len(result.events)
        rows.append({
            "sweep_wall": s_wall, "sweep_cpu": s_cpu, "answered": answered,
            "watch_wall": w_wall, "watch_cpu": w_cpu, "diff_cpu": watcher.diff_cpu,
            "write_wall": watcher.write_wall, "write_cpu": watcher.write_cpu,
            "write_server_cpu": watcher.write_server_cpu, "rows": result.rows_written, "events": events,
        })
        print(f"  {label} round {r + 1}: sweep {s_wall:.2f} s / {s_cpu:.2f} s CPU ({answered} answered); "
              f"watch {w_wall:.2f} s / {w_cpu:.2f} s CPU; diff {watcher.diff_cpu * 1000:.0f} ms CPU; "
              f"store write {watcher.write_wall * 1000:.0f} ms ({watcher.write_cpu * 1000:.0f} ms CPU here"
              f" + {watcher.write_server_cpu * 1000:.0f} ms server); {result.rows_written} rows, "
              f"{events} events", flush=True)
    store.close()
    median = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
    median["first_rows"] = first.rows_written
    median["first_write"] = first_write
    median["first_events"] = len(first.events)
    return median


def fill_million(url: str, sessions: int, users: int, hosts: int) -> float:
    """``sessions`` ended sessions spread over ``users`` and ``hosts``, written directly; seconds taken."""
    store = Store.open(url)
    rng = random.Random(12)
    start = time.perf_counter()
    batch: list[dict[str, Any]] = []
    now = time.time()
    with store.engine.begin() as conn:
        for i in range(sessions):
            begin = now - rng.uniform(0, 90 * 86400)
            batch.append({
                "id": f"{i:032x}", "host": f"10.{(i % hosts) >> 8}.{(i % hosts) & 255}.1:445",
                "client": f"\\\\10.200.{rng.randrange(256)}.{rng.randrange(256)}",
                "user_name": f"user{rng.randrange(users):05d}", "start_time": begin, "start_exact": True,
                "first_seen": begin + 30, "last_seen": begin + 3600, "end_time": begin + 3660,
                "level": 10, "alert": False,
            })
            if len(batch) == 20_000:
                conn.execute(sessions_table.insert(), batch)
                batch.clear()
        if batch:
            conn.execute(sessions_table.insert(), batch)
    taken = time.perf_counter() - start
    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE watch_sessions")
            conn.commit()
    store.close()
    return taken


def bench_history(url: str, user: str, repeat: int = 7) -> dict[str, float]:
    from smbsessions.cli import main

    store = Store.open(url)
    times = []
    found = 0
    for _ in range(repeat):
        start = time.perf_counter()
        found = len(list(history.sessions(store, history.Query(user=user))))
        times.append(time.perf_counter() - start)
    store.close()
    cli = []
    for _ in range(3):
        start = time.perf_counter()
        code = main(["history", "--db", url, "--user", user, "--format", "jsonl"], io.StringIO(), io.StringIO())
        cli.append(time.perf_counter() - start)
        assert code == 0
    return {"query_ms": 1000 * min(times), "query_median_ms": 1000 * statistics.median(times),
            "cli_ms": 1000 * min(cli), "found": found}


def bench_memory(fleet: Fleet, config: SweepConfig, url: str, rounds: int) -> list[tuple[int, float]]:
    targets = fleet.targets(fleet.count * 5)
    store = Store.open(url)
    watcher = Watcher(store, targets, config, concurrency=16, processes=1)
    watcher.start()
    samples = []
    for r in range(1, rounds + 1):
        if r % 20 == 0:
            fleet.churn_one((r // 20) % fleet.count)
        watcher.run_round()
        if r in (1, 10) or r % 50 == 0:
            samples.append((r, rss_mib()))
            print(f"  memory: round {r}: RSS {samples[-1][1]:.1f} MiB, open sessions "
                  f"{watcher.tracker.open_count}", flush=True)
    store.close()
    return samples


# --------------------------------------------------------------------------- main


def reexec_in_namespace() -> int:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        print("bench_watch: needs root and unshare (a private network namespace)", file=sys.stderr)
        return 2
    env = dict(os.environ, **{NETNS_FLAG: "1"})
    return subprocess.call(["unshare", "--net", "--", sys.executable, *sys.argv], env=env)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--servers", type=int, default=10)
    parser.add_argument("--decoys", type=int, default=20, help="sessions per host")
    parser.add_argument("--churn", type=int, default=10, help="decoys replaced on a churning server")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--sessions", type=int, default=1_000_000, help="rows for the history latency")
    parser.add_argument("--memory-rounds", type=int, default=200)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args(argv)
    if os.environ.get(NETNS_FLAG) != "1":
        return reexec_in_namespace()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)

    backends = args.backends.split(",")
    pg: PostgresServer | None = None
    if "postgresql" in backends:
        reason = pg_unavailable()
        if reason:
            print(f"PostgreSQL skipped: {reason}")
            backends.remove("postgresql")
        else:
            pg = start_postgres()
    workdir = Path(tempfile.mkdtemp(prefix="bench-watch-"))
    config = SweepConfig(Credentials(username=ADMIN[0], password=ADMIN[1]), timeout=10.0, margin=1.0)
    results: dict[str, Any] = {}
    try:
        def url_for(backend: str, name: str) -> str:
            if backend == "sqlite":
                return str(workdir / f"{name}.sqlite")
            assert pg is not None
            return pg.url(pg.create_database(name))

        with Fleet(workdir, args.servers, args.decoys, args.churn) as fleet:
            targets = fleet.targets(args.hosts)
            print(f"{len(targets)} targets on {args.servers} servers, {args.decoys} sessions each; "
                  f"per round one server ({len(targets) // args.servers} targets) replaces {args.churn} of them")
            sweep_alone(targets, config, args.concurrency)  # warm-up
            for backend in backends:
                results[backend] = bench_rounds(fleet, targets, config, url_for(backend, "rounds"), backend,
                                                pg if backend == "postgresql" else None, args.rounds,
                                                args.concurrency)
            memory = bench_memory(fleet, config, url_for("sqlite", "memory"), args.memory_rounds)
        for backend in backends:
            url = url_for(backend, "million")
            took = fill_million(url, args.sessions, users=5000, hosts=1000)
            results[backend]["fill_s"] = took
            results[backend].update(bench_history(url, "user00042"))
            print(f"  {backend}: {args.sessions:,} sessions written in {took:.1f} s; history --user: "
                  f"{results[backend]['query_ms']:.1f} ms query, {results[backend]['cli_ms']:.1f} ms CLI "
                  f"({results[backend]['found']} sessions)", flush=True)
    finally:
        if pg is not None:
            pg.destroy()
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(f"| per round over {len(targets)} targets | SQLite | PostgreSQL |")
    print("|---|---:|---:|")

    def row(title: str, fmt: Callable[[dict[str, Any]], str]) -> None:
        cells = [fmt(results[b]) if b in results else "-" for b in ("sqlite", "postgresql")]
        print(f"| {title} | {cells[0]} | {cells[1]} |")

    row("sweep alone: wall / CPU (s)", lambda r: f"{r['sweep_wall']:.2f} / {r['sweep_cpu']:.2f}")
    row("watch round: wall / CPU (s)", lambda r: f"{r['watch_wall']:.2f} / {r['watch_cpu']:.2f}")
    row("tracker (diff) CPU (ms)", lambda r: f"{r['diff_cpu'] * 1000:.0f}")
    row("store write: wall (ms)", lambda r: f"{r['write_wall'] * 1000:.0f}")
    row("store write: CPU here + DB server (ms)",
        lambda r: f"{r['write_cpu'] * 1000:.0f} + {r['write_server_cpu'] * 1000:.0f}")
    row("store write / sweep alone (wall)", lambda r: f"{100 * r['write_wall'] / r['sweep_wall']:.1f}%")
    row("store write / sweep alone (CPU)",
        lambda r: f"{100 * (r['write_cpu'] + r['write_server_cpu']) / r['sweep_cpu']:.1f}%")
    row("events / rows written per round", lambda r: f"{r['events']:.0f} / {r['rows']:.0f}")
    row("first round: events / rows / write (ms)",
        lambda r: f"{r['first_events']} / {r['first_rows']} / {r['first_write'] * 1000:.0f}")
    row(f"history --user X on {args.sessions:,} sessions: query (ms)", lambda r: f"{r['query_ms']:.1f}")
    row("history --user X: whole command in-process (ms)", lambda r: f"{r['cli_ms']:.1f}")
    print()
    print("memory (RSS MiB) by round: " + ", ".join(f"{r}: {m:.1f}" for r, m in memory))
    return 0


if __name__ == "__main__":
    sys.exit(main())
