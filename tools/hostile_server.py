"""Hostile input against a running smbsessions server, over a real SMB pipe.

    python -m tools.hostile_server                      # starts `smbsessions serve` itself
    python -m tools.hostile_server --host 127.0.0.1 --port 4455 -U alice%alicepw
    python -m tools.hostile_server --only garbage_before_bind,absurd_count

Each case opens ``\\PIPE\\srvsvc`` with impacket's SMBConnection, writes bytes no
honest client would (malformed PDUs, truncated fragments, absurd counts,
oversized strings, auth trailers, fragments that never finish, ...) and reads
what comes back, every read under a socket timeout. A case passes when

* every reply is a DCE/RPC fault, a bind_nak, a rejected context, an SMB
  error or nothing at all (never a crash, never a hang, never session data),
* no reply carries another session's client or user name,
* afterwards a fresh connection still enumerates normally, and the live
  session list (without the hostile connection) is unchanged,
* when the script started the server: its process is still running.

Prints a markdown table; exit status 1 if any case failed. The interop tests
(tests/interop/test_server_peers.py) run the ``ESSENTIAL`` cases.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from impacket.smbconnection import SMBConnection

from smbsessions.auth import Credentials
from smbsessions.client import SessionClient
from smbsessions.dcerpc import (
    NDR20,
    SRVSVC,
    Bind,
    ContextElement,
    PType,
    SyntaxId,
    encode_bind,
)
from smbsessions.messages import EnumRequest
from smbsessions.ndr import encode_enum_request

READ_TIMEOUT = 5.0
PIPE_ACCESS = 0x0012019F
STATUS_PIPE_BUSY = 0xC00000AE
STATUS_PIPE_EMPTY = 0xC00000D9
FIRST, LAST = 0x01, 0x02
HELD_NAMES = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "alice", "bob", "decoy")


# --------------------------------------------------------------------------- PDUs


def pdu(ptype: int, body: bytes, *, call_id: int = 1, flags: int = FIRST | LAST,
        frag_length: int | None = None, auth_length: int = 0, version: int = 5, drep: int = 0x10) -> bytes:
    length = 16 + len(body) if frag_length is None else frag_length
    return struct.pack("<BBBBIHHI", version, 0, ptype, flags, drep, length, auth_length, call_id) + body


def bind_pdu(call_id: int = 1, abstract: SyntaxId = SRVSVC, transfer: SyntaxId = NDR20,
             context_id: int = 0) -> bytes:
    body = encode_bind(Bind(4280, 4280, 0, (ContextElement(context_id, abstract, (transfer,)),)))
    return pdu(PType.BIND, body, call_id=call_id)


def request_pdu(opnum: int, stub: bytes, *, call_id: int = 2, flags: int = FIRST | LAST,
                context_id: int = 0, alloc_hint: int | None = None, auth: bytes = b"") -> bytes:
    hint = len(stub) if alloc_hint is None else alloc_hint
    body = struct.pack("<IHH", hint, context_id, opnum) + stub
    auth_length = 0
    if auth:
        pad = (-len(body) - 16) % 4
        body += b"\x00" * pad + struct.pack("<BBBBI", 10, 6, pad, 0, 0) + auth  # NTLMSSP trailer
        auth_length = len(auth)
    return pdu(PType.REQUEST, body, call_id=call_id, flags=flags, auth_length=auth_length)


def enum_stub(level: int = 0, **kwargs: Any) -> bytes:
    return encode_enum_request(EnumRequest(level, **kwargs))


def ndr_string(value: str, max_count: int | None = None, actual: int | None = None) -> bytes:
    raw = (value + "\x00").encode("utf-16-le")
    chars = len(raw) // 2
    header = struct.pack("<III", chars if max_count is None else max_count, 0,
                         chars if actual is None else actual)
    data = header + raw
    return data + b"\x00" * (-len(data) % 4)


# --------------------------------------------------------------------------- the pipe


class RawPipe:
    """``\\PIPE\\srvsvc`` opened with impacket; raw writes and message reads with timeouts."""

    def __init__(self, host: str, port: int, user: str, password: str) -> None:
        self.conn = SMBConnection(host, host, sess_port=port, timeout=READ_TIMEOUT)
        self.conn.login(user, password)
        self.tid = self.conn.connectTree("IPC$")
        self.fid = self.conn.openFile(self.tid, "srvsvc", desiredAccess=PIPE_ACCESS)

    def write(self, data: bytes) -> None:
        self.conn.writeFile(self.tid, self.fid, data)

    def read(self) -> bytes:
        """One message, or b"" when the server has nothing for us (STATUS_PIPE_EMPTY)."""
        try:
            data: bytes = self.conn.readFile(self.tid, self.fid, 0, 65535)
        except Exception as exc:  # impacket raises SessionError for every non-success status
            code = getattr(exc, "getErrorCode", lambda: None)()
            if code == STATUS_PIPE_EMPTY:
                return b""
            raise
        return data

    def read_all(self, limit: int = 64) -> list[bytes]:
        messages = []
        for _ in range(limit):
            message = self.read()
            if not message:
                break
            messages.append(message)
        return messages

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the server may have cut us off; that is allowed
            self.conn.close()


# --------------------------------------------------------------------------- verdicts


@dataclass
class Outcome:
    name: str
    ok: bool
    detail: str
    replies: list[str] = field(default_factory=list)
    seconds: float = 0.0


def describe(message: bytes) -> str:
    """fault(0x...) / bind_ack / bind_nak / response / garbage, for the report."""
    if len(message) < 16:
        return f"short({len(message)})"
    ptype = message[2]
    if ptype == PType.FAULT and len(message) >= 28:
        return f"fault(0x{struct.unpack_from('<I', message, 24)[0]:08X})"
    if ptype == PType.BIND_ACK:
        # Result of the first context: after the secondary address and padding.
        sec_len = struct.unpack_from("<H", message, 24)[0]
        offset = 26 + sec_len
        offset += -offset % 4
        result = struct.unpack_from("<H", message, offset + 4)[0] if len(message) >= offset + 6 else -1
        return "bind_ack" if result == 0 else f"bind_ack(rejected {result})"
    return {PType.BIND_NAK: "bind_nak", PType.RESPONSE: "response",
            PType.ALTER_CONTEXT_RESP: "alter_context_resp"}.get(ptype, f"ptype {ptype}")


def leaks(messages: list[bytes]) -> list[str]:
    found = []
    for message in messages:
        for name in HELD_NAMES:
            if name.encode("utf-16-le") in message:
                found.append(name)
    return found


# --------------------------------------------------------------------------- cases
# A case writes its hostile bytes and returns what it read; ``allowed`` lists the
# reply kinds that count as a proper refusal ("" = no reply at all).


@dataclass
class Case:
    name: str
    description: str
    act: Callable[[RawPipe], list[bytes]]
    allowed: tuple[str, ...]
    essential: bool = False
    fresh_pipe_after: bool = True  # whether the same pipe should still bind afterwards


def _bound(pipe: RawPipe) -> None:
    pipe.write(bind_pdu())
    reply = pipe.read()
    if describe(reply) != "bind_ack":
        raise AssertionError(f"honest bind refused: {describe(reply)}")


def garbage_before_bind(pipe: RawPipe) -> list[bytes]:
    pipe.write(os.urandom(200))
    return pipe.read_all()


def request_before_bind(pipe: RawPipe) -> list[bytes]:
    pipe.write(request_pdu(12, enum_stub(502)))
    return pipe.read_all()


def truncated_stub(pipe: RawPipe) -> list[bytes]:
    _bound(pipe)
    stub = enum_stub(502, client_name="\\\\127.0.0.2")
    pipe.write(request_pdu(12, stub[: len(stub) // 2]))
    return pipe.read_all()


def absurd_count(pipe: RawPipe) -> list[bytes]:
    _bound(pipe)
    # Level 502 container claiming 0xFFFFFFFF entries behind a non-NULL Buffer.
    stub = struct.pack("<IIIIIIIII", 0, 0, 0, 502, 502, 0x20000, 0xFFFFFFFF, 0x20004, 0xFFFFFFFF)
    pipe.write(request_pdu(12, stub + struct.pack("<II", 0xFFFFFFFF, 0)))
    return pipe.read_all()


def absurd_string_count(pipe: RawPipe) -> list[bytes]:
    _bound(pipe)
    # ClientName claiming 0x7FFFFFFF characters, carrying 5.
    stub = struct.pack("<II", 0, 0x20000) + ndr_string("\\\\x", max_count=0x7FFFFFFF, actual=0x7FFFFFFF)
    pipe.write(request_pdu(12, stub + struct.pack("<IIII", 0, 0, 0, 0)))
    return pipe.read_all()


def oversized_strings(pipe: RawPipe) -> list[bytes]:
    _bound(pipe)
    # A 30,000-character ClientName, well-formed, in several request fragments.
    stub = enum_stub(1, client_name="\\\\" + "A" * 30_000, user_name="u" * 30_000)
    chunks = [stub[i: i + 4000] for i in range(0, len(stub), 4000)]
    for i, chunk in enumerate(chunks):
        flags = (FIRST if i == 0 else 0) | (LAST if i == len(chunks) - 1 else 0)
        pipe.write(request_pdu(12, chunk, flags=flags, alloc_hint=len(stub)))
    return pipe.read_all()


def union_mismatch(pipe: RawPipe) -> list[bytes]:
    _bound(pipe)
    stub = bytearray(enum_stub(502))
    struct.pack_into("<I", stub, 16, 10)  # discriminant 10 under Level 502
    pipe.write(request_pdu(12, bytes(stub)))
    return pipe.read_all()


def garbage_after_bind(pipe: RawPipe) -> list[bytes]:
    _bound(pipe)
    pipe.write(b"\xff" * 64)
    return pipe.read_all()


def frag_length_below_header(pipe: RawPipe) -> list[bytes]:
    pipe.write(pdu(PType.BIND, b"", frag_length=8))
    return pipe.read_all()


def huge_frag_length_claim(pipe: RawPipe) -> list[bytes]:
    _bound(pipe)
    # Claims 65,535 bytes, sends 40: the server must wait, not answer, not hang.
    pipe.write(pdu(PType.REQUEST, struct.pack("<IHH", 0, 0, 12) + b"\x00" * 16, frag_length=0xFFFF))
    return pipe.read_all()


def fragment_never_finishes(pipe: RawPipe) -> list[bytes]:
    _bound(pipe)
    pipe.write(request_pdu(12, enum_stub(0)[:12], flags=FIRST, alloc_hint=1 << 20))
    return pipe.read_all()


def interleaved_call_ids(pipe: RawPipe) -> list[bytes]:
    _bound(pipe)
    stub = enum_stub(0)
    pipe.write(request_pdu(12, stub[:8], flags=FIRST, call_id=7))
    pipe.write(request_pdu(12, stub[8:], flags=LAST, call_id=8))
    return pipe.read_all()


def auth_trailer_on_bind(pipe: RawPipe) -> list[bytes]:
    body = encode_bind(Bind(4280, 4280, 0, (ContextElement(0, SRVSVC, (NDR20,)),)))
    auth = b"NTLMSSP\x00\x01\x00\x00\x00" + b"\x00" * 20
    body += struct.pack("<BBBBI", 10, 6, 0, 0, 0) + auth
    pipe.write(pdu(PType.BIND, body, auth_length=len(auth)))
    return pipe.read_all()


def auth_trailer_on_request(pipe: RawPipe) -> list[bytes]:
    _bound(pipe)
    pipe.write(request_pdu(12, enum_stub(0), auth=b"\x01" * 16))
    return pipe.read_all()


def unknown_interface(pipe: RawPipe) -> list[bytes]:
    other = SyntaxId(uuid.UUID("12345778-1234-abcd-ef00-0123456789ab"), 0, 0)  # samr
    pipe.write(bind_pdu(abstract=other))
    replies = pipe.read_all()
    pipe.write(request_pdu(12, enum_stub(0)))
    return replies + pipe.read_all()


def wrong_context_id(pipe: RawPipe) -> list[bytes]:
    _bound(pipe)
    pipe.write(request_pdu(12, enum_stub(0), context_id=9))
    return pipe.read_all()


def wrong_version_and_drep(pipe: RawPipe) -> list[bytes]:
    body = encode_bind(Bind(4280, 4280, 0, (ContextElement(0, SRVSVC, (NDR20,)),)))
    pipe.write(pdu(PType.BIND, body, version=4))
    replies = pipe.read_all()
    return replies


def big_endian_request(pipe: RawPipe) -> list[bytes]:
    _bound(pipe)
    pipe.write(pdu(PType.REQUEST, struct.pack("<IHH", 4, 0, 12) + b"\x00" * 4, drep=0x00))
    return pipe.read_all()


def request_over_one_megabyte(pipe: RawPipe) -> list[bytes]:
    _bound(pipe)
    chunk = b"\x00" * 60_000
    for i in range(20):  # 1.2 MB of stub in fragments that never say LAST
        try:
            pipe.write(request_pdu(12, chunk, flags=FIRST if i == 0 else 0, alloc_hint=1_200_000))
        except Exception as exc:
            # Once the server has refused the call its fault waits unread, and a pipe holds
            # one outstanding reply: further writes get STATUS_PIPE_BUSY until it is read.
            if getattr(exc, "getErrorCode", lambda: None)() != STATUS_PIPE_BUSY:
                raise
            break
    return pipe.read_all()


def stray_server_pdus(pipe: RawPipe) -> list[bytes]:
    _bound(pipe)
    # Response, fault and bind_ack PDUs sent *to* the server; then an honest call.
    pipe.write(pdu(PType.RESPONSE, struct.pack("<IHBB", 0, 0, 0, 0)))
    pipe.write(pdu(PType.FAULT, struct.pack("<IHBBII", 0, 0, 0, 0, 5, 0)))
    replies = pipe.read_all()
    pipe.write(request_pdu(12, enum_stub(0), call_id=3))
    honest = pipe.read_all()
    # The honest call must be a normal response (our own session is allowed in it).
    if not honest or describe(honest[0]) != "response":
        raise AssertionError(f"honest call after stray PDUs got {[describe(m) for m in honest]}")
    return replies


def zero_length_write_and_empty_read(pipe: RawPipe) -> list[bytes]:
    pipe.write(b"")
    return pipe.read_all()


IDLE_SECONDS = 2.0


def idle_pipe_held(pipe: RawPipe) -> list[bytes]:
    # Open and say nothing; the pipe must still work afterwards (others are
    # checked for service while it is held, by run_case).
    time.sleep(IDLE_SECONDS)
    _bound(pipe)
    pipe.write(request_pdu(12, enum_stub(0)))
    honest = pipe.read_all()
    if not honest or describe(honest[0]) != "response":
        raise AssertionError(f"call after idling got {[describe(m) for m in honest]}")
    return []


def del_everyone_garbage(pipe: RawPipe) -> list[bytes]:
    _bound(pipe)
    # NetrSessionDel with pointers promising strings that are not there.
    pipe.write(request_pdu(13, struct.pack("<III", 0x20000, 0x20004, 0x20008)))
    return pipe.read_all()


PROTO = "fault(0x1C01000B)"
BAD_STUB = "fault(0x000006F7)"
UNK_IF = "fault(0x1C010003)"
CASES: list[Case] = [
    Case("garbage_before_bind", "200 random bytes instead of a bind", garbage_before_bind,
         (PROTO, ""), essential=True),
    Case("request_before_bind", "NetrSessionEnum without a bind", request_before_bind, (UNK_IF,),
         essential=True),
    Case("truncated_stub", "NetrSessionEnum stub cut in half", truncated_stub, (BAD_STUB,), essential=True),
    Case("absurd_count", "container claims 0xFFFFFFFF entries", absurd_count, (BAD_STUB,), essential=True),
    Case("absurd_string_count", "ClientName claims 0x7FFFFFFF characters", absurd_string_count, (BAD_STUB,)),
    Case("oversized_strings", "30,000-character names over several fragments", oversized_strings,
         ("response",), essential=True),
    Case("union_mismatch", "union discriminant differs from Level", union_mismatch, (BAD_STUB,)),
    Case("garbage_after_bind", "64 bytes of 0xFF after a good bind", garbage_after_bind, (PROTO, "")),
    Case("frag_length_below_header", "frag_length 8", frag_length_below_header, (PROTO, "")),
    Case("huge_frag_length_claim", "claims 65,535 bytes, sends 40", huge_frag_length_claim, ("",),
         essential=True),
    Case("fragment_never_finishes", "first fragment only, alloc_hint 1 MB", fragment_never_finishes, ("",),
         essential=True),
    Case("interleaved_call_ids", "second fragment under another call id", interleaved_call_ids, (PROTO,)),
    # A server with RPC-level auth answers the NEGOTIATE with a CHALLENGE (ours, Samba); one without refuses.
    Case("auth_trailer_on_bind", "bind with an NTLMSSP auth trailer", auth_trailer_on_bind,
         ("bind_nak", "bind_ack"), essential=True),
    # No auth was bound: Samba and ours answer access denied (older servers: a protocol error).
    Case("auth_trailer_on_request", "request with an auth trailer", auth_trailer_on_request,
         (PROTO, "fault(0x00000005)")),
    Case("unknown_interface", "bind to samr, then call opnum 12", unknown_interface,
         ("bind_ack(rejected 2)", UNK_IF)),
    Case("wrong_context_id", "request on a context never bound", wrong_context_id, (UNK_IF,)),
    Case("wrong_version", "rpc_vers 4", wrong_version_and_drep, (PROTO, "")),
    Case("big_endian_request", "drep says big-endian", big_endian_request, (PROTO, "")),
    Case("request_over_one_megabyte", "1.2 MB stub that never ends", request_over_one_megabyte, (PROTO,)),
    Case("stray_server_pdus", "response/fault PDUs sent to the server", stray_server_pdus, ("",)),
    Case("zero_length_write", "an empty write, then a read", zero_length_write_and_empty_read, ("",)),
    Case("idle_pipe_held", f"pipe opened, idle {IDLE_SECONDS:.0f} s, then used", idle_pipe_held, ("",)),
    Case("del_with_missing_strings", "NetrSessionDel whose strings are missing", del_everyone_garbage,
         (BAD_STUB,)),
]
ESSENTIAL = [case for case in CASES if case.essential]


# --------------------------------------------------------------------------- running


def enumerate_ok(host: str, port: int, account: tuple[str, str]) -> list[tuple[str | None, str | None]]:
    credentials = Credentials(username=account[0], password=account[1])
    with SessionClient(host, port, credentials=credentials, timeout=READ_TIMEOUT) as client:
        return [(s.client_name, s.user_name) for s in client.enum(502)]


def others(sessions: list[tuple[str | None, str | None]]) -> list[tuple[str | None, str | None]]:
    return sorted((c, u) for c, u in sessions if c != "\\\\127.0.0.1")


def run_case(case: Case, host: str, port: int, account: tuple[str, str]) -> Outcome:
    """Run one case; ``ok`` says whether every check held (``detail`` says why not)."""
    started = time.monotonic()
    before = enumerate_ok(host, port, account)
    pipe = RawPipe(host, port, *account)
    problems: list[str] = []
    replies: list[bytes] = []
    try:
        try:
            replies = case.act(pipe)
        except Exception as exc:  # a hang shows up here as a socket timeout
            problems.append(f"{type(exc).__name__}: {exc}")
        kinds = [describe(m) for m in replies] or [""]
        unexpected = [k for k in kinds if k not in case.allowed]
        if unexpected:
            problems.append(f"replies {kinds}, allowed {list(case.allowed)}")
        leaked = leaks(replies)
        if leaked:
            problems.append(f"reply carries other sessions' names: {leaked}")
        # The hostile connection itself must still be served (an SMB-level answer).
        try:
            pipe.conn.listPath("IPC$", "*")
        except Exception as exc:
            # Any SMB-level refusal proves the session is still served (IPC$ holds no files).
            if not any(status in str(exc) for status in
                       ("STATUS_NOT_SUPPORTED", "STATUS_NO_SUCH_FILE", "STATUS_OBJECT_NAME_NOT_FOUND")):
                problems.append(f"SMB session unusable after the case: {exc}")
        # While the hostile pipe is still open, others enumerate normally ...
        # (the hostile and the enumerating connections both come from 127.0.0.1).
        during = enumerate_ok(host, port, account)
        if others(during) != others(before):
            problems.append(f"other sessions changed: {others(before)} -> {others(during)}")
    finally:
        pipe.close()
    return Outcome(case.name, not problems, "; ".join(problems) or "ok",
                   [describe(m) for m in replies], time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, help="an already running server (default: start one on 4462)")
    parser.add_argument("-U", "--user", default="alice%alicepw", help="admin account USER%%PASSWORD")
    parser.add_argument("--only", help="comma-separated case names")
    args = parser.parse_args(argv)
    user, _, password = args.user.partition("%")
    account = (user, password)
    cases = CASES if not args.only else [c for c in CASES if c.name in args.only.split(",")]

    def run_all(port: int, proc: subprocess.Popen[str] | None) -> int:
        from tests.peers.holders import SessionHolder

        failures = 0
        print("| case | what | replies | result | s |")
        print("|---|---|---|---|---|")
        with SessionHolder(args.host, port, 3, credentials=[("alice", "alicepw"), ("bob", "bobpw"), ("", "")]):
            for case in cases:
                outcome = run_case(case, args.host, port, account)
                if proc is not None and proc.poll() is not None:
                    outcome.ok, outcome.detail = False, f"server exited with {proc.returncode}"
                failures += not outcome.ok
                print(f"| {case.name} | {case.description} | {', '.join(outcome.replies) or '(none)'} | "
                      f"{'pass' if outcome.ok else 'FAIL: ' + outcome.detail} | {outcome.seconds:.2f} |")
                if proc is not None and proc.poll() is not None:
                    break
        print(f"\n{len(cases) - failures} of {len(cases)} cases passed")
        return 1 if failures else 0

    if args.port:
        return run_all(args.port, None)
    from bench.bench_server import serve

    with serve(0, 4462, ("alice:alicepw:admin", "bob:bobpw")) as proc:
        return run_all(4462, proc)


if __name__ == "__main__":
    sys.exit(main())
