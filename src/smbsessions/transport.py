"""SMB 2/3 transport to a named pipe (``\\PIPE\\srvsvc``) on smbprotocol.

``SmbPipe.open`` makes one TCP connection, negotiates SMB 2.0.2 to 3.1.1, logs on
(NTLM with a password or an NT hash, Kerberos, or an anonymous null session), tree
connects ``IPC$`` and opens the pipe. ``transceive`` is one FSCTL_PIPE_TRANSCEIVE round
trip, the way Windows clients carry a DCE/RPC request and its answer.

Timeouts: the whole of ``open`` (TCP connect, negotiate, logon, tree connect, create)
shares one deadline, and each pipe operation gets its own. smbprotocol waits for
replies on a per-request event fed by its receive thread; ``DeadlineConnection``
bounds every such wait, so a host that accepts TCP and then stays silent, or trickles
bytes, costs at most ``timeout`` plus the teardown. Name resolution (getaddrinfo) is
not bounded: resolve names beforehand where that matters.

Signing: the client requires it for every authenticated session. MS-SMB2 3.2.4.1.1
makes a signed TREE_CONNECT mandatory on SMB 3.1.1, Samba answers an unsigned one to
IPC$ with STATUS_ACCESS_DENIED, and smbprotocol signs nothing unless signing is
required. An anonymous session has no key: it is unsigned, and fails with a clear
error if the server insists on signing or encryption. Encryption is used when the
server asks for it (per session or per share, SMB 3.x) or when ``require_encryption``.

Every reach into smbprotocol's internals (the deadline, the bounded socket read, the
null session, the socket's addresses) sits in ``_smbprotocol_compat``; the anonymous
NTLM messages are ``smbsessions.ntlm``'s, the SMB1 probe ``smb1_probe``'s. This module
keeps ``SmbPipe`` and the translation of failures into typed errors; ``logon`` builds
the session. It is longer than most modules (~570 lines) because the translation needs
what only ``open`` knows (the phase, the deadline, the peer's refused bytes): the two
stay together.

Errors are the exceptions of ``smbsessions.status``. After a timeout or a lost
connection the pipe is closed; an NTSTATUS error on an operation leaves it open.
``close`` never raises and leaves no thread or socket behind.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from smbprotocol.connection import Dialects
from smbprotocol.exceptions import (
    BufferOverflow,
    SMBAuthenticationError,
    SMBConnectionClosed,
    SMBException,
    SMBResponseException,
)
from smbprotocol.ioctl import CtlCode, IOCTLFlags, SMB2IOCTLRequest, SMB2IOCTLResponse
from smbprotocol.open import (
    CreateDisposition,
    CreateOptions,
    ImpersonationLevel,
    Open,
    ShareAccess,
    SMB2ReadRequest,
    SMB2ReadResponse,
)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

from smbsessions._smbprotocol_compat import (
    DeadlineConnection,
    DeadlineExpired,
    socket_addresses,
    teardown,
    worker_started,
)
from smbsessions.addresses import format_host_port
from smbsessions.auth import Credentials
from smbsessions.logon import kerberos_skew, logon, make_session
from smbsessions.smb1_probe import speaks_only_smb1
from smbsessions.status import (
    AuthenticationError,
    HostTimeoutError,
    HostUnreachableError,
    ProtocolError,
    SmbSessionsError,
    TransportError,
    UnsupportedDialectError,
    ntstatus_failure,
)
from smbsessions.sweep.logon_guard import LogonGuard

__all__ = ["MAX_MESSAGE_BYTES", "MAX_TRANSCEIVE_OUTPUT", "SmbPipe", "dialect_name"]

PIPE_DESIRED_ACCESS = 0x0012019F
"""FILE_READ_DATA|WRITE_DATA|APPEND_DATA|READ_EA|WRITE_EA|READ_ATTRIBUTES|
WRITE_ATTRIBUTES|READ_CONTROL|SYNCHRONIZE, what Windows asks for on a pipe. Samba
refuses plain GENERIC_READ|GENERIC_WRITE on srvsvc."""

MAX_TRANSCEIVE_OUTPUT = 65536
"""Largest ``max_output`` that costs one credit (MS-SMB2 3.1.5.2)."""

# smbprotocol logs its receive thread's death with a traceback at ERROR level, and
# without a handler of its own that would reach stderr through logging's last
# resort. A NullHandler keeps it quiet unless the application configures logging.
logging.getLogger("smbprotocol").addHandler(logging.NullHandler())

MAX_MESSAGE_BYTES = MAX_TRANSCEIVE_OUTPUT + 8192
"""Largest SMB message accepted from a server. No request of ours asks for more than
``MAX_TRANSCEIVE_OUTPUT`` bytes of output, so a reply is at most that plus its headers
(SMB2 header, command structure, transform header when encrypted). A longer claimed
length is refused before anything is allocated for it."""

# What smbprotocol raises while parsing a reply it cannot make sense of.
_MALFORMED = (struct.error, KeyError, IndexError, TypeError, ValueError, UnicodeDecodeError)

_MAX_MESSAGE_READS = 1024  # bounds the reads that finish one overflowing pipe message

_DIALECT_NAMES: dict[int, str] = {
    Dialects.SMB_2_0_2: "SMB 2.0.2",
    Dialects.SMB_2_1_0: "SMB 2.1",
    Dialects.SMB_3_0_0: "SMB 3.0",
    Dialects.SMB_3_0_2: "SMB 3.0.2",
    Dialects.SMB_3_1_1: "SMB 3.1.1",
}


def dialect_name(dialect: int) -> str:
    """``SMB 3.1.1`` for 0x0311, and so on."""
    return _DIALECT_NAMES.get(dialect, f"SMB dialect 0x{dialect:04X}")


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, (DeadlineExpired, TimeoutError)) or isinstance(exc.__cause__, TimeoutError)


def _connect_failure(exc: BaseException, where: str) -> SmbSessionsError:
    cause = exc.__cause__ if isinstance(exc, ValueError) and exc.__cause__ else exc
    if isinstance(cause, TimeoutError):
        return HostTimeoutError(f"{where}: TCP connect timed out")
    if isinstance(cause, socket.gaierror):
        return HostUnreachableError(f"{where}: cannot resolve the host name ({cause.strerror})")
    if isinstance(cause, ConnectionRefusedError):
        return HostUnreachableError(f"{where}: connection refused")
    if isinstance(cause, OSError):
        return HostUnreachableError(f"{where}: cannot connect ({cause.strerror or cause})")
    return TransportError(f"{where}: cannot connect ({type(cause).__name__})")


class SmbPipe:
    """One SMB connection, session, IPC$ tree connect and open named pipe.

    Create with ``SmbPipe.open``; use as a context manager or call ``close``.
    Not thread-safe: one caller at a time.
    """

    def __init__(
        self,
        connection: DeadlineConnection,
        session: Session,
        tree: TreeConnect,
        handle: Open,
        *,
        host: str,
        port: int,
        pipe: str,
        timeout: float,
        credentials: Credentials,
    ) -> None:
        """Internal: use ``SmbPipe.open``."""
        self._connection = connection
        self._session = session
        self._tree = tree
        self._handle = handle
        self._closed = False
        # A forgotten SmbPipe must not keep its socket and receive thread alive.
        self._finalizer = weakref.finalize(self, teardown, connection)
        self.host = host
        self.port = port
        self.pipe = pipe
        self.timeout = timeout
        self.username = credentials.principal
        self.anonymous = credentials.anonymous
        peer, local = socket_addresses(connection)
        self.server_address: tuple[str, int] = peer
        """The peer's IP address and port actually connected to."""
        self.local_address: tuple[str, int] = local
        """Our side of the TCP connection: the address the server sees as the client."""

    @classmethod
    def open(
        cls,
        host: str,
        port: int = 445,
        *,
        credentials: Credentials,
        timeout: float = 10.0,
        pipe: str = "srvsvc",
        require_encryption: bool = False,
        deadline: float | None = None,
        logon_guard: LogonGuard | None = None,
    ) -> SmbPipe:
        """Connect, log on, tree connect IPC$ and open ``pipe``, all within ``timeout`` s.

        ``deadline`` (``time.monotonic()``) ends it earlier if it comes first; messages
        still name ``timeout``. ``logon_guard`` (a sweep's lockout protection) wraps
        the session setup.

        ``pipe`` is the pipe name (``srvsvc``; a ``\\PIPE\\`` prefix is accepted).
        ``credentials`` must not need a password any more (see
        ``auth.resolve_password``).

        Raises ``HostUnreachableError`` (refused, no route, name not resolved),
        ``HostTimeoutError``, ``UnsupportedDialectError`` (no SMB 2/3, e.g. an
        SMB1-only server), ``AuthenticationError`` (with the NTSTATUS name), or
        ``TransportError`` (``ntstatus`` set when the server answered with one, e.g.
        STATUS_ACCESS_DENIED or STATUS_OBJECT_NAME_NOT_FOUND opening the pipe).
        """
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if credentials.needs_password:
            raise AuthenticationError(
                f"no password for {credentials.principal}: resolve it before connecting"
            )
        if credentials.anonymous and require_encryption:
            raise AuthenticationError("an anonymous session cannot be encrypted (no session key)")
        if credentials.kerberos:
            # Kerberos plumbing (kerberos.py): one TGT per process, the SPN's host name
            # checked before any connection is made; raises typed KerberosErrors.
            from smbsessions import kerberos

            credentials = kerberos.prepare(credentials)
            kerberos.spn_host(credentials, host)
        pipe_name = _bare_pipe_name(pipe)
        where = f"{format_host_port(host, port)}"
        own_deadline = time.monotonic() + timeout
        deadline = own_deadline if deadline is None else min(deadline, own_deadline)
        connection = DeadlineConnection(uuid.uuid4(), host, port, require_signing=not credentials.anonymous)
        connection.max_message_bytes = MAX_MESSAGE_BYTES
        connection.deadline = deadline
        phase = "connect"
        try:
            try:
                connection.connect(timeout=max(deadline - time.monotonic(), 0.001))
            except ValueError as exc:
                # Tcp.connect wraps socket errors in ValueError; later ones are protocol.
                if not worker_started(connection):
                    raise _connect_failure(exc, where) from None
                raise
            phase = "session setup"
            session = make_session(connection, credentials, host, require_encryption)
            if logon_guard is None or credentials.anonymous:
                session.connect()
            else:
                with logon_guard.logon(where, deadline):
                    logon(session, where)
            phase = "tree connect"
            tree = TreeConnect(session, rf"\\{host}\IPC$")
            # Secure negotiate needs a signing key, which a null session lacks; it is
            # a no-op on 3.1.1 anyway, where the preauth hash protects the negotiate.
            tree.connect(require_secure_negotiate=not credentials.anonymous)
            phase = f"opening pipe {pipe_name}"
            handle = Open(tree, pipe_name)
            handle.create(
                ImpersonationLevel.Impersonation,
                PIPE_DESIRED_ACCESS,
                0,
                ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE,
                CreateDisposition.FILE_OPEN,
                CreateOptions.FILE_NON_DIRECTORY_FILE,
            )
            pipe_obj = cls(
                connection,
                session,
                tree,
                handle,
                host=host,
                port=port,
                pipe=pipe_name,
                timeout=timeout,
                credentials=credentials,
            )
        except BaseException as exc:
            teardown(connection)
            if not isinstance(exc, Exception) or isinstance(exc, SmbSessionsError):
                raise
            if phase == "connect" and connection.dialect is None and worker_started(connection):
                phase = "negotiate"
            raise _translate(exc, phase, where, timeout, host, port, deadline, connection) from None
        connection.deadline = None
        return pipe_obj

    # -- properties -----------------------------------------------------------------

    @property
    def dialect(self) -> int:
        """The negotiated dialect, e.g. ``0x0311`` (see ``dialect_name``)."""
        return int(self._connection.dialect)

    @property
    def dialect_name(self) -> str:
        """The negotiated dialect as text, e.g. ``SMB 3.1.1``."""
        return dialect_name(self.dialect)

    @property
    def signing(self) -> bool:
        """True if this session's messages are signed."""
        return bool(self._session.signing_required and self._session.signing_key)

    @property
    def encryption(self) -> bool:
        """True if this session's messages to the pipe are encrypted (SMB 3.x)."""
        return bool(self._session.encrypt_data or self._tree.encrypt_data)

    @property
    def closed(self) -> bool:
        """True once ``close`` ran or the connection was lost."""
        return self._closed

    @property
    def max_transact_size(self) -> int:
        """The server's limit for one transceive's input or output."""
        return int(self._connection.max_transact_size)

    # -- pipe I/O -------------------------------------------------------------------

    def transceive(
        self,
        data: bytes,
        max_output: int = MAX_TRANSCEIVE_OUTPUT,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> bytes:
        """Write ``data`` as one pipe message and return the reply message: one round trip.

        If the reply is longer than ``max_output`` the server answers
        STATUS_BUFFER_OVERFLOW with the first ``max_output`` bytes; the rest of that
        message is then fetched with reads (each also STATUS_BUFFER_OVERFLOW until the
        last), so the whole message is returned either way. ``max_output`` is capped
        at the server's max transact size.

        Each operation waits up to ``timeout`` (default: the pipe's), or until
        ``deadline`` (``time.monotonic()``) if that comes first; a timeout message
        names the timeout, never the leftover of a deadline.
        """
        self._check_open()
        request = SMB2IOCTLRequest()
        request["ctl_code"] = CtlCode.FSCTL_PIPE_TRANSCEIVE
        request["file_id"] = self._handle.file_id
        request["max_output_response"] = max(1, min(max_output, self.max_transact_size))
        request["flags"] = IOCTLFlags.SMB2_0_IOCTL_IS_FSCTL
        request["buffer"] = bytes(data)
        with self._operation("transceive", timeout, deadline):
            header, overflow = self._exchange(request)
            reply = SMB2IOCTLResponse()
            reply.unpack(header["data"].get_value())
            output = cast(bytes, reply["buffer"].get_value())
            if overflow:
                output += self._read_rest_of_message()
        return output

    def write(self, data: bytes, *, timeout: float | None = None, deadline: float | None = None) -> int:
        """Write ``data`` to the pipe (split at the server's max write size)."""
        self._check_open()
        view = memoryview(bytes(data))
        chunk = int(self._connection.max_write_size)
        written = 0
        with self._operation("write", timeout, deadline):
            while written < len(view) or not view:
                count = int(self._handle.write(bytes(view[written : written + chunk]), 0))
                if not view:
                    break
                if count <= 0:
                    raise TransportError(f"{self._where()}: the server accepted no bytes")
                written += count
        return written

    def read(
        self,
        max_len: int = MAX_TRANSCEIVE_OUTPUT,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> bytes:
        """Read up to ``max_len`` bytes from the pipe; waits for data (up to the timeout).

        A shorter result than the pending message (STATUS_BUFFER_OVERFLOW) is not an
        error: read again for the rest.
        """
        self._check_open()
        with self._operation("read", timeout, deadline):
            data, _more = self._read_chunk(max(1, min(max_len, int(self._connection.max_read_size))))
        return data

    def close(self) -> None:
        """Close the pipe, log off and disconnect. Idempotent; never raises.

        Closing the TCP connection ends the session and the open on the server, so
        no SMB CLOSE/TREE_DISCONNECT/LOGOFF round trips are spent on it.
        """
        if self._closed:
            return
        self._closed = True
        self._finalizer()

    def __enter__(self) -> SmbPipe:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.dialect_name
        return f"<SmbPipe {format_host_port(self.host, self.port)} {self.pipe!r} {state}>"

    # -- internals ------------------------------------------------------------------

    def _where(self) -> str:
        return f"{format_host_port(self.host, self.port)} pipe {self.pipe}"

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"{self._where()}: the pipe is closed")

    @contextmanager
    def _operation(self, what: str, timeout: float | None, deadline: float | None = None) -> Iterator[None]:
        budget = self.timeout if timeout is None else timeout
        end = time.monotonic() + budget
        self._connection.deadline = end if deadline is None else min(end, deadline)
        try:
            yield
        except SmbSessionsError:
            raise
        except SMBResponseException as exc:
            raise ntstatus_failure(TransportError, f"{self._where()}: {what}", int(exc.status)) from None
        except Exception as exc:
            refused = _refused(self._connection, self._where(), what)
            self.close()
            if refused is not None:
                raise refused from None
            if _is_timeout(exc):
                raise HostTimeoutError(f"{self._where()}: no reply to {what} within {budget:g} s") from None
            if isinstance(exc, _MALFORMED):
                raise _malformed(self._where(), what, exc) from None
            raise TransportError(
                f"{self._where()}: {what} failed, connection lost ({_describe(exc)})"
            ) from None
        finally:
            self._connection.deadline = None

    def _read_chunk(self, length: int) -> tuple[bytes, bool]:
        """One SMB2 READ: (data, more of the same message remains)."""
        request = SMB2ReadRequest()
        request["length"] = length
        request["offset"] = 0
        request["file_id"] = self._handle.file_id
        request["padding"] = b"\x50"
        header, more = self._exchange(request)
        reply = SMB2ReadResponse()
        reply.unpack(header["data"].get_value())
        return cast(bytes, reply["buffer"].get_value()), more

    def _exchange(self, request: Any) -> tuple[Any, bool]:
        """Send one request; its reply header, and whether more of the pipe message remains.

        STATUS_BUFFER_OVERFLOW on a pipe is not an error: the reply carries the
        first part of a message the next reads continue.
        """
        sent = self._connection.send(request, self._session.session_id, self._tree.tree_connect_id)
        try:
            return self._connection.receive(sent), False
        except BufferOverflow as exc:
            return exc.header, True

    def _read_rest_of_message(self) -> bytes:
        parts: list[bytes] = []
        length = min(MAX_TRANSCEIVE_OUTPUT, int(self._connection.max_read_size))
        for _ in range(_MAX_MESSAGE_READS):
            data, more = self._read_chunk(length)
            parts.append(data)
            if not more:
                return b"".join(parts)
        raise TransportError(f"{self._where()}: the reply message did not end")


def _translate(
    exc: Exception,
    phase: str,
    where: str,
    timeout: float,
    host: str,
    port: int,
    deadline: float,
    connection: DeadlineConnection,
) -> SmbSessionsError:
    refused = _refused(connection, where, phase)
    if refused is not None:
        return refused
    if _is_timeout(exc):
        return HostTimeoutError(f"{where}: no reply within {timeout:g} s, during {phase}")
    if isinstance(exc, SMBResponseException):
        status = int(exc.status)
        if phase == "session setup":
            skewed = kerberos_skew(connection, where, status)
            return skewed or ntstatus_failure(AuthenticationError, f"{where}: {phase}", status)
        if phase == "negotiate":
            return ntstatus_failure(UnsupportedDialectError, f"{where}: {phase}", status)
        return ntstatus_failure(TransportError, f"{where}: {phase}", status)
    if phase == "negotiate":
        closed = isinstance(exc, SMBConnectionClosed | OSError)
        # Only an SMB1 answer makes a server "SMB1-only": to our SMB2 NEGOTIATE, or,
        # when that connection was just closed, to an SMB1 NEGOTIATE on a new one.
        if closed and speaks_only_smb1(host, port, deadline):
            return _smb1_only(where)
        if closed:
            return HostUnreachableError(f"{where}: the server closed the connection during negotiate")
        if isinstance(exc, _MALFORMED):
            return _malformed(where, phase, exc)
        return TransportError(f"{where}: the SMB2 NEGOTIATE failed ({_describe(exc)})")
    if phase == "session setup":
        from smbsessions.kerberos import translate as kerberos_error

        typed = kerberos_error(exc, where=where)  # a GSSAPI/krb5 failure, typed
        if typed is not None:
            return typed
    if phase == "session setup" and isinstance(exc, SMBAuthenticationError):
        return AuthenticationError(f"{where}: logon failed: {exc}")
    if phase == "session setup" and type(exc) is SMBException:
        # smbprotocol refuses a guest session when signing is required: the server
        # did not accept these credentials, it only offered guest access.
        return AuthenticationError(f"{where}: logon not accepted: {exc}")
    if isinstance(exc, SMBConnectionClosed | OSError):
        return TransportError(f"{where}: the server closed the connection during {phase}")
    if isinstance(exc, _MALFORMED):
        return _malformed(where, phase, exc)
    return TransportError(f"{where}: {phase} failed ({_describe(exc)})")


def _malformed(where: str, phase: str, exc: BaseException) -> ProtocolError:
    return ProtocolError(f"{where}: a malformed SMB reply during {phase} ({type(exc).__name__}: {exc})")


def _smb1_only(where: str) -> UnsupportedDialectError:
    return UnsupportedDialectError(
        f"{where}: the server speaks only SMB1; SMB1 is not supported (SMB 2/3 only)"
    )


def _refused(connection: DeadlineConnection, where: str, phase: str) -> SmbSessionsError | None:
    """The error for a peer whose bytes the transport refused (see ``_BoundedTcp``), if any."""
    if connection.smb1_answer:
        return _smb1_only(where)
    violation = connection.violation
    if violation is None:
        return None
    return ProtocolError(f"{where}: {violation}, during {phase}")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SMBException) and not isinstance(exc, SMBResponseException):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return type(exc).__name__


def _bare_pipe_name(pipe: str) -> str:
    name = pipe.replace("/", "\\").lstrip("\\")
    if name.lower().startswith("pipe\\"):
        name = name[5:]
    if not name or "\\" in name:
        raise ValueError(f"invalid pipe name {pipe!r}")
    return name


