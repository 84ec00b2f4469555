"""The srvsvc endpoint: one open of ``\\PIPE\\srvsvc`` answered by our own code.

Bytes from the engine go through ``dcerpc.RpcServerConnection`` (bind,
reassembly); opnums 12 and 13 are decoded by ``ndr``, answered by ``rules``
over the server's live session list, and encoded back; other srvsvc opnums
get impacket's stock answers; anything else a proper fault. Responses of any
size are fragmented here and handed out one PDU per message (message mode).
"""

from __future__ import annotations

import logging

from smbsessions.dcerpc import MAX_FRAG, Call, RpcServerConnection
from smbsessions.ndr import (
    OPNUM_NETR_SESSION_DEL,
    OPNUM_NETR_SESSION_ENUM,
    decode_del_request,
    decode_enum_request,
    encode_del_response,
    encode_enum_response,
)
from smbsessions.rules import Caller, SessionInfoPolicy, enumerate_sessions, select_sessions_to_delete
from smbsessions.server.types import CallerInfo, PipeFactory, ServerControl
from smbsessions.status import DecodeError, RpcFaultStatus, net_api_status_name

log = logging.getLogger("smbsessions.server")


class SrvsvcEndpoint:
    """Implements ``server.types.PipeEndpoint`` for one pipe open."""

    def __init__(self, caller: CallerInfo, control: ServerControl, policy: SessionInfoPolicy) -> None:
        self.caller = caller
        self.control = control
        self.policy = policy
        self._rights = Caller(authenticated=not caller.is_guest, admin=caller.is_admin)
        # Offer the largest fragment: the client's max_recv_frag still caps it (Samba and
        # impacket ask for 4280), and each fragment costs one SMB read round trip.
        self._rpc = RpcServerConnection(max_frag=MAX_FRAG)
        self._message = b""
        self._offset = 0

    # ---- PipeEndpoint

    def write(self, data: bytes) -> None:
        for call in self._rpc.receive_data(data):
            self._dispatch(call)

    def read(self, max_len: int) -> tuple[bytes, bool]:
        if self._offset >= len(self._message):
            self._message = self._rpc.next_pdu() or b""
            self._offset = 0
        chunk = self._message[self._offset : self._offset + max(0, max_len)]
        self._offset += len(chunk)
        return chunk, self._offset < len(self._message)

    def close(self) -> None:
        self._message = b""
        self._offset = 0

    # ---- calls

    def _dispatch(self, call: Call) -> None:
        try:
            if call.opnum == OPNUM_NETR_SESSION_ENUM:
                self._rpc.respond(call, self._session_enum(call.stub))
            elif call.opnum == OPNUM_NETR_SESSION_DEL:
                self._rpc.respond(call, self._session_del(call.stub))
            else:
                answer = self.control.legacy_srvsvc(call.opnum, call.stub)
                if answer is None:
                    self._rpc.fault(call, RpcFaultStatus.nca_s_op_rng_error)
                else:
                    self._rpc.respond(call, answer)
        except DecodeError as exc:
            log.warning("bad opnum %d request from %s: %s", call.opnum, self._who(), exc)
            self._rpc.fault(call, RpcFaultStatus.RPC_X_BAD_STUB_DATA)
        except Exception:  # a bug must cost one fault, never the connection thread
            log.exception("opnum %d from %s failed", call.opnum, self._who())
            self._rpc.fault(call, RpcFaultStatus.RPC_S_CALL_FAILED)

    def _session_enum(self, stub: bytes) -> bytes:
        request = decode_enum_request(stub)
        rows = self.control.snapshot()
        result = enumerate_sessions([info for _, info in rows], request, self._rights, self.policy)
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

    def _who(self) -> str:
        name = self.caller.username or "(anonymous)"
        return f"{name}@{self.caller.client_address}"


def srvsvc_factory(control: ServerControl, policy: SessionInfoPolicy) -> PipeFactory:
    """The factory the engine calls on every open of ``\\PIPE\\srvsvc``."""

    def open_pipe(caller: CallerInfo) -> SrvsvcEndpoint:
        return SrvsvcEndpoint(caller, control, policy)

    return open_pipe
