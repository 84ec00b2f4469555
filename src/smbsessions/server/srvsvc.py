"""The srvsvc endpoint: one open of ``\\PIPE\\srvsvc`` answered by our own code.

Bytes from the engine go through ``dcerpc.RpcServerConnection`` (bind,
reassembly); each opnum is decoded by its codec (``ndr``, ``srvsvc_ndr``),
answered by pure rules (``rules``, ``srvsvc_rules``) over the server's live
session list and its ``ServerIdentity``, and encoded back. Opnums answered:
12 NetrSessionEnum, 13 NetrSessionDel, 15 NetrShareEnum, 16 NetrShareGetInfo,
20 NetrShareCheck, 21 NetrServerGetInfo, 28 NetrRemoteTOD, 36
NetrShareEnumSticky; any other gets the fault nca_s_op_rng_error. Responses of
any size are fragmented here and handed out one PDU per message (message mode).
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import ClassVar, overload

from smbsessions import srvsvc_ndr, srvsvc_rules
from smbsessions.dcerpc import MAX_FRAG, AuthLevel, Call, RpcServerConnection
from smbsessions.levels import SessionInfo
from smbsessions.ndr import (
    OPNUM_NETR_SESSION_DEL,
    OPNUM_NETR_SESSION_ENUM,
    decode_del_request,
    decode_enum_request,
    encode_del_response,
    encode_enum_response,
)
from smbsessions.rpc_auth import NtlmRpcAcceptor, acceptor_factory
from smbsessions.rules import (
    ANONYMOUS,
    Caller,
    SessionInfoPolicy,
    enumerate_sessions,
    select_sessions_to_delete,
)
from smbsessions.server.types import CallerInfo, PipeFactory, ServerControl, SessionKey
from smbsessions.status import DecodeError, RpcFaultStatus, net_api_status_name

log = logging.getLogger("smbsessions.server")

# Real srvsvc requests are a few KiB; names past 1,024 characters must still be answered
# with ERROR_INVALID_PARAMETER rather than a fault (tools/hostile_server.py sends two
# 30,000-character names, ~120 KiB), so an unfinished request may buffer up to this much.
MAX_SRVSVC_REQUEST = 256 << 10
# Unfinished input all srvsvc pipes of one server may hold together (see InputBudget).
MAX_BUFFERED_INPUT = 64 << 20


class SrvsvcEndpoint:
    """Implements ``server.types.PipeEndpoint`` for one pipe open."""

    def __init__(
        self, caller: CallerInfo, control: ServerControl, policy: SessionInfoPolicy,
        budget: InputBudget | None = None,
    ) -> None:
        self.caller = caller
        self._budget = InputBudget() if budget is None else budget
        self._accounted = 0
        self.control = control
        self.policy = policy
        self._smb_rights = Caller(authenticated=not caller.is_guest, admin=caller.is_admin)
        identity = control.identity
        # Offer the largest fragment: the client's max_recv_frag still caps it (Samba and
        # impacket ask for 4280), and each fragment costs one SMB read round trip.
        self._rpc = RpcServerConnection(
            max_frag=MAX_FRAG,
            acceptor_factory=acceptor_factory(control.lookup_nt_hash, identity.name, identity.domain),
            max_request_stub=MAX_SRVSVC_REQUEST,
        )
        self._message = b""
        self._offset = 0

    # ---- PipeEndpoint

    def write(self, data: bytes) -> None:
        for call in self._rpc.receive_data(data):
            self._dispatch(call)
        self._account()

    def _account(self) -> None:
        """Keep the shared budget in step with what this pipe holds; cut it off past the limit."""
        held = self._rpc.buffered_bytes
        delta, self._accounted = held - self._accounted, held
        if not self._budget.change(delta) and delta > 0:
            log.warning("srvsvc pipe of %s cut off: unfinished input over the server's %d-byte budget",
                        self._who(), self._budget.limit)
            self._rpc.abort()
            self._budget.change(-self._accounted)
            self._accounted = 0

    def read(self, max_len: int) -> tuple[bytes, bool]:
        if self._offset >= len(self._message):
            self._message = self._rpc.next_pdu() or b""
            self._offset = 0
        chunk = self._message[self._offset : self._offset + max(0, max_len)]
        self._offset += len(chunk)
        return chunk, self._offset < len(self._message)

    def close(self) -> None:
        # Free what a closed pipe holds right away (partial PDUs, an unfinished request,
        # unread replies): nothing else refers to them.
        self._message = b""
        self._offset = 0
        self._rpc.close()
        self._budget.change(-self._accounted)
        self._accounted = 0

    # ---- calls

    @property
    def _rights(self) -> Caller:
        """Who the caller is for access checks: the RPC-level identity when the bind carried one.

        As on Windows (the server impersonates the RPC client) and Samba (the bind's
        session info), an RPC-authenticated user is the caller even if the SMB session
        belongs to someone else; without RPC-level auth, the SMB session's user is.
        """
        acceptor = self._rpc.auth_acceptor
        if not isinstance(acceptor, NtlmRpcAcceptor):
            return self._smb_rights
        identity = acceptor.identity
        if identity.anonymous or identity.guest:
            return ANONYMOUS
        return Caller(authenticated=True, admin=self.control.is_admin(identity.user))

    # opnum -> method name (names, not bound methods: an endpoint must not refer to itself).
    _HANDLERS: ClassVar[dict[int, str]] = {
        OPNUM_NETR_SESSION_ENUM: "_session_enum",
        OPNUM_NETR_SESSION_DEL: "_session_del",
        srvsvc_ndr.OPNUM_NETR_SHARE_ENUM: "_share_enum",
        srvsvc_ndr.OPNUM_NETR_SHARE_ENUM_STICKY: "_share_enum_sticky",
        srvsvc_ndr.OPNUM_NETR_SHARE_GET_INFO: "_share_get_info",
        srvsvc_ndr.OPNUM_NETR_SHARE_CHECK: "_share_check",
        srvsvc_ndr.OPNUM_NETR_SERVER_GET_INFO: "_server_get_info",
        srvsvc_ndr.OPNUM_NETR_REMOTE_TOD: "_remote_tod",
    }

    def _dispatch(self, call: Call) -> None:
        name = self._HANDLERS.get(call.opnum)
        if name is None:
            self._rpc.fault(call, RpcFaultStatus.nca_s_op_rng_error)
            return
        handler: Callable[[bytes], bytes] = getattr(self, name)
        try:
            self._rpc.respond(call, handler(call.stub))
        except DecodeError as exc:
            log.warning("bad opnum %d request from %s: %s", call.opnum, self._who(), exc)
            self._rpc.fault(call, RpcFaultStatus.RPC_X_BAD_STUB_DATA)
        except Exception:  # a bug must cost one fault, never the connection thread
            log.exception("opnum %d from %s failed", call.opnum, self._who())
            self._rpc.fault(call, RpcFaultStatus.RPC_S_CALL_FAILED)

    def _session_enum(self, stub: bytes) -> bytes:
        request = decode_enum_request(stub)
        rows = self.control.snapshot()
        result = enumerate_sessions(_InfoColumn(rows), request, self._rights, self.policy)
        log.info(
            "NetrSessionEnum by %s: level %d client=%r user=%r max=%d resume=%s -> %s, %d of %d entries",
            self._who(), request.level, request.client_name, request.user_name, request.prefmaxlen,
            request.resume_handle, net_api_status_name(result.status), len(result.entries),
            result.total_entries,
        )
        return encode_enum_response(result.to_response(request.container))

    def _session_del(self, stub: bytes) -> bytes:
        request = decode_del_request(stub)
        rows = self.control.snapshot()
        result = select_sessions_to_delete([info for _, info in rows], request, self._rights)
        closed: list[int] = []
        if result.indices:
            closed = self.control.disconnect(
                [rows[i][0] for i in result.indices], defer_for=self.caller.session_key
            )
        log.info(
            "NetrSessionDel by %s: client=%r user=%r -> %s, %d session(s) closed",
            self._who(), request.client_name, request.user_name,
            net_api_status_name(result.status), len(closed),
        )
        return encode_del_response(result.status)

    def _share_enum(self, stub: bytes, sticky: bool = False) -> bytes:
        request = srvsvc_ndr.decode_share_enum_request(stub)
        result = srvsvc_rules.enumerate_shares(self.control.identity.shares(), request, self._rights, sticky)
        log.info("NetrShareEnum%s by %s: level %d -> %s, %d entries", "Sticky" if sticky else "",
                 self._who(), request.level, net_api_status_name(result.status), len(result.entries or ()))
        return srvsvc_ndr.encode_share_enum_response(result)

    def _share_enum_sticky(self, stub: bytes) -> bytes:
        return self._share_enum(stub, sticky=True)

    def _share_get_info(self, stub: bytes) -> bytes:
        request = srvsvc_ndr.decode_share_get_info_request(stub)
        result = srvsvc_rules.share_get_info(self.control.identity.shares(), request, self._rights)
        log.info("NetrShareGetInfo by %s: %r level %d -> %s", self._who(), request.net_name, request.level,
                 net_api_status_name(result.status))
        return srvsvc_ndr.encode_share_get_info_response(result)

    def _share_check(self, stub: bytes) -> bytes:
        request = srvsvc_ndr.decode_share_check_request(stub)
        result = srvsvc_rules.share_check(self.control.identity.shares(), request)
        return srvsvc_ndr.encode_share_check_response(result)

    def _server_get_info(self, stub: bytes) -> bytes:
        request = srvsvc_ndr.decode_server_get_info_request(stub)
        result = srvsvc_rules.server_get_info(self.control.identity, request, self._rights)
        log.info("NetrServerGetInfo by %s: level %d -> %s", self._who(), request.level,
                 net_api_status_name(result.status))
        return srvsvc_ndr.encode_server_get_info_response(result)

    def _remote_tod(self, stub: bytes) -> bytes:
        srvsvc_ndr.decode_remote_tod_request(stub)
        now = datetime.datetime.now().astimezone()
        return srvsvc_ndr.encode_remote_tod_response(srvsvc_rules.remote_tod(now, time.monotonic()))

    def _who(self) -> str:
        name = self.caller.username or "(anonymous)"
        who = f"{name}@{self.caller.client_address}"
        acceptor = self._rpc.auth_acceptor
        if isinstance(acceptor, NtlmRpcAcceptor):
            rpc_user = acceptor.identity.user or "(anonymous)"
            who += f" (RPC auth {AuthLevel(self._rpc.auth_level).name} as {rpc_user!r})"
        return who


class _InfoColumn(Sequence[SessionInfo]):
    """The SessionInfo column of a snapshot, read in place.

    A paged enumeration (10,000 decoys at PreferedMaximumLength 4096 is ~340 calls)
    touches only the rows from its resume position on; copying the whole column
    on every call was the server's largest cost per page.
    """

    __slots__ = ("_rows",)

    def __init__(self, rows: Sequence[tuple[SessionKey, SessionInfo]]) -> None:
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> SessionInfo: ...

    @overload
    def __getitem__(self, index: slice) -> list[SessionInfo]: ...

    def __getitem__(self, index: int | slice) -> SessionInfo | list[SessionInfo]:
        if isinstance(index, slice):
            return [info for _, info in self._rows[index]]
        return self._rows[index][1]


class InputBudget:
    """Bytes of unfinished input all the pipes of one server may hold together (thread-safe).

    Honest requests are a few KiB and finish within a write or two; only a client
    that starts requests and never finishes them accumulates. Past the limit, the
    pipe whose input grew is cut off (one fault, then nothing), whoever it is.
    """

    def __init__(self, limit: int = MAX_BUFFERED_INPUT) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def change(self, delta: int) -> bool:
        """Account ``delta`` bytes; False when the total is now over the limit."""
        with self._lock:
            self.used += delta
            return self.used <= self.limit


def srvsvc_factory(
    control: ServerControl, policy: SessionInfoPolicy, budget: InputBudget | None = None
) -> PipeFactory:
    """The factory the engine calls on every open of ``\\PIPE\\srvsvc``.

    Every pipe it opens shares one ``InputBudget`` (a fresh one unless given).
    """
    shared = InputBudget() if budget is None else budget

    def open_pipe(caller: CallerInfo) -> SrvsvcEndpoint:
        return SrvsvcEndpoint(caller, control, policy, shared)

    return open_pipe
