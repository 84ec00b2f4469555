"""The status of one host's record in a sweep, declared once.

``SweepStatus`` and its descriptions feed the ``sweep --help`` epilog and the
README table; the frozensets group them for the summary, the progress line and
``--resume``.

``STATUS_DESCRIPTIONS`` is the one text of each status (the ``sweep --help``
epilog shows it).
"""

from __future__ import annotations

from enum import StrEnum


class SweepStatus(StrEnum):
    """The status of one host's record, with what it means (declared once: help and docs use it)."""

    OK = "ok"
    OK_EMPTY = "ok-empty"
    DENIED = "denied"
    INVALID_LEVEL = "invalid-level"
    AUTH_FAILED = "auth-failed"
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    ERROR = "error"
    SKIPPED = "skipped"
    NOT_ATTEMPTED = "not-attempted"

    @property
    def description(self) -> str:
        return STATUS_DESCRIPTIONS[self]


STATUS_DESCRIPTIONS: dict[SweepStatus, str] = {
    SweepStatus.OK: "enumeration succeeded, sessions listed",
    SweepStatus.OK_EMPTY: "enumeration succeeded, no session; also when --user/--client matched "
    "nothing (NERR_UserNotFound: the normal case of a hunt; see \"note\")",
    SweepStatus.DENIED: "ERROR_ACCESS_DENIED at every level (hardened host)",
    SweepStatus.INVALID_LEVEL: "the requested --level is not served",
    SweepStatus.AUTH_FAILED: "the logon was refused",
    SweepStatus.UNREACHABLE: "no TCP connection, or the host closed it before answering",
    SweepStatus.TIMEOUT: "no complete answer within --timeout (per host), or cut by --deadline",
    SweepStatus.ERROR: "protocol error (not an SMB server), DCE/RPC fault, SMB1-only server, other status",
    SweepStatus.SKIPPED: "not attempted: --deadline ran out first (--resume retries these)",
    SweepStatus.NOT_ATTEMPTED: "not attempted: hosts in a row refused the logon, the sweep stopped "
    "to spare the account a lockout (--resume retries these)",
}

STATUSES: tuple[str, ...] = tuple(status.value for status in SweepStatus)
ANSWERED = frozenset({SweepStatus.OK, SweepStatus.OK_EMPTY})
"""Statuses of hosts whose enumeration succeeded (they expose sessions to the account)."""
RETRIED_ON_RESUME = frozenset({SweepStatus.SKIPPED, SweepStatus.NOT_ATTEMPTED})
"""Statuses a ``--resume`` run tries again (the host was never attempted)."""
UNREACHABLE_STATUSES = frozenset({SweepStatus.UNREACHABLE, SweepStatus.TIMEOUT, SweepStatus.SKIPPED,
                                  SweepStatus.NOT_ATTEMPTED})
"""Hosts that gave no answer at all: normal in a range, apart from real failures."""
WORKER_DIED = "WorkerDied"
"""``error`` of hosts lost with a worker process that crashed; ``--resume`` retries them too."""
