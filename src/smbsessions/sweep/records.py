"""One record per swept host: what an outcome means, and the record's JSON and CSV shapes.

``classify`` maps an exception to a status (see ``statuses``); ``host_record``
builds a ``HostRecord``, whose ``to_dict`` is the JSON object (``RECORD_COLUMNS``);
``csv_rows`` flattens it to one CSV row per session (``CSV_COLUMNS``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, NamedTuple

from ..status import (
    AuthenticationError,
    HostTimeoutError,
    HostUnreachableError,
    NetApiError,
    NetApiStatus,
    ProtocolError,
    RpcFaultError,
    TransportError,
    UnsupportedDialectError,
    ntstatus_name,
)
from .logon_guard import LogonNotAttempted
from .statuses import ANSWERED, SweepStatus
from .targets import Target, record_key


@dataclass(slots=True)
class HostRecord:
    """The outcome of one host. ``to_dict`` is its JSON object, keys in ``RECORD_COLUMNS`` order
    (the field order); the same record crosses the worker processes' queue (pickled)."""

    host: str
    port: int
    status: str
    """A ``SweepStatus`` value."""
    level: int | None
    """The level that answered (also when the qualifier matched nothing); None otherwise."""
    session_count: int
    """Sessions listed, our own enumerating session left out."""
    users: list[str]
    """User names with sessions, sorted, our own session left out."""
    sessions: list[dict[str, Any]]
    """Every session listed, as ``Session.to_dict`` (pywin32 keys)."""
    elapsed: float
    error: str | None
    """The symbolic name of what failed (``ERROR_ACCESS_DENIED``, ``STATUS_LOGON_FAILURE``...)."""
    code: int | None
    """Its number (NET_API_STATUS, NTSTATUS or DCE/RPC fault code)."""
    detail: str | None
    note: str | None

    @property
    def key(self) -> str:
        """``host:port`` (``[v6]:port``), as ``--resume`` compares them."""
        return record_key(self.host, self.port)

    def to_dict(self) -> dict[str, Any]:
        """The record as written to JSON (keys: ``RECORD_COLUMNS``)."""
        return {name: getattr(self, name) for name in RECORD_COLUMNS}


RECORD_COLUMNS: tuple[str, ...] = tuple(column.name for column in fields(HostRecord))
"""The keys of a record's JSON object, in order."""


class Classified(NamedTuple):
    """What an exception means for a host's record."""

    status: SweepStatus
    error: str | None
    code: int | None
    detail: str
    note: str | None = None


_NOT_FOUND = (NetApiStatus.NERR_UserNotFound, NetApiStatus.NERR_ClientNameNotFound)
_NET_API_STATUSES: dict[int, SweepStatus] = {
    NetApiStatus.ERROR_ACCESS_DENIED: SweepStatus.DENIED,
    NetApiStatus.ERROR_INVALID_LEVEL: SweepStatus.INVALID_LEVEL,
}


def classify(exc: BaseException) -> Classified:
    """Map an exception raised while enumerating one host to its sweep status."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, NetApiError):
        if exc.status in _NOT_FOUND:
            note = f"{exc.name}: no session matched the qualifier"
            return Classified(SweepStatus.OK_EMPTY, None, None, "", note)
        status = _NET_API_STATUSES.get(exc.status, SweepStatus.ERROR)
        return Classified(status, exc.name, exc.status, detail)
    if isinstance(exc, LogonNotAttempted):
        return Classified(SweepStatus.NOT_ATTEMPTED, None, None, detail)
    if isinstance(exc, AuthenticationError):
        return Classified(SweepStatus.AUTH_FAILED, _nt_name(exc.ntstatus), exc.ntstatus, detail)
    if isinstance(exc, HostUnreachableError):
        return Classified(SweepStatus.UNREACHABLE, None, None, detail)
    if isinstance(exc, HostTimeoutError):
        return Classified(SweepStatus.TIMEOUT, None, None, detail)
    if isinstance(exc, UnsupportedDialectError):
        return Classified(SweepStatus.ERROR, "UnsupportedDialect", exc.ntstatus, detail)
    if isinstance(exc, RpcFaultError):
        return Classified(SweepStatus.ERROR, exc.name, exc.code, detail)
    if isinstance(exc, ProtocolError):
        return Classified(SweepStatus.ERROR, type(exc).__name__, None, detail)
    if isinstance(exc, TransportError):
        return Classified(SweepStatus.ERROR, _nt_name(exc.ntstatus) or "TransportError", exc.ntstatus, detail)
    if isinstance(exc, TimeoutError):
        return Classified(SweepStatus.TIMEOUT, None, None, detail)
    if isinstance(exc, ConnectionRefusedError):
        return Classified(SweepStatus.UNREACHABLE, None, None, detail)
    return Classified(SweepStatus.ERROR, type(exc).__name__, None, detail)


def _nt_name(ntstatus: int | None) -> str | None:
    return None if ntstatus is None else ntstatus_name(ntstatus)


def host_record(
    target: Target,
    status: str,
    *,
    elapsed: float,
    level: int | None = None,
    sessions: list[dict[str, Any]] | None = None,
    error: str | None = None,
    code: int | None = None,
    detail: str | None = None,
    note: str | None = None,
) -> HostRecord:
    """The record of one host."""
    listed = sessions or []
    # Our own enumerating session is listed (marked) but neither counted nor a user found.
    others = [s for s in listed if not s.get("own_session")]
    users = sorted({s["user_name"] for s in others if s.get("user_name")})
    return HostRecord(
        host=target.host,
        port=target.port,
        status=status,
        level=level,
        session_count=len(others),
        users=users,
        sessions=listed,
        elapsed=round(elapsed, 4),
        error=error,
        code=code,
        detail=detail or None,
        note=note,
    )


def failure_record(target: Target, exc: BaseException, elapsed: float) -> HostRecord:
    found = classify(exc)
    # A refusal after a level answered (the hunted user not found) still says which level.
    attempts = exc.attempts if isinstance(exc, NetApiError) else []
    return host_record(
        target,
        found.status,
        elapsed=elapsed,
        level=attempts[-1][0] if attempts and found.status in ANSWERED else None,
        error=found.error,
        code=found.code,
        detail=found.detail,
        note=found.note,
    )


SESSION_FIELDS: tuple[str, ...] = (
    "client_name",
    "client_name_raw",
    "user_name",
    "num_opens",
    "active_time",
    "idle_time",
    "user_flags",
    "client_type",
    "transport",
    "own_session",
)
"""Per-session columns of the sweep's CSV (pywin32 keys, as ``Session.to_dict``)."""

CSV_COLUMNS: tuple[str, ...] = (
    "host", "port", "status", "level", "session_count", *SESSION_FIELDS,
    "elapsed", "error", "code", "detail", "note",
)
"""The sweep's CSV: one row per session, or one row (session columns empty) for a host
without sessions; the host's columns repeat on each of its rows."""


def csv_rows(record: HostRecord) -> list[dict[str, Any]]:
    """A host record as its CSV rows (see ``CSV_COLUMNS``)."""
    base = {k: v for k, v in record.to_dict().items() if k not in ("users", "sessions")}
    if not record.sessions:
        return [base]
    return [{**base, **{k: session.get(k) for k in SESSION_FIELDS}} for session in record.sessions]
