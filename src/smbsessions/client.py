"""SessionClient: NetrSessionEnum / NetrSessionDel over one SMB connection.

The shell around the pure core: ``transport.SmbPipe`` moves bytes,
``dcerpc`` frames them, ``ndr`` encodes and decodes them, ``rules`` supplies
the qualifier matching a server may have skipped.

Interop realities handled here (SPEC.md section 5):

* No level requested: the richest level the server allows answers (502, 10,
  2, 1, 0, moving on after ERROR_INVALID_LEVEL or ERROR_ACCESS_DENIED).
* Servers that ignore ClientName/UserName (Samba): the qualifiers are applied
  here, including NERR_ClientNameNotFound / NERR_UserNotFound.
* Paging: loop on ERROR_MORE_DATA with the resume handle; a handle that does
  not advance or a page that brings nothing is a protocol error, never a loop.
* cname is normalised (``\\\\`` prefix, IPv6 in brackets); the raw value is kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, cast

from .auth import Credentials
from .dcerpc import DEFAULT_MAX_FRAG, MAX_FRAG, PduStream, RpcClientConnection
from .levels import FALLBACK_ORDER, MAX_PREFERRED_LENGTH, U32_MAX, SessionInfo, check_level
from .sweep.logon_guard import LogonGuard
from .ndr import (
    OPNUM_NETR_SESSION_DEL,
    OPNUM_NETR_SESSION_ENUM,
    DelRequest,
    EnumRequest,
    EnumResponse,
    decode_del_response,
    decode_enum_response,
    encode_del_request,
    encode_enum_request,
)
from .rpc_auth import NtlmRpcInitiator, RpcAuthLevel
from .rules import canonical_client_name, not_found_status, session_matches
from .status import HostTimeoutError, NetApiError, NetApiStatus, ProtocolError, TransportError
from .transport import SmbPipe

log = logging.getLogger("smbsessions.client")

# A server may not make us page forever or buffer without bound.
MAX_PAGES = 100_000
MAX_RESPONSE_BYTES = 256 << 20
"""Default byte budget of one enumeration (every page's stub together)."""
MAX_ENTRIES = 1_000_000
"""Default entry budget of one enumeration (every page together)."""
_DEADLINE_CHECK_EVERY = 4096
_FALLBACK_STATUSES = (NetApiStatus.ERROR_INVALID_LEVEL, NetApiStatus.ERROR_ACCESS_DENIED)
# NTSTATUS a server answers with when it has just torn our session down.
_CONNECTION_GONE = frozenset({
    0xC000014B,  # STATUS_PIPE_BROKEN
    0xC00000B0,  # STATUS_PIPE_DISCONNECTED
    0xC0000203,  # STATUS_USER_SESSION_DELETED
    0xC00000C9,  # STATUS_NETWORK_NAME_DELETED
})
_NOT_FOUND_STATUSES = (NetApiStatus.NERR_UserNotFound, NetApiStatus.NERR_ClientNameNotFound)


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


normalize_client_name = canonical_client_name
"""``127.0.0.2`` -> ``\\\\127.0.0.2``; ``::1`` -> ``\\\\[::1]``; ``\\\\WS1`` unchanged (see rules)."""


@dataclass(frozen=True, slots=True)
class Session:
    """One session as enumerated: the level's fields, with cname normalised."""

    info: SessionInfo
    level: int
    raw_client_name: str | None
    own_session: bool = False
    """True for the session this client enumerates through: from our address, as our
    account, and no older than our connection (others like it, opened by the same
    account from this machine at the same moment, cannot be told apart)."""

    @property
    def client_name(self) -> str | None:
        return self.info.cname

    @property
    def user_name(self) -> str | None:
        return self.info.username

    def to_dict(self) -> dict[str, Any]:
        """pywin32 keys of the level, plus ``client_name_raw`` and ``level``."""
        record = self.info.to_win32(self.level)
        record["client_name_raw"] = self.raw_client_name
        record["level"] = self.level
        record["own_session"] = self.own_session
        return record


class _OwnSession:
    """Recognises our own session in an enumeration (see ``Session.own_session``)."""

    def __init__(self, local_address: str | None, user: str, opened: float) -> None:
        self.cname = normalize_client_name(local_address) if local_address else None
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
        info = info._replace(cname=normalize_client_name(raw))
    return Session(info.project(level), level, raw, own is not None and own(info))


class Enumeration:
    """The answer to ``SessionClient.enum``: iterate it (once) for every session, page by page.

    ``level`` is the level that answered; ``attempts`` lists ``(level, status)``
    of every level tried before it; ``filtered_locally`` is true when the server
    ignored the qualifiers and they were applied here; ``total_entries_hint`` is
    the server's TotalEntries from the first page. Iteration raises
    (``NetApiError``, ``ProtocolError``, transport errors) if a later page fails:
    a partial result is never presented as complete.
    """

    def __init__(
        self,
        level: int,
        attempts: list[tuple[int, int]],
        total_entries_hint: int,
        pages: Iterator[list[Session]] | Iterator[Session],
        filtered_locally: bool = False,
    ) -> None:
        self.level = level
        self.attempts = attempts
        self.total_entries_hint = total_entries_hint
        self.filtered_locally = filtered_locally
        self._pages = pages
        self._consumed = False
        self._count: int | None = None

    def __iter__(self) -> Iterator[Session]:
        if self._consumed:
            raise RuntimeError(
                "an Enumeration streams its sessions and can be iterated only once; "
                "call list() on it to keep them"
            )
        self._consumed = True
        count = 0
        for item in self._pages:
            if isinstance(item, Session):
                count += 1
                yield item
            else:
                count += len(item)
                yield from item
        self._count = count

    def __len__(self) -> int:
        """How many sessions the iteration yielded (only once it is complete)."""
        if self._count is None:
            raise TypeError("len() of an Enumeration is known once it has been iterated to the end; "
                            "call list() on it")
        return self._count

    def __repr__(self) -> str:
        return (f"Enumeration(level={self.level}, attempts={self.attempts}, "
                f"total_entries_hint={self.total_entries_hint}, filtered_locally={self.filtered_locally})")


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
            client_name=normalize_client_name(client) if client else None,
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
        nothing, even on servers that ignore qualifiers.
        """
        if level is not None:
            check_level(level)
        levels = FALLBACK_ORDER if level is None else (level,)
        attempts: list[tuple[int, int]] = []
        for candidate in levels:
            self._received = 0
            first = self.enum_page(candidate, client, user, max_length, 0)
            if first.status in _FALLBACK_STATUSES and level is None:
                attempts.append((candidate, first.status))
                continue
            if first.status not in (NetApiStatus.NERR_Success, NetApiStatus.ERROR_MORE_DATA):
                raise _refusal(first.status, [*attempts, (candidate, first.status)])
            return self._enumeration(candidate, first, client, user, max_length, attempts)
        denied = any(status == NetApiStatus.ERROR_ACCESS_DENIED for _, status in attempts)
        status = NetApiStatus.ERROR_ACCESS_DENIED if denied else NetApiStatus.ERROR_INVALID_LEVEL
        raise _refusal(status, attempts)

    def _enumeration(
        self,
        level: int,
        first: EnumResponse,
        client: str | None,
        user: str | None,
        max_length: int,
        attempts: list[tuple[int, int]],
    ) -> Enumeration:
        pages = self._pages(level, first, client, user, max_length)
        if not (client or user):
            return Enumeration(level, attempts, first.total_entries, self._stream(pages, level))
        # Qualified answers are small and must be complete before we can say
        # "not found", so they are collected here.
        entries = [info for page in pages for info in page]
        if user and level == 0:
            matching = self._match_level0(entries, client, user, max_length)
        else:
            matching = [info for info in entries if session_matches(info, client, user)]
        if not matching:
            status = not_found_status(entries, client)
            raise _refusal(status, [*attempts, (level, status)], "(no session matched; checked locally)")
        return Enumeration(level, attempts, first.total_entries, iter([self._convert(matching, level)]),
                           filtered_locally=len(matching) != len(entries))

    def _match_level0(
        self, entries: list[SessionInfo], client: str | None, user: str, max_length: int
    ) -> list[SessionInfo]:
        """Level-0 entries passing both qualifiers, although level 0 carries no user name.

        A level that names users tells which clients ``user`` has sessions from.
        If the server allows no such level, the user qualifier cannot be checked
        here and the server's own filtering is trusted (only ``client`` is applied).
        """
        candidates = [info for info in entries if session_matches(info, client, None)]
        for richer in FALLBACK_ORDER:
            if richer == 0:
                continue
            try:
                named = list(self.enum(richer, client, user, max_length))
            except NetApiError as exc:
                if exc.status in _NOT_FOUND_STATUSES:
                    return []
                if exc.status in _FALLBACK_STATUSES:
                    continue
                raise
            names = [s.raw_client_name for s in named if s.raw_client_name]
            return [info for info in candidates if any(session_matches(info, name, None) for name in names)]
        return candidates

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

    def _pages(
        self, level: int, first: EnumResponse, client: str | None, user: str | None, max_length: int
    ) -> Iterator[list[SessionInfo]]:
        # No frame may keep a page alive once it has been handed out.
        response: EnumResponse | None = first
        del first
        sent_handle = 0
        entries = 0
        for _ in range(MAX_PAGES):
            assert response is not None
            page = response.entries
            if page is None:
                raise ProtocolError("the server answered without a session container")
            count = len(page)
            entries += count
            if entries > self.max_entries:
                raise ProtocolError(
                    f"the server sent more than {self.max_entries:,} sessions: stopping "
                    "(raise the entry budget if that many are real)"
                )
            status, handle = response.status, response.resume_handle
            response = None
            yield page
            del page
            if status == NetApiStatus.NERR_Success:
                return
            if status != NetApiStatus.ERROR_MORE_DATA:
                raise _refusal(status, [(level, status)], "(while paging)")
            if handle is None or handle <= sent_handle or not count:
                raise ProtocolError(
                    f"the server's resume handle does not advance ({sent_handle} -> {handle}"
                    f" with {count} entries): stopping rather than looping"
                )
            sent_handle = handle
            response = self.enum_page(level, client, user, max_length, handle)
        raise ProtocolError(f"more than {MAX_PAGES} pages: stopping")

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
            None, normalize_client_name(client) if client else None, user or None
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
        return session_matches(own, normalize_client_name(client) if client else None, user)


def _refusal(status: int, attempts: list[tuple[int, int]], note: str = "") -> NetApiError:
    tried = ", ".join(f"level {lvl}: {NetApiError(st).name}" for lvl, st in attempts)
    detail = " ".join(part for part in (note, f"[{tried}]" if len(attempts) > 1 else "") if part)
    return NetApiError(status, detail or None, attempts)
