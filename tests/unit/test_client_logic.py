"""SessionClient's logic (paging, fallback, local filtering, guards) over an in-memory pipe."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

import pytest

from smbsessions import client as client_module
from smbsessions.auth import Credentials
from smbsessions.client import Pipe, PipeOpener, SessionClient
from smbsessions.dcerpc import HEADER, PFC_FIRST_FRAG, PType, RpcServerConnection
from smbsessions.levels import SessionInfo
from smbsessions.messages import EnumResponse
from smbsessions.ndr import decode_enum_request, encode_enum_response
from smbsessions.rules import SessionInfoPolicy, canonical_client_name
from smbsessions.server.srvsvc import SrvsvcEndpoint
from smbsessions.server.types import CallerInfo
from smbsessions.status import HostTimeoutError, NetApiError, NetApiStatus, ProtocolError, TransportError

from .test_srvsvc_endpoint import SESSIONS, FakeControl


class EndpointPipe:
    """Stands in for transport.SmbPipe: transceive = write + read one message."""

    local_address = ("127.0.0.9", 50000)
    dialect_name = "test"
    signing = encryption = False

    def __init__(self, endpoint: SrvsvcEndpoint | ScriptedEndpoint) -> None:
        self.endpoint = endpoint
        self.closed = False

    def transceive(self, data: bytes, max_output: int = 65536, *, timeout: float | None = None,
                  deadline: float | None = None) -> bytes:
        self.endpoint.write(data)
        return self.read(max_output)

    def write(self, data: bytes, *, timeout: float | None = None,
                  deadline: float | None = None) -> int:
        self.endpoint.write(data)
        return len(data)

    def read(self, max_len: int = 65536, *, timeout: float | None = None,
                  deadline: float | None = None) -> bytes:
        parts = []
        while True:
            chunk, more = self.endpoint.read(max_len)
            parts.append(chunk)
            if not more:
                return b"".join(parts)

    def close(self) -> None:
        self.closed = True


class ScriptedEndpoint:
    """A misbehaving server: answers every enum call with ``answer(request)``."""

    def __init__(self, answer: Callable[[int, int | None], EnumResponse]) -> None:
        self.rpc = RpcServerConnection()
        self.answer = answer
        self.calls = 0

    def write(self, data: bytes) -> None:
        for call in self.rpc.receive_data(data):
            self.calls += 1
            request = decode_enum_request(call.stub)
            self.rpc.respond(call, encode_enum_response(self.answer(request.level, request.resume_handle)))

    def read(self, max_len: int) -> tuple[bytes, bool]:
        return self.rpc.next_pdu() or b"", False


def opener(pipe: Pipe) -> PipeOpener:
    """A ``PipeOpener`` handing out ``pipe`` (the client binds over it as over SMB)."""
    def open_pipe(*args: object, **kwargs: object) -> Pipe:
        return pipe
    return open_pipe


def client_over(endpoint: SrvsvcEndpoint | ScriptedEndpoint) -> SessionClient:
    client = SessionClient("test", 445, credentials=Credentials(username="alice", password="x"),
                           open_pipe=opener(EndpointPipe(endpoint)))
    return client.open()


def our_server(admin: bool = True, policy: SessionInfoPolicy = SessionInfoPolicy.ADMINS) -> SessionClient:
    caller = CallerInfo(1, "alice", "", admin, False, "127.0.0.9")
    return client_over(SrvsvcEndpoint(caller, FakeControl(SESSIONS), policy))


def test_enum_pages_with_a_small_max_length() -> None:
    result = our_server().enum(502, max_length=300)
    assert [s.info for s in result] == [info for _, info in SESSIONS]
    assert result.level == 502


def test_fallback_reports_the_level_that_answered() -> None:
    result = our_server(admin=False, policy=SessionInfoPolicy.AUTHENTICATED).enum()
    assert result.level == 10
    assert result.attempts == [(502, NetApiStatus.ERROR_ACCESS_DENIED)]
    assert len(list(result)) == 200


def test_explicit_level_is_not_changed() -> None:
    with pytest.raises(NetApiError) as info:
        our_server(admin=False, policy=SessionInfoPolicy.AUTHENTICATED).enum(1)
    assert info.value.status == NetApiStatus.ERROR_ACCESS_DENIED


def test_denied_everywhere_lists_every_attempt() -> None:
    with pytest.raises(NetApiError) as info:
        our_server(admin=False).enum()
    assert info.value.status == NetApiStatus.ERROR_ACCESS_DENIED
    assert [level for level, _ in info.value.attempts] == [502, 10, 2, 1, 0]


def ignoring_server(level: int, resume: int | None) -> EnumResponse:
    # Samba's behaviour: qualifiers ignored, everything returned, resume = total.
    infos = [info for _, info in SESSIONS[:5]]
    return EnumResponse(level, infos if level in (0, 1) else None, 5, 5,
                        0 if level in (0, 1) else NetApiStatus.ERROR_INVALID_LEVEL)


def test_qualifiers_applied_locally_when_the_server_ignores_them() -> None:
    client = client_over(ScriptedEndpoint(ignoring_server))
    result = client.enum(user="bob")
    assert result.level == 1
    assert result.filtered_locally
    assert {s.user_name for s in result} == {"bob"}
    with pytest.raises(NetApiError) as info:
        client.enum(user="nobody")
    assert info.value.status == NetApiStatus.NERR_UserNotFound
    with pytest.raises(NetApiError) as info:
        client.enum(client="10.1.1.1")
    assert info.value.status == NetApiStatus.NERR_ClientNameNotFound


def test_get_info_returns_the_one_session() -> None:
    session = client_over(ScriptedEndpoint(ignoring_server)).get_info("127.0.0.3", "alice", 1)
    assert session.client_name == "\\\\127.0.0.3"
    assert session.user_name == "alice"
    with pytest.raises(ValueError):
        our_server().get_info("", "alice")


def test_a_resume_handle_that_never_advances_is_a_protocol_error() -> None:
    endpoint = ScriptedEndpoint(
        lambda level, resume: EnumResponse(level, [SESSIONS[0][1]], 10, 1, NetApiStatus.ERROR_MORE_DATA)
    )
    result = client_over(endpoint).enum(0)
    with pytest.raises(ProtocolError, match="does not advance"):
        list(result)
    assert endpoint.calls == 2


def test_an_empty_more_data_page_is_a_protocol_error() -> None:
    endpoint = ScriptedEndpoint(
        lambda level, resume: EnumResponse(level, [], 10, (resume or 0) + 1, NetApiStatus.ERROR_MORE_DATA)
    )
    with pytest.raises(ProtocolError):
        list(client_over(endpoint).enum(0))


def test_a_later_page_failing_raises_instead_of_truncating() -> None:
    def answer(level: int, resume: int | None) -> EnumResponse:
        if resume:
            return EnumResponse(level, [], 0, 0, NetApiStatus.ERROR_NOT_ENOUGH_MEMORY)
        return EnumResponse(level, [SESSIONS[0][1]], 2, 1, NetApiStatus.ERROR_MORE_DATA)

    with pytest.raises(NetApiError) as info:
        list(client_over(ScriptedEndpoint(answer)).enum(0))
    assert info.value.status == NetApiStatus.ERROR_NOT_ENOUGH_MEMORY


def test_delete_refuses_everyone_unless_forced() -> None:
    with pytest.raises(ValueError):
        our_server().delete()


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("127.0.0.2", "\\\\127.0.0.2"),
        ("\\\\127.0.0.2", "\\\\127.0.0.2"),
        ("::1", "\\\\[::1]"),
        ("\\\\[fe80::1]", "\\\\[fe80::1]"),
        ("ws-one", "\\\\ws-one"),
    ],
)
def test_client_names_are_normalized(raw: str, normalized: str) -> None:
    assert canonical_client_name(raw) == normalized


def test_raw_client_name_is_kept() -> None:
    client = client_over(ScriptedEndpoint(
        lambda level, resume: EnumResponse(level, [SessionInfo("::1", "bob", 0, 0, 0, 0)], 1, 0, 0)
    ))
    (session,) = list(client.enum(1))
    assert session.client_name == "\\\\[::1]"
    assert session.raw_client_name == "::1"
    assert session.to_dict()["client_name_raw"] == "::1"


class TricklingPipe:
    """A server that answers a call with response fragments that never include the last one."""

    closed = False
    local_address = ("127.0.0.9", 50000)
    dialect_name = "test"
    signing = encryption = False

    def __init__(self) -> None:
        self.server = RpcServerConnection()
        self.call_id = 0
        self.fragments = 0

    def transceive(self, data: bytes, max_output: int = 65536, *, timeout: float | None = None,
                  deadline: float | None = None) -> bytes:
        calls = self.server.receive_data(data)
        if not calls:
            return self.server.next_pdu() or b""  # the bind_ack
        self.call_id = calls[0].call_id
        return self._fragment()

    def read(self, max_len: int = 65536, *, timeout: float | None = None,
                  deadline: float | None = None) -> bytes:
        time.sleep(0.05)
        return self._fragment()

    def _fragment(self) -> bytes:
        flags = PFC_FIRST_FRAG if self.fragments == 0 else 0
        self.fragments += 1
        body = struct.pack("<IHBB", 8, 0, 0, 0) + bytes(8)
        return HEADER.pack(5, 0, PType.RESPONSE, flags, 0x10, HEADER.size + len(body), 0, self.call_id) + body

    def close(self) -> None:
        self.closed = True


def test_a_trickling_server_cannot_hold_a_call_past_the_timeout() -> None:
    pipe = TricklingPipe()
    client = SessionClient("test", 445, credentials=Credentials(username="alice", password="x"), timeout=0.5,
                           open_pipe=opener(pipe)).open()
    started = time.monotonic()
    with pytest.raises(HostTimeoutError):
        client.enum_page(0)
    assert time.monotonic() - started < 5  # bounded by the call's deadline, not per read
    assert pipe.fragments > 2


def test_delete_claims_success_on_a_lost_answer_only_when_it_covers_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = our_server()

    def timeout(*args: object, **kwargs: object) -> bytes:
        raise HostTimeoutError("no reply")

    monkeypatch.setattr(client, "_call", timeout)
    with pytest.raises(HostTimeoutError):
        client.delete(user="bob")  # not us: the silence proves nothing
    client.delete(user="alice")  # us (alice from 127.0.0.9): the server cut us off first


def test_delete_does_not_claim_success_on_an_smb_error(monkeypatch: pytest.MonkeyPatch) -> None:
    client = our_server()

    def denied(*args: object, **kwargs: object) -> bytes:
        raise TransportError("denied", ntstatus=0xC0000022)

    monkeypatch.setattr(client, "_call", denied)
    with pytest.raises(TransportError):
        client.delete(user="alice")


# ---------------------------------------------------------------- one deadline, budgets (issue 9 item 5)


def endless_pages(page_size: int) -> ScriptedEndpoint:
    """ERROR_MORE_DATA forever, with a resume handle that always advances."""
    page = [SessionInfo(f"10.0.{i // 250}.{i % 250}", f"user{i}", 1, 5, 0, 0) for i in range(page_size)]
    return ScriptedEndpoint(
        lambda level, resume: EnumResponse(level, page, 10**9, (resume or 0) + page_size,
                                           NetApiStatus.ERROR_MORE_DATA)
    )


def test_a_server_paging_forever_is_stopped_by_the_command_deadline() -> None:
    endpoint = endless_pages(20)
    client = client_over(endpoint)
    client.deadline = time.monotonic() + 1.0
    client.max_entries = 10**9
    with pytest.raises(HostTimeoutError, match="10 s"):
        for _ in client.enum(1):
            pass
    assert endpoint.calls > 2  # it paged, then the one deadline for the command ended it


def test_an_entry_budget_bounds_the_pages_together() -> None:
    endpoint = endless_pages(2000)
    client = client_over(endpoint)
    client.max_entries = 9000
    with pytest.raises(ProtocolError, match="more than 9,000 sessions"):
        list(client.enum(1))
    assert endpoint.calls == 5


def test_a_byte_budget_bounds_the_pages_together() -> None:
    endpoint = endless_pages(500)
    client = client_over(endpoint)
    client.max_bytes = 100_000
    client.max_entries = 10**9
    with pytest.raises(ProtocolError, match="budget is 100,000 bytes"):
        list(client.enum(1))
    assert 2 <= endpoint.calls <= 5


def test_len_after_iteration_and_a_second_iteration_fails_clearly() -> None:
    result = our_server().enum(502, max_length=300)
    with pytest.raises(TypeError, match="iterated"):
        len(result)
    assert len(list(result)) == len(result) == len(SESSIONS)
    with pytest.raises(RuntimeError, match=r"list\(\)"):
        list(result)


# ---------------------------------------------------------------- our own session (item 17)


def test_our_own_session_is_marked() -> None:
    # EndpointPipe's local address is 127.0.0.9; the client logs on as alice.
    infos = [SessionInfo("127.0.0.9", "alice", 1, 0xFFFFFFFF, 0, 0),  # ours, Samba's "just now"
             SessionInfo("127.0.0.9", "alice", 1, 86400, 0, 0),  # alice from here, but a day old
             SessionInfo("127.0.0.9", "bob", 1, 0, 0, 0),
             SessionInfo("127.0.0.8", "alice", 1, 0, 0, 0)]
    client = client_over(ScriptedEndpoint(lambda level, resume: EnumResponse(level, infos, 4, 4, 0)))
    client._opened = time.monotonic()
    sessions = list(client.enum(1))
    assert [s.own_session for s in sessions] == [True, False, False, False]
    assert sessions[0].to_dict()["own_session"] is True
    assert sessions[0].to_dict()["active_time"] == 0xFFFFFFFF  # raw here; outputs normalise it


def test_enum_command_against_a_server_paging_forever_ends_at_its_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io

    from smbsessions.cli import main

    endpoint = endless_pages(50)

    monkeypatch.setattr(client_module, "open_smb_pipe", opener(EndpointPipe(endpoint)))
    err = io.StringIO()
    started = time.monotonic()
    code = main(["enum", "127.0.0.1", "-U", "alice%pw", "--timeout", "1", "--level", "1", "--format", "json"],
                io.StringIO(), err)
    assert code == 7, err.getvalue()
    assert "1 s" in err.getvalue() and "Traceback" not in err.getvalue()
    assert endpoint.calls > 2
    assert time.monotonic() - started < 30  # loose: before, it paged to MAX_PAGES (minutes)
