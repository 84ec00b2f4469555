"""What ``watch`` reports: ``logon``, ``logoff`` and ``host-status`` events.

Plain immutable values made by the pure tracker (``diffing``), written by the
store, printed by the CLI. Times are wall-clock seconds since the epoch (UTC).

* ``logon``: a session appeared (``initial``: it was already there at the
  first successful poll of its host, so it is not a logon seen happening).
* ``logoff``: a successful poll no longer lists a session; it ended between
  ``last_seen`` (the last poll that listed it) and ``time``.
* ``host-status``: a host's poll status changed (``ok`` for an answered poll,
  else the sweep status: ``denied``, ``unreachable``, ``timeout``, ...).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from ..output import printable

LOGON = "logon"
LOGOFF = "logoff"
HOST_STATUS = "host-status"
EVENT_KINDS: tuple[str, ...] = (LOGON, LOGOFF, HOST_STATUS)


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """A session started (``logon``) or ended (``logoff``) on ``host``."""

    kind: str
    time: float
    """The poll that showed the change."""
    host: str
    session_id: str
    client: str
    user: str | None
    """None when the level carries no user name (level 0)."""
    start: float
    """Estimated logon time: poll time minus the session's active time."""
    start_exact: bool
    """False when the level carries no time: ``start`` is then the first poll that listed it."""
    alert: bool = False
    initial: bool = False
    last_seen: float | None = None
    level: int | None = None


@dataclass(frozen=True, slots=True)
class HostStatusEvent:
    """The poll status of ``host`` changed from ``old`` (None: first poll) to ``new``."""

    time: float
    host: str
    old: str | None
    new: str
    detail: str | None = None

    @property
    def kind(self) -> str:
        return HOST_STATUS

    @property
    def alert(self) -> bool:
        return False


Event = SessionEvent | HostStatusEvent


def iso_time(seconds: float | None) -> str | None:
    """``2026-11-30T18:00:00.123Z`` (UTC, milliseconds), or None."""
    if seconds is None:
        return None
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_dict(event: Event) -> dict[str, Any]:
    """The JSON form of an event (``--events``): ISO 8601 UTC times, ``alert`` always present."""
    if isinstance(event, HostStatusEvent):
        return {
            "event": HOST_STATUS,
            "time": iso_time(event.time),
            "host": event.host,
            "old": event.old,
            "new": event.new,
            "detail": event.detail,
            "alert": False,
        }
    record: dict[str, Any] = {
        "event": event.kind,
        "time": iso_time(event.time),
        "host": event.host,
        "client": event.client,
        "user": event.user,
        "start": iso_time(event.start),
        "start_exact": event.start_exact,
        "session_id": event.session_id,
        "alert": event.alert,
    }
    if event.kind == LOGON:
        record["initial"] = event.initial
    else:
        record["last_seen"] = iso_time(event.last_seen)
    return record


def event_json(event: Event) -> str:
    """One JSON Lines line (no newline); non-ASCII kept, control characters escaped by JSON."""
    return json.dumps(event_dict(event), ensure_ascii=False)


_BOLD_RED = "\x1b[1;31m"
_RESET = "\x1b[0m"


def _clock(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def _span(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def event_line(event: Event, *, color: bool = False) -> str:
    """One human line: local time, event, host, and what changed; alerts marked.

    Server-supplied names are escaped (``output.printable``): a hostile user
    name cannot drive the terminal.
    """
    head = f"{_clock(event.time)}  {event.kind:<11} {printable(event.host):<24}"
    if isinstance(event, HostStatusEvent):
        text = f"{head} {event.old or '-'} -> {event.new}"
        if event.detail:
            text += f"  ({printable(event.detail)})"
        return text
    user = printable(event.user) if event.user is not None else "-"
    text = f"{head} {user:<20} from {printable(event.client)}"
    if event.kind == LOGON:
        since = "" if event.start_exact else "first seen "
        text += f"  {since}since {_clock(event.start)}"
        if event.initial:
            text += " (already connected)"
    else:
        text += f"  connected {_span(event.time - event.start)}"
    if event.alert:
        text = "ALERT " + text
        if color:
            text = _BOLD_RED + text + _RESET
    return text
