"""NetrSessionEnum response codec: ours against impacket's, measured in the same run.

    python -m bench.bench_codec                 # 100, 1k, 10k, 100k entries; impacket up to 10k
    python -m bench.bench_codec --quick         # 100 and 1k entries, a few seconds
    python -m bench.bench_codec --sizes 1000 10000 --levels 502 --impacket-max 1000

"encode" is EnumResponse -> stub bytes (for impacket: filling a
NetrSessionEnumResponse with the entries, then getData()). "decode" is stub
bytes -> values (ours: a list of SessionInfo; impacket: fromString() only, the
cheaper half of its work, so the ratio flatters impacket). Each of our figures
is the best of several runs; impacket runs once per size above 1k. Sizes above
--impacket-max are not run through impacket and show "skipped".

Prints a markdown table of microseconds per entry, the ratio (impacket / ours),
the per-entry cost at the largest size relative to 1k, and whether the goals
hold (level 502, 10k entries: >= 80x faster and <= 1.5 us/entry each way;
per-entry cost at 100k within 1.5x of 1k).
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import time
from collections.abc import Callable
from typing import Any

from smbsessions import ndr
from smbsessions.levels import LEVELS, SessionInfo
from smbsessions.messages import EnumResponse

GOAL_RATIO = 80.0
GOAL_US_PER_ENTRY = 1.5
GOAL_SCALING = 1.5


def make_sessions(count: int, seed: int = 1) -> list[SessionInfo]:
    """Sessions shaped like a busy file server's: unique clients and users, few client types."""
    rng = random.Random(seed)
    client_types = ["Windows 10 Enterprise 19045", "Samba 4.17.12-Debian", "", "Windows Server 2019"]
    transports = ["\\Device\\NetbtTcpip_{6A1D5F2E-3B3C-4F5B-9C1E-0D3A6B7C8D9E}", "\\Device\\NetbiosSmb"]
    return [
        SessionInfo(
            f"\\\\10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
            f"user{i:06d}" if i % 17 else f"Ünïcode-användare-{i}",
            rng.randrange(0, 40),
            rng.randrange(0, 1 << 20),
            rng.randrange(0, 3600),
            rng.choice((0, 0, 0, 1, 2)),
            rng.choice(client_types),
            rng.choice(transports),
        )
        for i in range(count)
    ]


def best_time(run: Callable[[], Any], budget: float, max_runs: int) -> float:
    """Best wall time of ``run`` over up to ``max_runs`` runs or ``budget`` seconds."""
    best = float("inf")
    started = time.perf_counter()
    for _ in range(max_runs):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
        if time.perf_counter() - started > budget:
            break
    return best


# --------------------------------------------------------------------------- impacket side


def impacket_encode(level: int, entries: list[SessionInfo]) -> bytes:
    from impacket.dcerpc.v5 import srvs
    from impacket.dcerpc.v5.dtypes import NULL

    message = srvs.NetrSessionEnumResponse()
    message["InfoStruct"]["Level"] = level
    message["InfoStruct"]["SessionInfo"]["tag"] = level
    container = message["InfoStruct"]["SessionInfo"][f"Level{level}"]
    container["EntriesRead"] = len(entries)
    item_type = getattr(srvs, f"SESSION_INFO_{level}")
    fields = [(f"sesi{level}_{f.name}", f.name, f.kind == "str") for f in LEVELS[level]]
    for entry in entries:
        item = item_type()
        for key, name, is_string in fields:
            value = getattr(entry, name)
            item[key] = (NULL if value is None else value + "\0") if is_string else value
        container["Buffer"].append(item)
    message["TotalEntries"] = len(entries)
    message["ResumeHandle"] = 0
    message["ErrorCode"] = 0
    return bytes(message.getData())


def impacket_decode(stub: bytes) -> Any:
    from impacket.dcerpc.v5 import srvs

    message = srvs.NetrSessionEnumResponse()
    message.fromString(stub)
    return message


# --------------------------------------------------------------------------- measurement


def measure(level: int, count: int, with_impacket: bool, quick: bool) -> dict[str, float | None]:
    entries = [e.project(level) for e in make_sessions(count)]
    response = EnumResponse(level, entries, count, 0, 0)
    stub = ndr.encode_enum_response(response)
    if ndr.decode_enum_response(stub) != response:
        raise SystemExit(f"codec mismatch at level {level}, {count} entries")
    budget = 0.3 if quick else 1.5
    runs = 5 if quick else 15
    result: dict[str, float | None] = {
        "ours_enc": best_time(lambda: ndr.encode_enum_response(response), budget, runs) / count * 1e6,
        "ours_dec": best_time(lambda: ndr.decode_enum_response(stub), budget, runs) / count * 1e6,
        "imp_enc": None,
        "imp_dec": None,
    }
    if with_impacket:
        their_stub = impacket_encode(level, entries)
        if ndr.decode_enum_response(their_stub) != response:
            raise SystemExit(f"impacket's stub decodes differently at level {level}, {count} entries")
        imp_runs = 3 if count <= 1000 else 1
        result["imp_enc"] = best_time(lambda: impacket_encode(level, entries), 0, imp_runs) / count * 1e6
        result["imp_dec"] = best_time(lambda: impacket_decode(stub), 0, imp_runs) / count * 1e6
    return result


def fmt_us(value: float | None) -> str:
    return "skipped" if value is None else f"{value:.3f}" if value < 10 else f"{value:.1f}"


def fmt_ratio(theirs: float | None, ours: float | None) -> str:
    return "-" if theirs is None or ours is None else f"{theirs / ours:.0f}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", help="entry counts (default 100 1000 10000 100000)")
    parser.add_argument("--levels", type=int, nargs="+", default=[10, 502], choices=sorted(LEVELS))
    parser.add_argument("--impacket-max", type=int, default=10_000,
                        help="largest size run through impacket (it is slow); 0 disables impacket")
    parser.add_argument("--quick", action="store_true", help="sizes 100 and 1000, short timing budget")
    args = parser.parse_args(argv)
    sizes = args.sizes or ([100, 1000] if args.quick else [100, 1000, 10_000, 100_000])
    try:
        import impacket  # noqa: F401

        have_impacket = args.impacket_max > 0
    except ImportError:
        have_impacket = False

    print(f"Python {platform.python_version()} ({platform.python_implementation()}), "
          f"{platform.machine()}, gc {'on' if gc.isenabled() else 'off'}")
    print()
    print("| level | entries | ours enc us/entry | impacket enc us/entry | enc ratio "
          "| ours dec us/entry | impacket dec us/entry | dec ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    results: dict[tuple[int, int], dict[str, float | None]] = {}
    for level in args.levels:
        for count in sizes:
            r = measure(level, count, have_impacket and count <= args.impacket_max, args.quick)
            results[level, count] = r
            print(f"| {level} | {count:,} | {fmt_us(r['ours_enc'])} | {fmt_us(r['imp_enc'])} "
                  f"| {fmt_ratio(r['imp_enc'], r['ours_enc'])} | {fmt_us(r['ours_dec'])} "
                  f"| {fmt_us(r['imp_dec'])} | {fmt_ratio(r['imp_dec'], r['ours_dec'])} |", flush=True)

    print()
    largest = max(sizes)
    if 1000 in sizes and largest > 1000:
        for level in args.levels:
            base, big = results[level, 1000], results[level, largest]
            enc = (big["ours_enc"] or 0) / (base["ours_enc"] or 1)
            dec = (big["ours_dec"] or 0) / (base["ours_dec"] or 1)
            print(f"level {level}: per-entry cost at {largest:,} relative to 1,000: "
                  f"encode {enc:.2f}x, decode {dec:.2f}x")

    goal = results.get((502, 10_000))
    if goal:
        print()
        for side in ("enc", "dec"):
            ours, theirs = goal[f"ours_{side}"] or 0.0, goal[f"imp_{side}"]
            speed = "n/a (impacket skipped)" if theirs is None else (
                f"{theirs / ours:.0f}x {'met' if theirs / ours >= GOAL_RATIO else 'NOT met'}")
            per_entry = "met" if ours <= GOAL_US_PER_ENTRY else "NOT met"
            print(f"goal 502/10k {side}: {ours:.3f} us/entry (<= {GOAL_US_PER_ENTRY}: {per_entry}); "
                  f"vs impacket >= {GOAL_RATIO:.0f}x: {speed}")
    if (502, 1000) in results and (502, 100_000) in results:
        worst = max((results[502, 100_000][k] or 0) / (results[502, 1000][k] or 1)
                    for k in ("ours_enc", "ours_dec"))
        print(f"goal scaling 100k vs 1k (<= {GOAL_SCALING}x): {worst:.2f}x "
              f"{'met' if worst <= GOAL_SCALING else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
