"""Hold many authenticated SMB sessions open against a test server (impacket).

Each held session is its own TCP connection (Samba forks one smbd per
connection, and NetrSessionDel kills whole connections), optionally:

* from its own loopback source address (127.0.0.2, 127.0.0.3, ...: every
  127/8 address is local on Linux, no setup needed), so servers list distinct
  client names;
* preceded by an NBSS session request (0x81) carrying a NetBIOS calling name,
  which Samba reports (lower-cased) instead of the IP; smbd accepts it on any
  port, but impacket only sends it on port 139, so this module sends it;
* with K files open on a share, so ``num_opens`` > 0; with ``share="IPC$"``
  (our server, which serves no files) K opens of the srvsvc pipe instead,
  which count in ``num_opens`` as on Windows.

Works against Samba and against our own server (SMB1 where the server speaks it, SMB 2.0,
2.1: pick ``dialect``). Sessions are opened in parallel threads.

    with SessionHolder("127.0.0.1", 4455, 60, credentials=[("bob", "bobpw")]) as held:
        held.sessions[0].source_ip      # "127.0.0.2"
        held.alive(0)                   # False once the server cut it off
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import select
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from impacket import nmb
from impacket.smb3structs import (
    FILE_DELETE_ON_CLOSE,
    FILE_NON_DIRECTORY_FILE,
    FILE_OVERWRITE_IF,
    FILE_SHARE_DELETE,
    FILE_SHARE_READ,
    FILE_SHARE_WRITE,
    GENERIC_READ,
    GENERIC_WRITE,
    SMB2_DIALECT_002,
    SMB2_DIALECT_21,
    SMB2_DIALECT_30,
    SMB2_DIALECT_311,
)
from impacket.smbconnection import SMB_DIALECT, SMBConnection

DELETE = 0x00010000
PIPE_ACCESS = 0x0012019F  # what Windows clients ask for a pipe (plain GENERIC_READ|WRITE is refused)

DIALECTS: dict[str, Any] = {
    "auto": None,
    "smb1": SMB_DIALECT,
    "smb2.0": SMB2_DIALECT_002,
    "smb2.1": SMB2_DIALECT_21,
    "smb3.0": SMB2_DIALECT_30,
    "smb3.1.1": SMB2_DIALECT_311,
}

ANONYMOUS: tuple[str, str] = ("", "")


class HolderError(RuntimeError):
    """Some sessions could not be opened (the ones that were are closed again)."""


# ---------------------------------------------------------------------------
# impacket builds its NetBIOS TCP session deep inside SMBConnection, with no
# hook for a source address or for the NBSS request on ports other than 139.
# The wrapper below reads per-thread options, so parallel opens do not mix
# them up; with no options set it behaves exactly like impacket's own method.
_connect_options = threading.local()
_original_setup: Callable[..., socket.socket] | None = None
_patch_lock = threading.Lock()


def _setup_connection(self: Any, peer: tuple[str, int], timeout: float | None = None) -> Any:
    source_ip: str | None = getattr(_connect_options, "source_ip", None)
    calling_name: str | None = getattr(_connect_options, "calling_name", None)
    if source_ip is None:
        assert _original_setup is not None
        sock = _original_setup(self, peer, timeout)
    else:
        family = socket.AF_INET6 if ":" in peer[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.bind((source_ip, 0))
            sock.settimeout(timeout)
            sock.connect(peer)
            sock.settimeout(None)
        except OSError:
            sock.close()
            raise
    if calling_name and peer[1] != nmb.NETBIOS_SESSION_PORT:
        self._sock = sock
        try:
            self._request_session(nmb.TYPE_SERVER, nmb.TYPE_WORKSTATION, timeout)
        except BaseException:
            sock.close()
            raise
    return sock


def _install_patch() -> None:
    global _original_setup
    with _patch_lock:
        current = nmb.NetBIOSTCPSession._setup_connection
        if current is _setup_connection:
            return
        _original_setup = current
        nmb.NetBIOSTCPSession._setup_connection = _setup_connection


def loopback_source(index: int) -> str:
    """The ``index``-th distinct loopback source address: 127.0.0.2, 127.0.0.3, ...

    Addresses ending in .0 or .255 are skipped.
    """
    if index < 0:
        raise ValueError("index must be >= 0")
    usable = 254  # .1 .. .254 of each /24; 127.0.0.1 itself is left to the kernel default
    block, offset = divmod(index + 1, usable)
    address = ipaddress.IPv4Address("127.0.0.0") + block * 256 + offset + 1
    if not address.is_loopback:
        raise ValueError("ran out of loopback addresses")
    return str(address)


def _require_loopback(address: str) -> None:
    if not ipaddress.ip_address(address).is_loopback:
        raise ValueError(f"{address!r} is not a loopback address; tests stay on loopback")


def _set_timeout(conn: SMBConnection, seconds: float) -> None:
    smb = conn.getSMBServer()
    if hasattr(smb, "set_timeout"):  # SMB1
        smb.set_timeout(seconds)
    else:  # SMB3 reads this attribute on every receive
        smb._timeout = seconds


@dataclass(frozen=True)
class HeldSession:
    """What a test needs to recognise one held session in a server's answer."""

    index: int
    user: str  # "" for anonymous
    source_ip: str
    source_port: int
    calling_name: str | None
    dialect: int | str  # SMB2 dialect number, or "NT LM 0.12" for SMB1
    open_files: tuple[str, ...] = ()

    @property
    def anonymous(self) -> bool:
        return self.user == ""


@dataclass
class _Held:
    info: HeldSession
    conn: SMBConnection
    tree_id: Any = None
    file_ids: list[Any] = field(default_factory=list)
    dead: bool = False


class SessionHolder:
    """N authenticated SMB sessions held open; closes them all on exit.

    ``credentials`` are (user, password) pairs used round-robin; ``("", "")``
    (``ANONYMOUS``) logs on anonymously. ``source_ips``: None gives each session
    its own address from ``loopback_source`` when ``host`` is IPv4 (and lets
    the kernel choose for ::1); a sequence is used round-robin; an empty one
    means the kernel chooses. ``calling_names`` is a format string with
    ``{i}`` (the session index), e.g. ``"WS{i}"``; None sends no NBSS request.
    """

    def __init__(
        self,
        host: str,
        port: int,
        count: int,
        *,
        credentials: Sequence[tuple[str, str]] = (("alice", "alicepw"),),
        domain: str = "",
        source_ips: Sequence[str] | None = None,
        calling_names: str | None = None,
        open_files: int = 0,
        share: str = "share",
        dialect: str = "auto",
        timeout: float = 10.0,
        workers: int = 16,
    ) -> None:
        _require_loopback(host)
        if count < 0 or open_files < 0:
            raise ValueError("count and open_files must be >= 0")
        if not credentials:
            raise ValueError("credentials must not be empty")
        if dialect not in DIALECTS:
            raise ValueError(f"dialect must be one of {sorted(DIALECTS)}")
        if source_ips is not None:
            for address in source_ips:
                _require_loopback(address)
        self.host = host
        self.port = port
        self.count = count
        self.credentials = list(credentials)
        self.domain = domain
        self.source_ips = None if source_ips is None else list(source_ips)
        self.calling_names = calling_names
        self.open_files = open_files
        self.share = share
        self.dialect = dialect
        self.timeout = timeout
        self.workers = max(1, workers)
        self._held: list[_Held] = []
        self._is_open = False
        self._file_tag = f"{os.getpid()}_{id(self):x}"

    # ------------------------------------------------------------------ plan
    def _source_for(self, index: int) -> str | None:
        if self.source_ips is None:
            if ipaddress.ip_address(self.host).version == 6:
                return None
            return loopback_source(index)
        if not self.source_ips:
            return None
        return self.source_ips[index % len(self.source_ips)]

    def _open_one(self, index: int) -> _Held:
        user, password = self.credentials[index % len(self.credentials)]
        source_ip = self._source_for(index)
        calling = self.calling_names.format(i=index) if self.calling_names else None
        _connect_options.source_ip = source_ip
        _connect_options.calling_name = calling
        try:
            conn = SMBConnection(
                self.host,
                self.host,
                myName=calling,
                sess_port=self.port,
                timeout=self.timeout,
                preferredDialect=DIALECTS[self.dialect],
            )
        finally:
            _connect_options.source_ip = None
            _connect_options.calling_name = None
        try:
            conn.login(user, password, domain=self.domain)
            held = _Held(info=self._describe(index, user, calling, conn, ()), conn=conn)
            if self.open_files:
                held.tree_id = conn.connectTree(self.share)
                names = []
                if self.share.upper() == "IPC$":
                    for _ in range(self.open_files):
                        held.file_ids.append(conn.openFile(held.tree_id, "srvsvc", desiredAccess=PIPE_ACCESS))
                        names.append("srvsvc")
                for k in range(0 if self.share.upper() == "IPC$" else self.open_files):
                    name = f"held_{self._file_tag}_{index}_{k}.tmp"
                    # Delete-on-close: files vanish however the session ends,
                    # including when the server kills it.
                    held.file_ids.append(
                        conn.createFile(
                            held.tree_id,
                            name,
                            desiredAccess=GENERIC_READ | GENERIC_WRITE | DELETE,
                            shareMode=FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                            creationOption=FILE_NON_DIRECTORY_FILE | FILE_DELETE_ON_CLOSE,
                            creationDisposition=FILE_OVERWRITE_IF,
                        )
                    )
                    names.append(name)
                held.info = self._describe(index, user, calling, conn, tuple(names))
            return held
        except BaseException:
            _close_quietly(conn)
            raise

    def _describe(
        self,
        index: int,
        user: str,
        calling: str | None,
        conn: SMBConnection,
        files: tuple[str, ...],
    ) -> HeldSession:
        local = conn.getSMBServer().get_socket().getsockname()
        return HeldSession(
            index=index,
            user=user,
            source_ip=local[0],
            source_port=local[1],
            calling_name=calling,
            dialect=conn.getDialect(),
            open_files=files,
        )

    # ------------------------------------------------------------- lifecycle
    def open(self) -> SessionHolder:
        """Open all sessions in parallel; on any failure close them all and raise."""
        if self._is_open:
            raise HolderError("already open")
        _install_patch()
        results: list[_Held | None] = [None] * self.count
        errors: list[tuple[int, BaseException]] = []

        def worker(index: int) -> None:
            try:
                results[index] = self._open_one(index)
            except Exception as exc:
                errors.append((index, exc))

        if self.count:
            with ThreadPoolExecutor(max_workers=min(self.workers, self.count)) as pool:
                list(pool.map(worker, range(self.count)))
        if errors:
            for held in results:
                if held is not None:
                    _close_quietly(held.conn)
            errors.sort(key=lambda item: item[0])
            index, exc = errors[0]
            raise HolderError(
                f"{len(errors)} of {self.count} sessions to {self.host}:{self.port} failed; "
                f"first (#{index}): {exc!r}"
            ) from exc
        self._held = [held for held in results if held is not None]
        self._is_open = True
        return self

    def close(self) -> None:
        """Log off and disconnect every session (in parallel, errors ignored)."""
        held, self._held = self._held, []
        self._is_open = False
        if not held:
            return

        def shut(item: _Held) -> None:
            if not item.dead:
                _set_timeout(item.conn, min(self.timeout, 2.0))
                # impacket's server ignores delete-on-close at logoff; an explicit
                # close lets every server remove the files.
                for file_id in item.file_ids:
                    with contextlib.suppress(Exception):
                        item.conn.closeFile(item.tree_id, file_id)
            _close_quietly(item.conn)

        with ThreadPoolExecutor(max_workers=min(self.workers, len(held))) as pool:
            list(pool.map(shut, held))

    def __enter__(self) -> SessionHolder:
        # Holders from the hold_sessions fixture arrive already open.
        return self if self._is_open else self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- query
    @property
    def sessions(self) -> list[HeldSession]:
        return [held.info for held in self._held]

    def __len__(self) -> int:
        return len(self._held)

    def connection(self, index: int) -> SMBConnection:
        """The impacket connection of session ``index`` (for tests that need more)."""
        return self._held[index].conn

    def alive(self, index: int, timeout: float = 2.0) -> bool:
        """True if session ``index`` still works on the server.

        A closed TCP connection is detected without sending anything; otherwise
        a tree connect to IPC$ (which needs a valid session, unlike an echo)
        must succeed within ``timeout``. Once False, always False.
        """
        held = self._held[index]
        if held.dead:
            return False
        sock = held.conn.getSMBServer().get_socket()
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable and sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                held.dead = True
                return False
        except OSError:
            held.dead = True
            return False
        _set_timeout(held.conn, timeout)
        try:
            tree = held.conn.connectTree("IPC$")
            held.conn.disconnectTree(tree)
        except Exception:
            held.dead = True
            return False
        _set_timeout(held.conn, self.timeout)
        return True

    def alive_all(self, timeout: float = 2.0) -> list[bool]:
        """``alive(i)`` for every session, probed in parallel."""
        if not self._held:
            return []
        with ThreadPoolExecutor(max_workers=min(self.workers, len(self._held))) as pool:
            return list(pool.map(lambda i: self.alive(i, timeout), range(len(self._held))))

    def indexes_where(self, **match: Any) -> list[int]:
        """Indexes of sessions whose HeldSession attributes equal ``match``."""
        return [
            i
            for i, held in enumerate(self._held)
            if all(getattr(held.info, key) == value for key, value in match.items())
        ]


def _close_quietly(conn: SMBConnection) -> None:
    try:
        conn.close()  # logs off first, ignoring errors
    except Exception:
        with contextlib.suppress(Exception):
            conn.getSMBServer().get_socket().close()


def distinct_sources(count: int) -> list[str]:
    """The first ``count`` addresses ``SessionHolder`` uses by default."""
    return [loopback_source(i) for i in range(count)]


__all__ = [
    "ANONYMOUS",
    "DIALECTS",
    "HeldSession",
    "HolderError",
    "SessionHolder",
    "distinct_sources",
    "loopback_source",
]
