"""The limits an exposed SMB server enforces, as values and pure decisions.

The asyncio shell (``listener``, ``shell``) measures time and counts connections;
this module says what the numbers are and what follows from them:

* ``Timeouts``: a frame, once begun, must be complete within ``frame``; a
  connection must log on within ``preauth``; idle connections end after ``idle``
  (null sessions and connections that never logged on after ``null_idle``).
  ``expired`` names the first one a connection has run past.
* ``evictions``: connections without an authenticated session may use only part
  of the slots (the rest are kept for authenticated sessions) and only
  ``max_per_address`` of them per source address; when a new connection needs a
  place, the oldest unauthenticated one (from that address, or from the most
  crowded address) is evicted.
* ``raise_nofile_limit``: RLIMIT_NOFILE to its hard limit (each connection is a
  descriptor); ``connection_cap`` keeps ``max_connections`` below it, so the kept
  slots and evictions apply before accept() fails with EMFILE.
* ``Budget``: a count with a ceiling shared by threads (pipe opens server-wide;
  bytes of unread pipe output per connection and server-wide).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

DEFAULT_IDLE_TIMEOUT = 15 * 60.0  # Windows' default autodisconnect
NULL_IDLE_TIMEOUT = 60.0  # null sessions and connections that never logged on
DEFAULT_PREAUTH_TIMEOUT = 30.0  # a connection must have logged on by then
DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_MAX_PER_ADDRESS = 64  # connections without an authenticated session, per source address
# Sessions one non-admin account may hold at once: with 64 pipes each, one plain account can
# then neither fill the connection slots nor the server-wide pipe budget (64 x 64 < 8192).
DEFAULT_MAX_PER_ACCOUNT = 64
FRAME_TIMEOUT = 60.0  # a frame, once begun, must be complete within this
DEFERRED_CLOSE_LIMIT = 5.0  # how long a self-disconnected caller gets to read its reply
SWEEP_INTERVAL = 0.25
STOP_TIMEOUT = 5.0
MAX_PIPES_SERVER = 8192
WRITE_HIGH_WATER = 1 << 20  # stop reading a client that does not read its replies
# Unread pipe output (answers queued for the client to read), per connection and server-wide:
# a write whose answer would go over either is refused (STATUS_INSUFFICIENT_RESOURCES).
DEFAULT_MAX_UNREAD_PER_CONNECTION = 16 << 20
DEFAULT_MAX_UNREAD_SERVER = 256 << 20
# Descriptors kept out of max_connections: listening sockets, log and sessions files, imports.
NOFILE_RESERVE = 32


class Budget:
    """A count with a ceiling (pipe opens, bytes of unread output), shared by threads."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, amount: int = 1) -> bool:
        """Add ``amount`` if the total stays within the limit; False (and nothing taken) if not."""
        with self._lock:
            if self.used + amount > self.limit:
                return False
            self.used += amount
            return True

    def give(self, amount: int = 1) -> None:
        with self._lock:
            self.used = max(self.used - amount, 0)


def take_all(budgets: Iterable[Budget], amount: int) -> bool:
    """Take ``amount`` from every budget, or from none of them."""
    taken: list[Budget] = []
    for budget in budgets:
        if not budget.take(amount):
            for done in taken:
                done.give(amount)
            return False
        taken.append(budget)
    return True


def connection_cap(configured: int, nofile: int | None, reserve: int = NOFILE_RESERVE) -> int:
    """``max_connections`` as it can be honoured under a descriptor limit of ``nofile``
    (None or negative: unlimited), keeping ``reserve`` descriptors; at least 1."""
    if nofile is None or nofile < 0:
        return configured
    return max(1, min(configured, nofile - reserve))


@dataclass(frozen=True)
class Timeouts:
    """Per-connection time limits, in seconds (see ``clamped``)."""

    idle: float
    null_idle: float
    preauth: float
    frame: float

    @classmethod
    def clamped(cls, *, idle: float, null_idle: float, preauth: float, frame: float) -> Timeouts:
        """The limits as configured, with ``null_idle`` and ``frame`` never above ``idle``."""
        return cls(idle=idle, null_idle=min(null_idle, idle), preauth=preauth, frame=min(frame, idle))

    def expired(
        self,
        now: float,
        *,
        opened: float,
        last_frame: float,
        frame_started: float | None,
        logged_on: bool,
        authenticated: bool,
    ) -> str | None:
        """Why a connection in this state must be dropped at ``now``, or None."""
        if frame_started is not None and now - frame_started > self.frame:
            return "frame not completed in time"
        if not logged_on and now - opened > self.preauth:
            return f"no logon within {self.preauth:g} s"
        if now - last_frame > (self.idle if authenticated else self.null_idle):
            return "idle"
        return None


class Waiting(Protocol):
    """A connection without an authenticated session, as admission sees it."""

    @property
    def client_address(self) -> str: ...

    @property
    def opened(self) -> float: ...


W = TypeVar("W", bound=Waiting)


def evictions(
    address: str, waiting: Iterable[W], *, max_per_address: int, max_connections: int, reserved: int
) -> list[tuple[W, str]]:
    """The unauthenticated connections to evict (with why) so one from ``address`` fits.

    ``reserved``: slots only authenticated connections may fill, so a flood of
    unauthenticated ones leaves room for an administrator.
    """
    waiting = list(waiting)
    by_address: dict[str, list[W]] = {}
    for connection in waiting:
        by_address.setdefault(connection.client_address, []).append(connection)
    victims: list[tuple[W, str]] = []
    same = by_address.get(address, [])
    if len(same) >= max_per_address:
        # The newest connection gets its chance (it may be a real client behind the same
        # address); the oldest unauthenticated one from that address makes room.
        victim = min(same, key=lambda c: c.opened)
        victims.append((victim, "unauthenticated connections per address"))
        waiting.remove(victim)
        same.remove(victim)
    if reserved and len(waiting) >= max_connections - reserved:
        # Evict from the address holding the most unauthenticated connections (its oldest):
        # a lone administrator's address is never the victim of a flood from elsewhere.
        crowded = max(by_address.values(), key=len)
        victims.append((min(crowded, key=lambda c: c.opened), "unauthenticated slots full"))
    return victims


def raise_nofile_limit() -> int | None:
    """Raise the soft RLIMIT_NOFILE to the hard limit (each connection is a descriptor);
    returns the soft limit then in force (None: no such limit on this platform)."""
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard or (hard == resource.RLIM_INFINITY and soft != hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft
