"""Lockout protection: stop trying a password that every host refuses.

A sweep with a mistyped domain password would log on (and fail) on every host,
and a domain with a lockout policy then locks the account. ``LogonGuard`` sits
between the SMB negotiate and the session setup of every host of a sweep, in
every worker process:

* Until some host has accepted the credentials, logons go one at a time, so
  no more than ``limit`` of them can fail before the sweep knows.
* ``limit`` refusals in a row (``status.LOGON_REFUSALS``: wrong password,
  locked out, disabled, expired...) stop it: every later logon is refused here,
  without contacting the host (``LogonNotAttempted``).
* An accepted logon lifts the one-at-a-time rule and resets the count.

Hosts that are unreachable, time out or fail before the logon change nothing.
The guard's state lives in ``multiprocessing`` shared memory, so the worker
processes of one sweep (fork or spawn) share it: pass it to them as an argument.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..status import LOGON_REFUSALS, AuthenticationError, HostTimeoutError, ntstatus_name

DEFAULT_MAX_LOGON_FAILURES = 3

_VERIFIED = -1


class LogonNotAttempted(AuthenticationError):
    """The logon was not tried: earlier hosts all refused these credentials."""


class LogonGuard:
    """Shared between the threads and worker processes of one sweep (see the module doc)."""

    def __init__(self, limit: int = DEFAULT_MAX_LOGON_FAILURES, context: Any = None) -> None:
        """``context``: a ``multiprocessing`` context when worker processes share the guard."""
        if limit < 1:
            raise ValueError("the limit must be at least 1")
        self.limit = limit
        if context is None:
            self._serial: Any = threading.Lock()
            self._update: Any = threading.Lock()
            self._state: Any = _Cell(0)
            self._last: Any = _Cell(0)
        else:
            self._serial = context.Lock()
            self._update = context.Lock()
            # consecutive refusals (or _VERIFIED), and the last refusal's NTSTATUS
            self._state = context.Value("i", 0, lock=False)
            self._last = context.Value("q", 0, lock=False)

    @property
    def stopped(self) -> bool:
        """True once ``limit`` logons in a row were refused."""
        return int(self._state.value) >= self.limit

    @property
    def verified(self) -> bool:
        """True once any host accepted the credentials (and none stopped the guard since)."""
        return int(self._state.value) == _VERIFIED

    @property
    def refusals(self) -> int:
        return max(0, int(self._state.value))

    @property
    def last_refusal(self) -> str | None:
        """The NTSTATUS name of the last refusal counted, if any."""
        code = int(self._last.value)
        return ntstatus_name(code) if code else None

    @contextmanager
    def logon(self, where: str, deadline: float | None) -> Iterator[None]:
        """Around one session setup. Raises ``LogonNotAttempted`` once stopped;
        an exception from the body carrying ``ntstatus`` in ``LOGON_REFUSALS`` counts
        as a refusal, a normal exit as an acceptance."""
        self._check(where)
        serial = False
        if not self.verified:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            acquired = self._serial.acquire(True) if wait is None else self._serial.acquire(True, wait)
            if not acquired:
                raise HostTimeoutError(
                    f"{where}: the timeout ran out waiting for another host's logon (until one host "
                    "accepts the credentials, logons go one at a time)"
                )
            serial = True
        try:
            self._check(where)
            try:
                yield
            except BaseException as exc:
                status = getattr(exc, "ntstatus", None)
                if status in LOGON_REFUSALS:
                    self._refused(int(status))
                raise
            self._accepted()
        finally:
            if serial:
                self._serial.release()

    def _check(self, where: str) -> None:
        if self.stopped:
            raise LogonNotAttempted(
                f"{where}: logon not attempted: {self.refusals} hosts in a row refused it "
                f"({self.last_refusal}); check the password"
            )

    def _refused(self, status: int) -> None:
        with self._update:
            if int(self._state.value) < self.limit:
                self._state.value = max(0, int(self._state.value)) + 1
            self._last.value = status

    def _accepted(self) -> None:
        with self._update:
            if int(self._state.value) < self.limit:
                self._state.value = _VERIFIED


class _Cell:
    """``multiprocessing.Value``'s interface for one process."""

    def __init__(self, value: int) -> None:
        self.value = value
