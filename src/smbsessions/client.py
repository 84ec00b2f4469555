"""SessionClient: NetrSessionEnum / NetrSessionDel over one SMB connection.

The shell around the pure core: ``transport.SmbPipe`` (or any ``Pipe`` an
``open_pipe`` seam hands out) moves bytes, ``dcerpc`` frames them, ``ndr``
encodes and decodes them, and ``enumeration`` decides what the answers mean
(level fallback, paging guards, the entry budget, qualifiers a server skipped,
which "not found" applies). This module keeps the I/O, the deadlines, the byte
budget of the reassembly and the conversion to ``Session`` (cname normalised,
the raw value kept, our own session marked).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Protocol, cast

from .auth import Credentials
from .dcerpc import DEFAULT_MAX_FRAG, MAX_FRAG, PduStream, RpcClientConnection
from .enumeration import MAX_ENTRIES, Enumeration, Session, plan_enumeration
from .levels import MAX_PREFERRED_LENGTH, U32_MAX, SessionInfo
from .messages import DelRequest, EnumRequest, EnumResponse
from .ndr import (
    OPNUM_NETR_SESSION_DEL,
    OPNUM_NETR_SESSION_ENUM,
    decode_del_response,
    decode_enum_response,
    encode_del_request,
    encode_enum_request,
)
from .rpc_auth import NtlmRpcInitiator, RpcAuthLevel
from .rules import canonical_client_name, session_matches
from .status import HostTimeoutError, NetApiError, NetApiStatus, NtStatus, ProtocolError, TransportError
from .sweep.logon_guard import LogonGuard
from .transport import SmbPipe

__all__ = [
    "MAX_ENTRIES", "MAX_RESPONSE_BYTES", "Enumeration", "Pipe", "PipeOpener", "Session", "SessionClient",
    "open_smb_pipe",
]

log = logging.getLogger("smbsessions.client")

MAX_RESPONSE_BYTES = 256 << 20
"""Default byte budget of one enumeration (every page's stub together)."""
_DEADLINE_CHECK_EVERY = 4096
# NTSTATUS a server answers with when it has just torn our session down.
_CONNECTION_GONE = frozenset({
    NtStatus.STATUS_PIPE_BROKEN,
    NtStatus.STATUS_PIPE_DISCONNECTED,
    NtStatus.STATUS_USER_SESSION_DELETED,
    NtStatus.STATUS_NETWORK_NAME_DELETED,
})


class Pipe(Protocol):
    """What ``SessionClient`` needs of an open ``\\PIPE\\srvsvc``: ``transport.SmbPipe``,
    or an in-memory stand-in (tests, the no-socket client/server pairing)."""

    local_address: tuple[str, int]

    @property
    def closed(self) -> bool: ...

    @property
    def dialect_name(self) -> str: ...

    @property
    def signing(self) -> bool: ...

    @property
    def encryption(self) -> bool: ...

    def transceive(self, data: bytes, max_output: int = ..., *, timeout: float | None = None,
                   deadline: float | None = None) -> bytes: ...

    def write(self, data: bytes, *, timeout: float | None = None, deadline: float | None = None) -> int: ...

    def read(self, max_len: int = ..., *, timeout: float | None = None,
             deadline: float | None = None) -> bytes: ...

    def close(self) -> None: ...


class PipeOpener(Protocol):
    """How ``SessionClient`` opens its pipe: connect, log on, open ``srvsvc`` (not bound yet)."""

    def __call__(self, host: str, port: int, *, credentials: Credentials, timeout: float,
                 require_encryption: bool, deadline: float | None,
                 logon_guard: LogonGuard | None) -> Pipe: ...


def open_smb_pipe(host: str, port: int, *, credentials: Credentials, timeout: float,
                  require_encryption: bool, deadline: float | None,
                  logon_guard: LogonGuard | None) -> Pipe:
    """The default ``PipeOpener``: ``transport.SmbPipe.open`` on ``srvsvc``."""
    return SmbPipe.open(host, port, credentials=credentials, timeout=timeout,
                        require_encryption=require_encryption, deadline=deadline,
                        logon_guard=logon_guard)


class _OwnSession:
    """Recognises our own session in an enumeration (see ``Session.own_session``)."""

    def __init__(self, local_address: str | None, user: str, opened: float) -> None:
        self.cname = canonical_client_name(local_address) if local_address else None
        self.user = user.casefold()
        self.opened = opened

    def __call__(self, info: SessionInfo) -> bool:
        """``info`` with its cname already normalised."""
        if self.cname is None or info.cname != self.cname:
            return False
        if info.username is not None and info.username.casefold() != self.user:
            return False
        if info.time is None or info.time == U32_MAX:
            return True
        return info.time <= time.monotonic() - self.opened + 2


def _as_session(info: SessionInfo, level: int, own: _OwnSession | None = None) -> Session:
    raw = info.cname
    if raw is not None:
        info = info._replace(cname=canonical_client_name(raw))
    return Session(info.project(level), level, raw, own is not None and own(info))


class SessionClient:
    """One authenticated SMB connection with a bound srvsvc pipe.

    >>> with SessionClient("fileserver", credentials=creds) as client:   # doctest: +SKIP
    ...     for session in client.enum():
    ...         print(session.client_name, session.user_name)
    """

    def __init__(
        self,
        host: str,
        port: int = 445,
        *,
        credentials: Credentials,
        timeout: float = 10.0,
        require_encryption: bool = False,
        deadline: float | None = None,
        logon_guard: LogonGuard | None = None,
        max_entries: int = MAX_ENTRIES,
        max_bytes: int = MAX_RESPONSE_BYTES,
        rpc_auth: RpcAuthLevel | str | None = None,
        open_pipe: PipeOpener | None = None,
    ) -> None:
        """``timeout``: seconds for connecting and for each call. ``deadline``: a
        ``time.monotonic()`` by which everything this client does must be over (one
        budget for a whole command: connecting, every page, decoding, converting);
        waits and work past it raise ``HostTimeoutError``. ``max_entries`` and
        ``max_bytes`` bound one enumeration across all its pages (``ProtocolError``
        beyond). ``logon_guard``: a sweep's lockout protection around the logon.
        ``rpc_auth`` (connect, integrity, privacy): also authenticate the DCE/RPC bind
        with NTLM at that level, for servers that demand RPC-level authentication.
        ``open_pipe``: how the pipe is opened (default ``open_smb_pipe``, over SMB)."""
        self.host = host
        self.rpc_auth = None if rpc_auth is None else RpcAuthLevel(rpc_auth)
        self.port = port
        self.credentials = credentials
        self.timeout = timeout
        self.require_encryption = require_encryption
        self.deadline = deadline
        self.logon_guard = logon_guard
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._opened = 0.0
        self._received = 0  # stub bytes of the enumeration in progress
        self._open_pipe = open_pipe
        self._pipe: Pipe | None = None
        self._aborted = False
        self._rpc = self._new_rpc()

    def _new_rpc(self) -> RpcClientConnection:
        if self.rpc_auth is None:
            return RpcClientConnection(max_xmit_frag=DEFAULT_MAX_FRAG, max_recv_frag=MAX_FRAG)
        return RpcClientConnection(max_xmit_frag=DEFAULT_MAX_FRAG, max_recv_frag=MAX_FRAG,
                                   auth=NtlmRpcInitiator(self.credentials, self.host),
                                   auth_level=self.rpc_auth.auth_level)

    # ---- connection

    def open(self) -> SessionClient:
        """Connect, authenticate, open ``\\PIPE\\srvsvc`` and bind (idempotent)."""
        if self._aborted:
            raise HostTimeoutError(f"{self.host}:{self.port}: aborted")
        if self._pipe is not None:
            if not self._pipe.closed:
                return self
            self._pipe = None  # the connection was lost: start over
        self._rpc = self._new_rpc()
        self._check_deadline("connecting")
        self._opened = time.monotonic()
        opener = open_smb_pipe if self._open_pipe is None else self._open_pipe
        pipe = opener(
            self.host,
            self.port,
            credentials=self.credentials,
            timeout=self.timeout,
            require_encryption=self.require_encryption,
            deadline=self.deadline,
            logon_guard=self.logon_guard,
        )
        try:
            reply = pipe.transceive(self._rpc.bind(), MAX_FRAG)
            self._rpc.receive_bind_ack(reply)
            auth3 = self._rpc.auth3()
            if auth3 is not None:  # RPC-level auth: the third leg has no answer
                pipe.write(auth3, timeout=self.timeout)
        except BaseException:
            pipe.close()
            raise
        self._pipe = pipe
        log.debug("%s:%d: %s, signing %s, encryption %s; srvsvc bound (fragments up to %d, RPC auth %s)",
                  self.host, self.port, pipe.dialect_name, pipe.signing, pipe.encryption,
                  self._rpc.max_xmit_frag, self.rpc_auth.value if self.rpc_auth else "none")
        if self._aborted:  # abort() ran while we were connecting
            self.close()
            raise HostTimeoutError(f"{self.host}:{self.port}: aborted")
        return self

    def start_deadline(self, seconds: float | None = None) -> SessionClient:
        """One deadline for the command starting now: ``seconds`` (default ``timeout``) for
        everything from here on (connecting, every page, decoding, converting). Call it
        again after waiting for a person (a confirmation prompt)."""
        self.deadline = time.monotonic() + (self.timeout if seconds is None else seconds)
        return self

    def abort(self) -> None:
        """Stop this client from another thread (a watchdog): close the connection.

        Any wait for a reply wakes up with an error, and every later call,
        reconnecting included, raises ``HostTimeoutError``.
        """
        self._aborted = True
        pipe = self._pipe
        if pipe is not None:
            pipe.close()

    def close(self) -> None:
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None

    def __enter__(self) -> SessionClient:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def dialect(self) -> str | None:
        """The negotiated SMB dialect (``"SMB 3.1.1"``), once open."""
        return None if self._pipe is None else self._pipe.dialect_name

    def _call(self, opnum: int, stub: bytes) -> bytes:
        """One DCE/RPC call: request fragments out, the reassembled response stub back.

        The whole call, however many fragments the server sends, must finish
        within ``timeout``: a server trickling fragments cannot hold it longer.
        """
        pipe = self.open()._pipe
        assert pipe is not None
        deadline = time.monotonic() + self.timeout
        if self.deadline is not None:
            deadline = min(deadline, self.deadline)

        def remaining() -> float:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._timed_out()
            return left

        # The pipe is given the deadline, not the leftover seconds: its timeout
        # messages then name the configured timeout.
        fragments = self._rpc.request(opnum, stub)
        for fragment in fragments[:-1]:
            remaining()
            pipe.write(fragment, deadline=deadline)
        stream = PduStream()
        remaining()
        data = pipe.transceive(fragments[-1], MAX_FRAG, deadline=deadline)
        budget = max(0, self.max_bytes - self._received)
        while True:
            for pdu in stream.feed(data):
                try:
                    answer = self._rpc.receive(pdu, budget)
                except ProtocolError as exc:
                    if self._received:
                        raise ProtocolError(f"{exc} (the enumeration's budget is {self.max_bytes:,} bytes "
                                            "across its pages)") from None
                    raise
                if answer is not None:
                    self._received += len(answer)
                    return answer
            remaining()
            data = pipe.read(MAX_FRAG, deadline=deadline)
            if not data:
                raise ProtocolError("the server ended the response without its last fragment")

    def _timed_out(self) -> HostTimeoutError:
        return HostTimeoutError(f"{self.host}:{self.port}: no complete answer within {self.timeout:g} s")

    def _check_deadline(self, doing: str) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise HostTimeoutError(
                f"{self.host}:{self.port}: the {self.timeout:g} s timeout ran out while {doing}"
            )

    # ---- NetrSessionEnum

    def enum_page(
        self,
        level: int,
        client: str | None = None,
        user: str | None = None,
        max_length: int = MAX_PREFERRED_LENGTH,
        resume_handle: int | None = 0,
    ) -> EnumResponse:
        """One NetrSessionEnum call, exactly as the server answered (no fallback, no filtering)."""
        request = EnumRequest(
            level,
            server_name=None,
            client_name=canonical_client_name(client) if client else None,
            user_name=user or None,
            prefmaxlen=max_length,
            resume_handle=resume_handle,
        )
        response = decode_enum_response(self._call(OPNUM_NETR_SESSION_ENUM, encode_enum_request(request)))
        self._check_deadline("decoding the answer")
        log.debug("%s:%d: NetrSessionEnum level %d client=%r user=%r max=%d resume=%s -> %s, %s entries,"
                  " total %d, resume %s", self.host, self.port, level, request.client_name,
                  request.user_name, max_length, resume_handle,
                  NetApiError(response.status).name if response.status else "NERR_Success",
                  "no" if response.entries is None else len(response.entries), response.total_entries,
                  response.resume_handle)
        if response.level != level:
            raise ProtocolError(f"asked for level {level}, the server answered level {response.level}")
        return response

    def enum(
        self,
        level: int | None = None,
        client: str | None = None,
        user: str | None = None,
        max_length: int = MAX_PREFERRED_LENGTH,
    ) -> Enumeration:
        """Every session across every page, at ``level`` (None: the richest the server allows).

        Raises ``NetApiError`` for a refusal (``.attempts`` lists the levels tried),
        including NERR_ClientNameNotFound / NERR_UserNotFound when qualifiers match
        nothing, even on servers that ignore qualifiers. The decisions are
        ``enumeration.plan_enumeration``'s; this shell fetches and converts.
        """

        def fetch_page(page_level: int, resume_handle: int) -> EnumResponse:
            if resume_handle == 0:  # the first page of a level: a new byte budget
                self._received = 0
            return self.enum_page(page_level, client, user, max_length, resume_handle)

        plan = plan_enumeration(fetch_page, level, client, user, max_entries=self.max_entries)
        if plan.collected:
            sessions: Iterator[list[Session]] | Iterator[Session] = iter(
                [self._convert(page, plan.level) for page in plan.pages])
        else:
            sessions = self._stream(plan.pages, plan.level)
        return Enumeration(plan.level, plan.attempts, plan.total_entries_hint, sessions,
                           filtered_locally=plan.filtered_locally)

    def _own_session(self) -> _OwnSession | None:
        pipe = self._pipe
        if pipe is None or self.credentials.anonymous:
            return None
        local = getattr(pipe, "local_address", (None,))[0]
        return _OwnSession(local, self.credentials.username, self._opened)

    def _convert(self, page: list[SessionInfo], level: int) -> list[Session]:
        own = self._own_session()
        return [_as_session(info, level, own) for info in page]

    def _stream(self, pages: Iterator[list[SessionInfo]], level: int) -> Iterator[Session]:
        """Sessions one at a time, converted as they are taken (no second copy of a page),
        with the deadline checked as they go."""
        own = self._own_session()
        for page in pages:
            slots = cast(list[SessionInfo | None], page)
            for index in range(len(slots)):
                if not index % _DEADLINE_CHECK_EVERY:
                    self._check_deadline("converting the answer")
                info = slots[index]
                slots[index] = None  # the decoded entry goes as its Session comes: one copy at a time
                assert info is not None
                yield _as_session(info, level, own)

    def get_info(self, client: str, user: str, level: int | None = None) -> Session:
        """NetSessionGetInfo: the session of ``user`` from ``client`` (both required)."""
        if not client or not user:
            raise ValueError("get_info needs both a client name and a user name")
        for session in self.enum(level, client, user):
            return session
        raise NetApiError(NetApiStatus.NERR_ClientNameNotFound)  # pragma: no cover - enum raised

    # ---- NetrSessionDel

    def delete(self, client: str | None = None, user: str | None = None, *, force_all: bool = False) -> None:
        """NetrSessionDel: close every session matching ``client`` and/or ``user``.

        Both None would disconnect everyone (on Samba the caller too): refused
        unless ``force_all``. When the caller's own session is among those
        closed, the server may cut the connection before answering; that is
        reported as success when the qualifiers cover the caller.
        """
        if not client and not user and not force_all:
            raise ValueError("refusing to delete every session: name a client or a user, or pass force_all")
        request = DelRequest(
            None, canonical_client_name(client) if client else None, user or None
        )
        try:
            status = decode_del_response(self._call(OPNUM_NETR_SESSION_DEL, encode_del_request(request)))
        except TransportError as exc:
            pipe = self._pipe
            # Samba tears our own smbd down before answering; the socket then closes,
            # or (seen under load) the reply just never comes. Either means the delete
            # reached the server. Any other NTSTATUS is a real failure.
            connection_gone = (
                isinstance(exc, HostTimeoutError)
                or (pipe is not None and pipe.closed)
                or exc.ntstatus in _CONNECTION_GONE
            )
            if connection_gone and self._covers_self(client, user):
                self.close()
                return
            raise
        if status != NetApiStatus.NERR_Success:
            raise NetApiError(status)

    def _covers_self(self, client: str | None, user: str | None) -> bool:
        pipe = self._pipe
        if pipe is None:
            return False
        own = SessionInfo(cname=pipe.local_address[0], username=self.credentials.username)
        return session_matches(own, canonical_client_name(client) if client else None, user)

