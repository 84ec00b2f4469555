"""One poll round: the sweep over the targets, each host's record turned into a ``HostPoll``.

A round is exactly a sweep (``sweep.pool.run_sweep``): same authentication,
statuses, per-host timeout, watchdog and worker processes. This module only
translates its records for the tracker, and recognises the poll's own session.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..sweep.pool import SweepStats, run_sweep
from ..sweep.records import HostRecord
from ..sweep.runner import SweepConfig
from ..sweep.targets import Target, record_key
from .diffing import HostPoll, Observed

OWN_SESSION_SLACK = 2.0
"""Seconds: our own session is younger than the poll's duration plus this."""

_U32_MAX = 0xFFFFFFFF


def storable(text: str) -> str:
    """``text`` as any database can store it: lone surrogates and NUL written as escapes.

    Server-supplied names may hold either (valid NDR); PostgreSQL refuses NUL
    and no UTF-8 encoder takes a lone surrogate.
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _age(session: dict[str, Any]) -> int | None:
    value = session.get("active_time")
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    return 0 if value == _U32_MAX else value


def own_session_indexes(sessions: Sequence[dict[str, Any]], account: str, elapsed: float) -> set[int]:
    """Which listed sessions are the poll's own connections.

    The client marks its own session (``own_session``) when it can tell.
    Otherwise every session of our own account that is not older than the
    poll itself is taken for ours: one is, and others that young are our
    concurrent polls of the same server under other names (or a real logon
    of the same account in the same second, recorded from the next poll on,
    with its true start). At level 0 (no user, no time) only the client's
    mark can tell.
    """
    if any("own_session" in s for s in sessions):
        return {index for index, session in enumerate(sessions) if session.get("own_session")}
    wanted = account.casefold()
    own = set()
    for index, session in enumerate(sessions):
        user = session.get("user_name")
        if not isinstance(user, str) or user.casefold() != wanted:
            continue
        age = _age(session)
        if age is not None and age <= elapsed + OWN_SESSION_SLACK:
            own.add(index)
    return own


def record_to_poll(record: dict[str, Any], now: float, account: str) -> HostPoll:
    """The tracker's view of one sweep record, taken at ``now`` (wall clock)."""
    host = record_key(record["host"], record["port"])
    sessions: list[dict[str, Any]] = record.get("sessions") or []
    elapsed = float(record.get("elapsed") or 0.0)
    own = own_session_indexes(sessions, account, elapsed)
    observed = []
    for index, session in enumerate(sessions):
        client = session.get("client_name")
        user = session.get("user_name")
        observed.append(Observed(
            client=storable(client) if isinstance(client, str) else "",
            user=storable(user) if isinstance(user, str) else None,
            age=_age(session),
            own=index in own,
        ))
    detail = record.get("error") or record.get("detail")
    return HostPoll(
        host=host,
        time=now,
        status=str(record["status"]),
        sessions=tuple(observed),
        level=record.get("level"),
        elapsed=elapsed,
        detail=storable(str(detail)) if detail else None,
    )


def run_round(
    targets: Iterable[Target],
    config: SweepConfig,
    on_poll: Callable[[HostPoll], None],
    *,
    concurrency: int = 64,
    processes: int | None = None,
    clock: Callable[[], float] = time.time,
    on_tick: Callable[[], None] | None = None,
) -> SweepStats:
    """Poll every target once (one sweep); ``on_poll`` gets each host's poll as it finishes."""
    account = config.credentials.username or ""

    def on_record(record: HostRecord) -> None:
        try:
            poll = record_to_poll(record.to_dict(), clock(), account)
        except Exception as exc:  # one bad record must never stop a round
            poll = HostPoll(record.key, clock(),
                            "error", detail=f"unreadable record: {type(exc).__name__}")
        on_poll(poll)

    return run_sweep(targets, config, on_record, concurrency=concurrency, processes=processes,
                     on_tick=on_tick)
