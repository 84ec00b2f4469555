"""Fixtures for interop tests against real peers.

* ``samba``: one private smbd for the whole test session (see samba.py), on a
  free port in 4455-4459 (override with SMBSESSIONS_INTEROP_PORTS=lo-hi),
  warmed up, stopped at the end. Skips with the reason when not root or when
  Samba is not installed.
* ``samba_factory``: extra, isolated smbd instances for tests that need their
  own (destructive deletes, special ``extra_global`` settings); stopped at
  test end.
* ``hold_sessions``: ``hold_sessions(host, port, count, **kw)`` returns an
  open ``SessionHolder`` (see holders.py), closed at test end.
* ``impacket_srvsvc``: ``impacket_srvsvc(host, port, user, password)`` returns
  a bound impacket DCE/RPC srvsvc pipe, disconnected at test end.

Every test under tests/interop gets the ``interop`` marker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from ..peers.holders import SessionHolder
from ..peers.samba import (
    PortInUseError,
    SambaError,
    SambaServer,
    find_smbd,
    port_is_free,
    unavailable_reason,
)
from ..peers.samba_py import samba_py_available

DEFAULT_PORTS = range(4455, 4460)
_HERE = Path(__file__).resolve().parent


def interop_ports() -> range:
    """Ports the fixtures may use: SMBSESSIONS_INTEROP_PORTS ("4455-4459") or the default."""
    spec = os.environ.get("SMBSESSIONS_INTEROP_PORTS")
    if not spec:
        return DEFAULT_PORTS
    low, _, high = spec.partition("-")
    return range(int(low), int(high or low) + 1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees every collected item, not only ours: filter by location.
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.interop)


def pytest_report_header(config: pytest.Config) -> str:
    reason = unavailable_reason()
    samba = f"smbd {find_smbd()}" if reason is None else f"Samba tests skip: {reason}"
    pysamba = "python3-samba yes" if samba_py_available() else "python3-samba missing"
    return f"interop: {samba}; {pysamba}"


def start_samba(**kwargs: Any) -> SambaServer:
    """Start a SambaServer on the first free interop port (skip if Samba cannot run)."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"Samba interop peer unavailable: {reason}")
    tried = []
    for port in interop_ports():
        if not port_is_free(port, kwargs.get("bind_addrs", ("127.0.0.1", "::1"))):
            tried.append(port)
            continue
        server = SambaServer(port, **kwargs)
        try:
            server.start()
        except PortInUseError:
            tried.append(port)  # lost a race with another process
            continue
        try:
            server.warm_up()
        except SambaError:
            server.stop()
            raise
        return server
    pytest.fail(f"no free port for smbd: {tried} all in use (set SMBSESSIONS_INTEROP_PORTS)")


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _terminate_as_interrupt() -> signal.Handlers | Callable[..., Any] | int | None:
    """Turn SIGTERM into KeyboardInterrupt so pytest still runs fixture teardown.

    A plain SIGTERM (a CI job timeout, ``kill``) would end Python without
    finalizers or atexit, leaving smbd and samba-dcerpcd running. Returns the
    previous handler, or None when nothing was changed.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None  # someone else manages SIGTERM; leave it alone
    return signal.signal(signal.SIGTERM, _raise_interrupt)


@pytest.fixture(scope="session")
def samba() -> Iterator[SambaServer]:
    """A running, warmed-up private smbd shared by the whole test session.

    Tests must not leave sessions behind and must not delete sessions they do
    not own (NetrSessionDel with both qualifiers NULL kills every session:
    use ``samba_factory`` for that).
    """
    server = start_samba()
    previous = _terminate_as_interrupt()
    try:
        yield server
    finally:
        try:
            server.stop()
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def samba_factory() -> Iterator[Callable[..., SambaServer]]:
    """Start extra private smbd instances (``SambaServer`` keyword arguments)."""
    started: list[SambaServer] = []

    def factory(**kwargs: Any) -> SambaServer:
        server = start_samba(**kwargs)
        started.append(server)
        return server

    try:
        yield factory
    finally:
        errors = []
        for server in reversed(started):
            try:
                server.stop()
            except SambaError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture
def hold_sessions() -> Iterator[Callable[..., SessionHolder]]:
    """``hold_sessions(host, port, count, **SessionHolder kwargs)`` -> open SessionHolder."""
    holders: list[SessionHolder] = []

    def factory(host: str, port: int, count: int, **kwargs: Any) -> SessionHolder:
        holder = SessionHolder(host, port, count, **kwargs)
        holder.open()
        holders.append(holder)
        return holder

    try:
        yield factory
    finally:
        for holder in reversed(holders):
            holder.close()


@pytest.fixture
def impacket_srvsvc() -> Iterator[Callable[..., Any]]:
    """``impacket_srvsvc(host, port, user, password)`` -> bound srvsvc DCERPC_v5."""
    from impacket.dcerpc.v5 import srvs, transport

    pipes: list[Any] = []

    def factory(host: str, port: int, user: str, password: str, domain: str = "") -> Any:
        rpc_transport = transport.SMBTransport(
            host,
            dstport=port,
            filename=r"\srvsvc",
            username=user,
            password=password,
            domain=domain,
        )
        rpc_transport.set_connect_timeout(10)
        dce = rpc_transport.get_dce_rpc()
        dce.connect()
        pipes.append(dce)
        dce.bind(srvs.MSRPC_UUID_SRVS)
        return dce

    try:
        yield factory
    finally:
        for dce in pipes:
            # The server may already have cut it (NetrSessionDel).
            with contextlib.suppress(Exception):
                dce.disconnect()
