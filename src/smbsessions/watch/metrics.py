"""``--metrics-port``: a Prometheus endpoint (prometheus-client) for Grafana and alerting.

Series (all prefixed ``smbsessions_watch_``):

=====================================  ======================================================
``sessions{host}``                     open sessions per host (the caller's own excluded)
``host_up{host}``                      1 when the host's last poll succeeded, else 0
``host_status{host,status}``           1 for the host's current status (ok, denied, ...)
``poll_duration_seconds{host}``        how long the host's last poll took
``round_duration_seconds``             how long the last round took
``round_lag_seconds``                  how late the last round started (0: on time)
``rounds_total``                       rounds run
``events_total{event}``                logon / logoff / host-status events
``alerts_total{user}``                 events of ``--alert-user`` users
``store_pending``                      writes waiting for the store (0 when it is up)
=====================================  ======================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .diffing import OK, HostPoll, HostState, SessionTracker
from .events import Event

PREFIX = "smbsessions_watch_"


def parse_listen(text: str) -> tuple[str, int]:
    """``--metrics-port``: ``PORT`` (loopback only) or ``ADDR:PORT`` (``0.0.0.0:9464`` for a scraper)."""
    address, colon, port_text = text.rpartition(":")
    if not colon:
        address, port_text = "127.0.0.1", text
    address = address.strip("[]") or "127.0.0.1"
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"not a port: {text!r} (PORT or ADDR:PORT)")
    return address, int(port_text)


class WatchMetrics:
    """The watcher's series in their own registry; ``serve`` starts the HTTP endpoint."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sessions = Gauge(PREFIX + "sessions", "Open sessions per host", ["host"], registry=r)
        self.host_up = Gauge(PREFIX + "host_up", "1 when the host's last poll succeeded", ["host"],
                             registry=r)
        self.host_status = Gauge(PREFIX + "host_status", "1 for the host's current poll status",
                                 ["host", "status"], registry=r)
        self.poll_duration = Gauge(PREFIX + "poll_duration_seconds", "Duration of the host's last poll",
                                   ["host"], registry=r)
        self.round_duration = Gauge(PREFIX + "round_duration_seconds", "Duration of the last round",
                                    registry=r)
        self.round_lag = Gauge(PREFIX + "round_lag_seconds", "How late the last round started", registry=r)
        self.rounds = Counter(PREFIX + "rounds", "Rounds run", registry=r)
        self.events = Counter(PREFIX + "events", "Events by kind", ["event"], registry=r)
        self.alerts = Counter(PREFIX + "alerts", "Events of --alert-user users", ["user"], registry=r)
        self.pending = Gauge(PREFIX + "store_pending", "Writes waiting for the store", registry=r)
        self._status: dict[str, str] = {}
        self._server: Any = None

    def serve(self, address: str, port: int) -> None:
        """Start the HTTP endpoint (a daemon thread); ``OSError`` when the port is taken."""
        from prometheus_client import start_http_server

        self._server = start_http_server(port, addr=address, registry=self.registry)

    def close(self) -> None:
        if isinstance(self._server, tuple) and self._server:
            server = self._server[0]
            server.shutdown()
            server.server_close()
        self._server = None

    # ------------------------------------------------------------------ updates

    def _set_status(self, host: str, status: str | None) -> None:
        if status is None:
            return
        old = self._status.get(host)
        if old == status:
            return
        if old is not None:
            self.host_status.remove(host, old)
        self._status[host] = status
        self.host_status.labels(host, status).set(1)
        self.host_up.labels(host).set(1 if status == OK else 0)

    def loaded(self, tracker: SessionTracker) -> None:
        for state in tracker.hosts.values():
            self.sessions.labels(state.host).set(state.session_count)
            self._set_status(state.host, state.status)

    def polled(self, poll: HostPoll, state: HostState, events: Sequence[Event]) -> None:
        self.sessions.labels(poll.host).set(state.session_count)
        self.poll_duration.labels(poll.host).set(poll.elapsed)
        self._set_status(poll.host, state.status)
        for event in events:
            self.events.labels(event.kind).inc()
            if event.alert:
                self.alerts.labels(getattr(event, "user", None) or "").inc()

    def round_done(self, duration: float, pending: int) -> None:
        self.rounds.inc()
        self.round_duration.set(duration)
        self.pending.set(pending)

    def lagged(self, lag: float) -> None:
        self.round_lag.set(lag)
