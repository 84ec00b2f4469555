"""The sans-I/O SMB2 server core, byte for byte: no sockets, requests built by impacket's
structures (an independent encoder) and pyspnego's NTLM client, answers read back with them."""

from __future__ import annotations

import hashlib
import os
import struct
from collections import deque
from typing import Any

import pytest
from impacket import smb3structs as smb2

from smbsessions.ntlm import nt_hash
from smbsessions.server.smb2 import codec
from smbsessions.server.smb2.connection import CoreConfig, ServerConnection
from smbsessions.server.smb2.constants import Dialect
from smbsessions.server.smb2.credits import CreditWindow
from smbsessions.server.types import CallerInfo
from smbsessions.status import NtStatus

PIPE_ACCESS = 0x0012019F


class Echo:
    """A pipe endpoint answering each write with one message: the data, prefixed."""

    def __init__(self, caller: CallerInfo) -> None:
        self.caller = caller
        self.closed = False
        self.queue: deque[bytes] = deque()

    def write(self, data: bytes) -> None:
        self.queue.append(b"echo:" + data)

    def read(self, max_len: int) -> tuple[bytes, bool]:
        if not self.queue:
            return b"", False
        message = self.queue[0]
        chunk, rest = message[:max_len], message[max_len:]
        if rest:
            self.queue[0] = rest
        else:
            self.queue.popleft()
        return chunk, bool(rest)

    def close(self) -> None:
        self.closed = True


class Client:
    """Drives one ServerConnection with impacket-built requests."""

    def __init__(self, **config: Any) -> None:
        self.pipes: list[Echo] = []
        accounts = {"alice": nt_hash("alicepw")}

        def factory(caller: CallerInfo) -> Echo:
            self.pipes.append(Echo(caller))
            return self.pipes[-1]

        self.config = CoreConfig("SRV", "WG", lambda u: accounts.get(u.lower()), lambda u: u == "alice",
                                 pipe_factory=factory, **config)
        self.conn = ServerConnection(self.config, client_address="127.0.0.9")
        self.message_id = 0
        self.session_id = 0
        self.tree_id = 0

    def message(self, command: int, body: Any, *, flags: int = 0, message_id: int | None = None) -> bytes:
        packet = smb2.SMB2Packet()
        packet["Command"] = command
        packet["CreditRequestResponse"] = 8
        packet["MessageID"] = self.message_id if message_id is None else message_id
        if message_id is None:
            self.message_id += 1
        packet["TreeID"] = self.tree_id
        packet["SessionID"] = self.session_id
        packet["Flags"] = flags
        packet["Data"] = body.getData() if hasattr(body, "getData") else body
        data: bytes = packet.getData()
        return data

    def send(self, frame: bytes) -> list[bytes]:
        return self.conn.receive_frame(frame)

    def call(self, command: int, body: Any, **kw: Any) -> tuple[int, bytes, bytes]:
        """(status, body, whole response) of one request."""
        out = self.send(self.message(command, body, **kw))
        assert len(out) == 1, out
        header = codec.decode_header(out[0])
        return header.status, out[0][64:], out[0]

    def negotiate(self, dialects: list[int], contexts: bytes = b"", count: int = 0) -> tuple[int, bytes, bytes]:
        request = smb2.SMB2Negotiate()
        request["Dialects"] = dialects
        request["DialectCount"] = len(dialects)
        request["ClientGuid"] = b"g" * 16
        request["SecurityMode"] = 1
        body = request.getData()
        if contexts:
            offset = 64 + len(body)
            pad = -offset % 8
            body = body[:28] + struct.pack("<IHH", offset + pad, count, 0) + body[36:] + b"\0" * pad + contexts
        return self.call(smb2.SMB2_NEGOTIATE, body)

    def null_logon(self) -> None:
        from smbsessions.ntlm import ntlm_anonymous_authenticate, ntlm_anonymous_negotiate

        status, body, _ = self.session_setup(ntlm_anonymous_negotiate())
        assert status == NtStatus.STATUS_MORE_PROCESSING_REQUIRED
        status, body, _ = self.session_setup(ntlm_anonymous_authenticate(_security_buffer(body)))
        assert status == 0

    def session_setup(self, token: bytes) -> tuple[int, bytes, bytes]:
        request = smb2.SMB2SessionSetup()
        request["SecurityBufferLength"] = len(token)
        request["Buffer"] = token
        out = self.send(self.message(smb2.SMB2_SESSION_SETUP, request))
        assert len(out) == 1
        header = codec.decode_header(out[0])
        self.session_id = header.session_id
        return header.status, out[0][64:], out[0]

    def tree_connect(self, path: str = r"\\srv\IPC$") -> int:
        request = smb2.SMB2TreeConnect()
        encoded = path.encode("utf-16-le")
        request["PathLength"] = len(encoded)
        request["Buffer"] = encoded
        status, _, raw = self.call(smb2.SMB2_TREE_CONNECT, request)
        if status == 0:
            self.tree_id = codec.decode_header(raw).tree_id
        return status

    def create(self, name: str = "srvsvc") -> tuple[int, bytes]:
        request = smb2.SMB2Create()
        encoded = name.encode("utf-16-le")
        request["ImpersonationLevel"] = 2
        request["DesiredAccess"] = PIPE_ACCESS
        request["ShareAccess"] = 3
        request["CreateDisposition"] = 1
        request["NameLength"] = len(encoded)
        request["Buffer"] = encoded
        status, body, _ = self.call(smb2.SMB2_CREATE, request)
        return status, body[64:80] if status == 0 else b""

    def transceive(self, file_id: bytes, data: bytes, max_output: int = 1024) -> tuple[int, bytes]:
        request = smb2.SMB2Ioctl()
        request["CtlCode"] = 0x0011C017
        request["FileID"] = file_id
        request["MaxOutputResponse"] = max_output
        request["Flags"] = 1
        request["InputOffset"] = 64 + 56
        request["InputCount"] = len(data)
        request["Buffer"] = data
        status, body, _ = self.call(smb2.SMB2_IOCTL, request)
        if status not in (0, NtStatus.STATUS_BUFFER_OVERFLOW):
            return status, b""
        offset, count = struct.unpack_from("<II", body, 32)
        return status, body[offset - 64:offset - 64 + count]

    def read(self, file_id: bytes, length: int) -> tuple[int, bytes]:
        request = smb2.SMB2Read()
        request["Length"] = length
        request["FileID"] = file_id
        request["Buffer"] = b"\0"
        status, body, _ = self.call(smb2.SMB2_READ, request)
        if status not in (0, NtStatus.STATUS_BUFFER_OVERFLOW):
            return status, b""
        offset, length = body[2], struct.unpack_from("<I", body, 4)[0]
        return status, body[offset - 64:offset - 64 + length]


def _security_buffer(body: bytes) -> bytes:
    offset, length = struct.unpack_from("<HH", body, 4)
    return body[offset - 64:offset - 64 + length]


def preauth_context() -> bytes:
    data = struct.pack("<HHH", 1, 32, 1) + os.urandom(32)
    return struct.pack("<HHI", 1, len(data), 0) + data


def cipher_context(*ciphers: int) -> bytes:
    data = struct.pack("<H", len(ciphers)) + struct.pack(f"<{len(ciphers)}H", *ciphers)
    return struct.pack("<HHI", 2, len(data), 0) + data


def contexts(*parts: bytes) -> bytes:
    out = b""
    for i, part in enumerate(parts):
        out += part
        if i + 1 < len(parts):
            out += b"\0" * (-len(out) % 8)
    return out


# ---------------------------------------------------------------- negotiate


@pytest.mark.parametrize("dialect", [0x0202, 0x0210, 0x0300, 0x0302])
def test_negotiate_picks_the_highest_common_dialect(dialect: int) -> None:
    client = Client()
    status, body, _ = client.negotiate([0x0202, dialect])
    assert status == 0
    structure, mode, chosen, ctx_count = struct.unpack_from("<HHHH", body)
    assert (structure, chosen, ctx_count) == (65, dialect, 0)
    assert mode & 1  # signing enabled
    max_transact = struct.unpack_from("<I", body, 28)[0]
    assert max_transact == 65536
    token_offset, token_length = struct.unpack_from("<HH", body, 56)
    assert token_length and body[token_offset - 64] == 0x60  # a SPNEGO NegTokenInit hint
    assert client.conn.dialect == dialect


def test_negotiate_311_answers_contexts_and_chains_the_preauth_hash() -> None:
    client = Client()
    request = client.message(smb2.SMB2_NEGOTIATE, b"")  # placeholder to reserve MessageId 0
    client.message_id = 0
    status, body, raw = client.negotiate(
        [0x0202, 0x0311], contexts(preauth_context(), cipher_context(4, 2)), 2)
    assert status == 0 and struct.unpack_from("<H", body, 4)[0] == 0x0311
    count, offset = struct.unpack_from("<H", body, 6)[0], struct.unpack_from("<I", body, 60)[0]
    assert count == 2 and offset % 8 == 0
    found = {}
    pos = offset
    for _ in range(count):
        pos += -pos % 8
        ctype, length = struct.unpack_from("<HH", raw, pos)
        found[ctype] = raw[pos + 8:pos + 8 + length]
        pos += 8 + length
    assert found[1][:6] == struct.pack("<HHH", 1, 32, 1)  # SHA-512, 32-byte salt
    assert found[2] == struct.pack("<HH", 1, 2)  # AES-128-GCM: our first preference the client offers
    del request


def test_preauth_hash_covers_negotiate_request_and_response() -> None:
    client = Client()
    request = client.message(smb2.SMB2_NEGOTIATE, _negotiate_body_311())
    out = client.send(request)
    expected = hashlib.sha512(hashlib.sha512(bytes(64) + request).digest() + out[0]).digest()
    assert client.conn.preauth_hash == expected


def _negotiate_body_311() -> bytes:
    request = smb2.SMB2Negotiate()
    request["Dialects"] = [0x0311]
    request["DialectCount"] = 1
    request["ClientGuid"] = b"g" * 16
    body = request.getData()
    offset = 64 + len(body)
    pad = -offset % 8
    return body[:28] + struct.pack("<IHH", offset + pad, 1, 0) + body[36:] + b"\0" * pad + preauth_context()


def test_311_without_preauth_context_is_refused() -> None:
    client = Client()
    status, _, _ = client.negotiate([0x0311])
    assert status == NtStatus.STATUS_INVALID_PARAMETER
    assert client.conn.closed


def test_no_common_dialect_is_not_supported() -> None:
    client = Client()
    status, _, _ = client.negotiate([0x0201, 0x0400])
    assert status == NtStatus.STATUS_NOT_SUPPORTED and client.conn.closed


def _smb1_negotiate(*names: bytes) -> bytes:
    data = b"".join(b"\x02" + n + b"\0" for n in names)
    return b"\xffSMB\x72" + bytes(27) + b"\0" + struct.pack("<H", len(data)) + data


def test_smb1_negotiate_upgrades_to_the_smb2_wildcard() -> None:
    client = Client()
    out = client.send(_smb1_negotiate(b"NT LM 0.12", b"SMB 2.002", b"SMB 2.???"))
    assert len(out) == 1 and out[0][:4] == b"\xfeSMB"
    assert struct.unpack_from("<H", out[0], 64 + 4)[0] == Dialect.SMB_2_WILDCARD
    # The client then negotiates properly (MessageId 1 is accepted after the upgrade).
    client.message_id = 1
    assert client.negotiate([0x0202, 0x0210])[0] == 0 and client.conn.dialect == 0x0210


def test_smb1_negotiate_with_only_2002_gets_2002() -> None:
    client = Client()
    out = client.send(_smb1_negotiate(b"NT LM 0.12", b"SMB 2.002"))
    assert struct.unpack_from("<H", out[0], 64 + 4)[0] == 0x0202
    assert client.conn.dialect == 0x0202


def test_smb1_only_client_is_closed_without_an_answer() -> None:
    client = Client()
    assert client.send(_smb1_negotiate(b"PC NETWORK PROGRAM 1.0", b"NT LM 0.12")) == []
    assert client.conn.closed


def test_commands_before_negotiate_and_a_second_negotiate_close_the_connection() -> None:
    client = Client()
    client.message_id = 0
    assert client.send(client.message(smb2.SMB2_ECHO, struct.pack("<HH", 4, 0))) == []
    assert client.conn.closed
    client = Client()
    client.negotiate([0x0202])
    assert client.negotiate([0x0202]) if False else True
    assert client.send(client.message(smb2.SMB2_NEGOTIATE, _negotiate_body_311())) == []
    assert client.conn.closed


# ---------------------------------------------------------------- null session, tree, pipe


def logged_on_null() -> Client:
    client = Client()
    client.negotiate([0x0202, 0x0210])
    client.null_logon()
    return client


def test_null_session_reaches_the_srvsvc_pipe_and_transceives() -> None:
    client = logged_on_null()
    assert client.conn.logged_on and not client.conn.authenticated
    assert client.tree_connect(r"\\127.0.0.1\ipc$") == 0
    status, file_id = client.create("srvsvc")
    assert status == 0
    caller = client.pipes[0].caller
    assert (caller.username, caller.is_guest, caller.client_address) == ("", True, "127.0.0.9")
    assert client.transceive(file_id, b"hello") == (0, b"echo:hello")
    # A reply longer than MaxOutputResponse: BUFFER_OVERFLOW, then READ the rest of the message.
    assert client.transceive(file_id, b"x" * 40, max_output=16) == (NtStatus.STATUS_BUFFER_OVERFLOW,
                                                                   b"echo:" + b"x" * 11)
    assert client.read(file_id, 10) == (NtStatus.STATUS_BUFFER_OVERFLOW, b"x" * 10)
    assert client.read(file_id, 100) == (0, b"x" * 19)


@pytest.mark.parametrize("name", ["srvsvc", "\\srvsvc", "\\PIPE\\srvsvc", "SRVSVC", "pipe\\SrvSvc"])
def test_every_spelling_of_srvsvc_opens(name: str) -> None:
    client = logged_on_null()
    client.tree_connect()
    assert client.create(name)[0] == 0


@pytest.mark.parametrize("name", ["samr", "lsarpc", "..\\srvsvc", "srvsvc\\x", "", "secret.txt"])
def test_other_pipes_and_files_are_not_found(name: str) -> None:
    client = logged_on_null()
    client.tree_connect()
    assert client.create(name)[0] == NtStatus.STATUS_OBJECT_NAME_NOT_FOUND
    assert client.pipes == []


@pytest.mark.parametrize("path", [r"\\srv\C$", r"\\srv\share", r"\\srv\IPC$\x", "IPC$", r"\\\IPC$"])
def test_only_ipc_is_served(path: str) -> None:
    client = logged_on_null()
    assert client.tree_connect(path) == NtStatus.STATUS_BAD_NETWORK_NAME


def test_requests_without_a_session_or_tree_are_refused() -> None:
    client = Client()
    client.negotiate([0x0202])
    assert client.tree_connect() == NtStatus.STATUS_USER_SESSION_DELETED
    client.null_logon()
    client.tree_id = 77
    assert client.create()[0] == NtStatus.STATUS_NETWORK_NAME_DELETED


def test_unserved_commands_get_not_supported_and_the_connection_lives() -> None:
    client = logged_on_null()
    client.tree_connect()
    status, _, _ = client.call(smb2.SMB2_QUERY_DIRECTORY, b"\x21\x00" + bytes(40))
    assert status == NtStatus.STATUS_NOT_SUPPORTED
    assert client.call(smb2.SMB2_ECHO, struct.pack("<HH", 4, 0))[0] == 0


def test_message_id_outside_the_window_closes_the_connection() -> None:
    client = logged_on_null()
    assert client.send(client.message(smb2.SMB2_ECHO, struct.pack("<HH", 4, 0), message_id=10_000)) == []
    assert client.conn.closed


def test_a_used_message_id_is_refused() -> None:
    client = logged_on_null()
    client.call(smb2.SMB2_ECHO, struct.pack("<HH", 4, 0), message_id=client.message_id)
    assert client.send(client.message(smb2.SMB2_ECHO, struct.pack("<HH", 4, 0),
                                      message_id=client.message_id - 1)) == []


def test_compound_before_logon_closes_the_connection() -> None:
    client = Client()
    client.negotiate([0x0202])
    first = client.message(smb2.SMB2_ECHO, struct.pack("<HH", 4, 0))
    first += b"\0" * (-len(first) % 8)
    first = first[:20] + struct.pack("<I", len(first)) + first[24:]
    assert client.send(first + client.message(smb2.SMB2_ECHO, struct.pack("<HH", 4, 0))) == []
    assert client.conn.closed


def test_logoff_closes_the_pipes_and_the_session() -> None:
    client = logged_on_null()
    client.tree_connect()
    _, file_id = client.create()
    assert client.call(smb2.SMB2_LOGOFF, struct.pack("<HH", 4, 0))[0] == 0
    assert client.pipes[0].closed and not client.conn.logged_on
    assert client.transceive(file_id, b"x")[0] == NtStatus.STATUS_USER_SESSION_DELETED


def test_unread_output_over_the_connection_budget_is_refused_and_released_on_close() -> None:
    client = Client(max_unread_per_connection=30)
    client.negotiate([0x0202, 0x0210])
    client.null_logon()
    client.tree_connect()
    _, first = client.create()
    _, second = client.create()
    # 25 bytes of answer, 9 read: 16 stay queued against the connection and the server.
    assert client.transceive(first, b"x" * 20, max_output=9)[0] == NtStatus.STATUS_BUFFER_OVERFLOW
    assert (client.conn.unread.used, client.config.unread_budget.used) == (16, 16)
    # 16 + 25 > 30: refused, nothing queued on the second pipe.
    assert client.transceive(second, b"y" * 20)[0] == NtStatus.STATUS_INSUFFICIENT_RESOURCES
    assert client.read(second, 100)[0] == NtStatus.STATUS_PIPE_EMPTY
    assert (client.conn.unread.used, client.config.unread_budget.used) == (16, 16)
    client.conn.close("test")
    assert (client.conn.unread.used, client.config.unread_budget.used) == (0, 0)


def test_anonymous_refused_when_disabled() -> None:
    from smbsessions.ntlm import ntlm_anonymous_authenticate, ntlm_anonymous_negotiate

    client = Client(allow_anonymous=False)
    client.negotiate([0x0202])
    _, body, _ = client.session_setup(ntlm_anonymous_negotiate())
    status, _, _ = client.session_setup(ntlm_anonymous_authenticate(_security_buffer(body)))
    assert status == NtStatus.STATUS_LOGON_FAILURE and not client.conn.logged_on


# ---------------------------------------------------------------- credits


def test_credit_window_grants_within_the_cap_and_never_strands_the_client() -> None:
    window = CreditWindow(max_credits=4)
    assert window.consume(0)
    assert window.grant(100) == 4 and window.available == 4
    assert window.consume(3) and window.consume(1) and not window.consume(1)
    assert not window.consume(5)
    assert window.consume(2) and window.consume(4) and window.available == 0
    assert window.grant(0) == 1  # at least one while none are left
    assert window.consume(5, charge=1)


# ---------------------------------------------------------------- a full NTLM logon, signing


def ntlm_logon(client: Client, password: str = "alicepw") -> bytes:
    """Log on as alice with pyspnego's NTLM client (raw NTLMSSP); returns the session key."""
    import spnego

    from smbsessions.server import smb2_crypto

    ntlm = spnego.client("alice", password, protocol="ntlm")
    preauth = client.conn.preauth_hash
    request = client.message(smb2.SMB2_SESSION_SETUP, _setup_body(ntlm.step()))
    out = client.send(request)
    header = codec.decode_header(out[0])
    assert header.status == NtStatus.STATUS_MORE_PROCESSING_REQUIRED
    client.session_id = header.session_id
    preauth = smb2_crypto.preauth_hash(smb2_crypto.preauth_hash(preauth, request), out[0])
    request = client.message(smb2.SMB2_SESSION_SETUP, _setup_body(ntlm.step(_security_buffer(out[0][64:]))))
    preauth = smb2_crypto.preauth_hash(preauth, request)
    out = client.send(request)
    header = codec.decode_header(out[0])
    assert header.status == 0, hex(header.status)
    client.preauth = preauth  # type: ignore[attr-defined]
    return bytes(ntlm.session_key)


def _setup_body(token: bytes) -> bytes:
    request = smb2.SMB2SessionSetup()
    request["SecurityMode"] = 2  # signing required by the client
    request["SecurityBufferLength"] = len(token)
    request["Buffer"] = token
    return bytes(request.getData())


def _signed(client: Client, message: bytes, key: bytes, algorithm: int) -> bytes:
    from smbsessions.server import smb2_crypto

    flagged = message[:16] + struct.pack("<I", struct.unpack_from("<I", message, 16)[0] | 8) + message[20:]
    return smb2_crypto.write_signature(flagged, smb2_crypto.sign(algorithm, key, flagged, is_response=False))


@pytest.mark.parametrize("dialect", [0x0202, 0x0210, 0x0300, 0x0302, 0x0311])
def test_ntlm_logon_signs_and_a_tampered_signature_is_refused(dialect: int) -> None:
    from smbsessions.server import smb2_crypto

    client = Client()
    if dialect == 0x0311:
        client.send(client.message(smb2.SMB2_NEGOTIATE, _negotiate_body_311()))
    else:
        client.negotiate([dialect])
    session_key = ntlm_logon(client)
    keys = smb2_crypto.derive_session_keys(dialect, session_key, getattr(client, "preauth", None), None)
    algorithm = smb2_crypto.default_signing_algorithm(dialect)
    assert client.conn.authenticated and client.conn.session is not None
    assert client.conn.session.signing_required

    echo = struct.pack("<HH", 4, 0)
    good = _signed(client, client.message(smb2.SMB2_ECHO, echo), keys.signing_key, algorithm)
    [reply] = client.send(good)
    assert codec.decode_header(reply).status == 0
    # The reply is signed with the same key.
    assert smb2_crypto.verify(algorithm, keys.signing_key, reply, is_response=True)

    tampered = bytearray(_signed(client, client.message(smb2.SMB2_TREE_CONNECT, _tree_body()),
                                 keys.signing_key, algorithm))
    tampered[-2] ^= 0x01  # one bit of the path
    [reply] = client.send(bytes(tampered))
    assert codec.decode_header(reply).status == NtStatus.STATUS_ACCESS_DENIED
    assert client.conn.counters["bad_signature"] == 1 and not client.conn.session.trees
    # Unsigned requests on a session that requires signing are refused too.
    [reply] = client.send(client.message(smb2.SMB2_TREE_CONNECT, _tree_body()))
    assert codec.decode_header(reply).status == NtStatus.STATUS_ACCESS_DENIED
    # And the connection still serves properly signed requests.
    [reply] = client.send(_signed(client, client.message(smb2.SMB2_TREE_CONNECT, _tree_body()),
                                  keys.signing_key, algorithm))
    assert codec.decode_header(reply).status == 0


def _tree_body() -> bytes:
    request = smb2.SMB2TreeConnect()
    path = r"\\srv\IPC$".encode("utf-16-le")
    request["PathLength"] = len(path)
    request["Buffer"] = path
    return bytes(request.getData())


def test_wrong_password_is_logon_failure_and_leaves_no_session() -> None:
    import spnego

    client = Client()
    client.negotiate([0x0210])
    ntlm = spnego.client("alice", "wrong", protocol="ntlm")
    status, body, _ = client.session_setup(ntlm.step())
    status, _, _ = client.session_setup(ntlm.step(_security_buffer(body)))
    assert status == NtStatus.STATUS_LOGON_FAILURE
    assert client.conn.session is None and not client.conn.logged_on


def test_encrypted_requests_are_decrypted_and_answered_sealed() -> None:
    from smbsessions.server import smb2_crypto

    client = Client()
    body = _negotiate_body_311()
    # Offer AES-256-GCM only.
    request = client.message(smb2.SMB2_NEGOTIATE, body[:32] + struct.pack("<H", 2) + body[34:]
                             + b"\0" * (-len(body) % 8) + cipher_context(4))
    [reply] = client.send(request)
    assert codec.decode_header(reply).status == 0
    assert client.conn.negotiated is not None and client.conn.negotiated.cipher == 4
    session_key = ntlm_logon(client)
    keys = smb2_crypto.derive_session_keys(0x0311, session_key, client.preauth, 4)  # type: ignore[attr-defined]
    echo = client.message(smb2.SMB2_ECHO, struct.pack("<HH", 4, 0))
    sealed = smb2_crypto.encrypt(4, keys.decryption_key, client.session_id, echo)  # client->server key
    [reply] = client.send(sealed)
    session_id, plain = smb2_crypto.decrypt(4, keys.encryption_key, reply)
    assert session_id == client.session_id and codec.decode_header(plain).status == 0
    assert client.conn.counters["encrypted"] == 1
    # A sealed frame that does not authenticate drops the connection (MS-SMB2 3.3.5.2.1.1).
    broken = bytearray(smb2_crypto.encrypt(4, keys.decryption_key, client.session_id,
                                           client.message(smb2.SMB2_ECHO, struct.pack("<HH", 4, 0))))
    broken[-1] ^= 1
    assert client.send(bytes(broken)) == [] and client.conn.closed
