"""``smbsessions watch``: run the watcher from parsed arguments (the parser is in ``cli``).

The database and metrics libraries are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from typing import IO, Any

from ..cli_args import UsageError, credentials_from_args, sigterm_as_interrupt
from ..exitcodes import ExitCode
from ..sweep.targets import DEFAULT_MAX_RANGE, BadEntry, Target, TargetSource, expand

LEASE_MINIMUM = 120.0
"""Seconds: the shortest lease a watcher takes on its hosts."""



def _targets(args: argparse.Namespace, err: IO[str]) -> list[Target]:
    if not args.targets and not args.targets_file:
        raise UsageError("no targets: give TARGET arguments or --targets-file")
    source = TargetSource(args.targets, args.targets_file, default_port=args.port,
                          max_range=DEFAULT_MAX_RANGE)
    bad = source.check_entries()
    if bad:
        raise UsageError("bad target: " + "; ".join(f"{b.text!r}: {b.reason}" for b in bad))
    for path in source.files:
        if not path.is_file():
            raise UsageError(f"cannot read targets file {path}")

    def report_bad(entry: BadEntry) -> None:
        err.write(f"smbsessions watch: skipping bad target {entry}\n")

    targets = list(expand(source.specs(report_bad)))
    if not targets:
        raise UsageError("no usable target")
    return targets


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def cmd_watch(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from ..sweep.runner import SweepConfig
    from .events import Event, event_json, event_line
    from .history import parse_age
    from .store import LeaseError, Store, StoreError, StoreUnavailable
    from .watcher import StoreLossError, Watcher

    targets = _targets(args, err)
    try:
        retain = parse_age(args.retain) if args.retain else None
    except ValueError as exc:
        raise UsageError(f"--retain: {exc}") from None
    listen = None
    if args.metrics_port:
        from .metrics import parse_listen

        try:
            listen = parse_listen(args.metrics_port)
        except ValueError as exc:
            raise UsageError(f"--metrics-port: {exc}") from None
    credentials = credentials_from_args(args, None)
    margin = min(1.0, 0.25 + 0.1 * args.timeout)
    config = SweepConfig(credentials, level=args.level, timeout=args.timeout, margin=margin,
                         require_encryption=args.encrypt)

    try:
        store = Store.open(args.db)
    except StoreError as exc:
        err.write(f"smbsessions watch: the store is not available: {exc}\n")
        return ExitCode.STORE_UNAVAILABLE

    events_file: IO[str] | None = None
    jsonl_out = args.events == "-"
    if args.events and not jsonl_out:
        try:
            events_file = open(args.events, "a", encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as exc:
            store.close()
            raise UsageError(f"cannot write {args.events}: {exc.strerror}") from None
    color = _isatty(out) and not jsonl_out

    def on_event(event: Event) -> None:
        if jsonl_out:
            out.write(event_json(event) + "\n")
        else:
            out.write(event_line(event, color=color) + "\n")
        out.flush()
        if events_file is not None:
            events_file.write(event_json(event) + "\n")
            events_file.flush()

    metrics = None
    if listen is not None:
        from .metrics import WatchMetrics

        metrics = WatchMetrics()
        try:
            metrics.serve(*listen)
        except OSError as exc:
            store.close()
            raise UsageError(
                f"--metrics-port: cannot listen on {listen[0]}:{listen[1]}: {exc.strerror}"
            ) from None

    # A lease outlives a few rounds and a short store outage; a crash on this machine frees it at once.
    lease = max(LEASE_MINIMUM, 5 * args.interval + args.timeout)
    watcher = Watcher(store, targets, config, alert_users=args.alert_user, concurrency=args.concurrency,
                      processes=args.processes, on_event=on_event, messages=err, metrics=metrics,
                      retain=retain, pending_limit=args.max_pending, lease=lease)
    code = ExitCode.OK
    try:
        try:
            watcher.start()
        except LeaseError as exc:
            err.write(f"smbsessions watch: refused: {exc}\n")
            return ExitCode.STORE_UNAVAILABLE
        except StoreError as exc:
            err.write(f"smbsessions watch: the store is not available: {exc}\n")
            return ExitCode.STORE_UNAVAILABLE
        open_count = watcher.tracker.open_count
        err.write(f"smbsessions watch: store {store.display}; {len(targets)} target(s) every "
                  f"{args.interval:g} s" + (f" for {args.rounds} round(s)" if args.rounds else "")
                  + (f"; {open_count} open session(s) carried over, reconciled at the next poll"
                     if open_count else "")
                  + (f"; metrics on http://{listen[0]}:{listen[1]}/metrics" if listen else "") + "\n")
        err.flush()
        try:
            with sigterm_as_interrupt():
                watcher.run(args.rounds, args.interval)
        except KeyboardInterrupt:
            err.write("smbsessions watch: stopping\n")
        except StoreLossError as exc:
            err.write(f"smbsessions watch: {exc}\n")
            if events_file is not None:
                err.write(f"smbsessions watch: every event was written to {args.events} as it happened\n")
            return ExitCode.STORE_LOST
        except StoreError as exc:  # our lease was taken over while the store was away
            err.write(f"smbsessions watch: {exc}; not stored: {watcher.pending.describe()}\n")
            return ExitCode.STORE_LOST
        if not watcher.flush():
            # Stopping with writes the store never took: they are lost to it.
            try:
                _retry_flush(watcher)
            except StoreUnavailable as exc:
                err.write(f"smbsessions watch: {exc}; stopping with {watcher.pending.describe()} not "
                          "stored (lost from the history)\n")
                if events_file is not None:
                    err.write(f"smbsessions watch: they are in {args.events}\n")
                return ExitCode.STORE_LOST
        with contextlib.suppress(StoreError):
            store.release()
        return code
    finally:
        if events_file is not None:
            events_file.close()
        if metrics is not None:
            metrics.close()
        store.close()


def _retry_flush(watcher: Any, attempts: int = 3, pause: float = 1.0) -> None:
    from .store import StoreUnavailable

    for attempt in range(attempts):
        try:
            watcher.store.write(watcher.pending)
            return
        except StoreUnavailable:
            if attempt == attempts - 1:
                raise
            time.sleep(pause)
