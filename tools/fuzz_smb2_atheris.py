"""Coverage-guided fuzzing of the SMB2/3 server core with atheris: whole frames into a connection.

    .venv/bin/python -m tools.fuzz_smb2_atheris -max_total_time=120 -max_len=8192

Each input drives one fresh ``smb2.connection.ServerConnection`` (the sans-I/O core the
asyncio shell wraps), optionally first brought to a state by honest frames:

    byte 0 % 6: 0 fresh connection; 1 negotiated 2.1; 2 negotiated 3.0.2; 3 negotiated 3.1.1
                (preauth, AES-128-GCM, AES-GMAC contexts); 4 null session with IPC$ and the real
                srvsvc endpoint open (DCE/RPC, NDR, srvsvc rules reached through the pipe);
                5 bob's NTLM session at 3.0.2, signed (keys known to the fuzzer), pipe open
    then frames: u16 length (little-endian) + one flag byte + that many bytes; flag bits:
                1 = write our MessageId/SessionId/TreeId into the header (so mutations reach the
                handlers); 2 = sign it with the session key (state 5); 4 = seal it in a
                TRANSFORM with the session's key (state 5); 8 = the frame is an nbss header
                (4 bytes) for ``nbss.parse_header`` instead of an SMB message; 16 = write the
                open pipe's FileId into the command's FileId field. SessionId, TreeId and FileId
                are learnt from the replies, as a client would.

The property: ``receive_frame`` returns a list of frames (never raises: a bug in the core
would cost the connection in the shell, but here it is a crash atheris reports with its
input), every frame it returns fits one NetBIOS frame, and ``nbss.parse_header`` raises
only ``FramingError``. Memory is bounded by libFuzzer's -rss_limit_mb (2048 by default).
The corpus lives in $TMPDIR/smbsessions-fuzz-smb2-corpus, seeded with the honest frames.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import struct
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    import spnego

    from smbsessions import dcerpc, messages, ndr
    from smbsessions.ntlm import NegotiateFlags, build_authenticate, build_negotiate
    from smbsessions.rules import SessionInfoPolicy
    from smbsessions.server import nbss, smb2_crypto
    from smbsessions.server.shell import build_server
    from smbsessions.server.smb2.connection import CoreConfig, ServerConnection
    from smbsessions.server.srvsvc import srvsvc_factory

NEGOTIATE, SESSION_SETUP, TREE_CONNECT, CREATE, IOCTL = 0, 1, 3, 5, 11
FSCTL_PIPE_TRANSCEIVE = 0x0011C017
MAX_FRAME = (1 << 24) - 1
# Where each command's FileId sits in its body (CLOSE, FLUSH, READ, WRITE, IOCTL, QUERY_INFO).
FILE_ID_AT = {6: 8, 7: 8, 8: 16, 9: 16, 11: 8, 16: 24}

# One server object (never started) is the control the srvsvc endpoint asks for sessions.
_SERVER = build_server("127.0.0.1", 0, accounts=["alice:alicepw:admin", "bob:bobpw"])
_FACTORY = srvsvc_factory(_SERVER, SessionInfoPolicy.ADMINS)


def _config() -> CoreConfig:
    return CoreConfig("SRV", "WORKGROUP", _SERVER.lookup_nt_hash, _SERVER.is_admin, pipe_factory=_FACTORY)


class Driver:
    """A client's view of one core connection: ids, keys, frames."""

    def __init__(self) -> None:
        self.conn = ServerConnection(_config(), connection_id="fuzz", client_address="127.0.0.1")
        self.message_id = 0
        self.session_id = 0
        self.tree_id = 0
        self.file_id = bytes(16)
        self.keys: smb2_crypto.SessionKeys | None = None
        self.seeds: list[bytes] = []

    def header(self, command: int, charge: int = 1) -> bytes:
        message_id = self.message_id
        self.message_id += charge
        return b"\xfeSMB" + struct.pack("<HHIHHIIQIIQ", 64, charge, 0, command, 64, 0, 0, message_id, 0,
                                        self.tree_id, self.session_id) + bytes(16)

    def fix(self, frame: bytes) -> bytes:
        if len(frame) < 64:
            return frame
        charge = max(1, struct.unpack_from("<H", frame, 6)[0] % 4)
        fixed = self.header(0, charge)
        return frame[:6] + fixed[6:8] + frame[8:24] + fixed[24:32] + frame[32:36] + fixed[36:48] + frame[48:]

    def put_file_id(self, frame: bytes) -> bytes:
        if len(frame) < 64:
            return frame
        at = FILE_ID_AT.get(struct.unpack_from("<H", frame, 12)[0])
        if at is None or len(frame) < 64 + at + 16:
            return frame
        return frame[:64 + at] + self.file_id + frame[64 + at + 16:]

    def learn(self, reply: bytes) -> None:
        """Ids from a reply (plain; sealed replies are opened with the session's key)."""
        if reply[:4] == b"\xfdSMB":
            if self.keys is None:
                return
            try:
                _, reply = smb2_crypto.decrypt(smb2_crypto.Cipher.AES_128_CCM, self.keys.encryption_key, reply)
            except smb2_crypto.Smb2CryptoError:
                return
        if len(reply) < 64 or struct.unpack_from("<I", reply, 8)[0] not in (0, 0xC0000016):
            return
        command = struct.unpack_from("<H", reply, 12)[0]
        if command == SESSION_SETUP:
            self.session_id = struct.unpack_from("<Q", reply, 40)[0]
        elif command == TREE_CONNECT:
            self.tree_id = struct.unpack_from("<I", reply, 36)[0]
        elif command == CREATE and len(reply) >= 144:
            self.file_id = reply[128:144]

    def sign(self, frame: bytes) -> bytes:
        if self.keys is None or len(frame) < 64:
            return frame
        return smb2_crypto.sign_message(smb2_crypto.SigningAlgorithm.AES_CMAC, self.keys.signing_key, frame,
                                        is_response=False)

    def seal(self, frame: bytes) -> bytes:
        if self.keys is None:
            return frame
        return smb2_crypto.encrypt(smb2_crypto.Cipher.AES_128_CCM, self.keys.decryption_key, self.session_id,
                                   frame)

    def send(self, command: int, body: bytes, *, sign: bool = False) -> bytes:
        frame = self.header(command) + body
        if sign:
            frame = self.sign(frame)
        self.seeds.append(frame)
        out = self.conn.receive_frame(frame)
        assert len(out) == 1, (command, out)
        return out[0]

    # honest steps ---------------------------------------------------------------

    def negotiate(self, dialect: int) -> None:
        contexts = b""
        count = 0
        if dialect == 0x0311:
            parts = [struct.pack("<HHI", 1, 38, 0) + struct.pack("<HHH", 1, 32, 1) + bytes(32),
                     struct.pack("<HHI", 2, 4, 0) + struct.pack("<HH", 1, 2),
                     struct.pack("<HHI", 8, 4, 0) + struct.pack("<HH", 1, 2)]
            for part in parts:
                contexts += b"\0" * (-len(contexts) % 8) + part
            count = len(parts)
        offset = 64 + 36 + 8 if count else 0
        body = struct.pack("<HHHHI16sIHH", 36, 1, 1, 0, 0x40, bytes(16), offset, count, 0)
        body += struct.pack("<H", dialect) + (bytes(6) + contexts if count else b"")
        self.send(NEGOTIATE, body)

    def setup(self, token: bytes) -> bytes:
        reply = self.send(SESSION_SETUP, struct.pack("<HBBIIHHQ", 25, 0, 1, 0, 0, 88, len(token), 0) + token)
        self.session_id = struct.unpack_from("<Q", reply, 40)[0]
        offset, length = struct.unpack_from("<HH", reply, 68)
        return reply[offset:offset + length]

    def null_logon(self) -> None:
        flags = int(NegotiateFlags.UNICODE | NegotiateFlags.NTLM | NegotiateFlags.ANONYMOUS)
        self.setup(build_negotiate(flags))
        self.setup(build_authenticate(flags, lm_response=b"\0", nt_response=b"", domain=b"", user=b"",
                                      workstation=b"", encrypted_random_session_key=b""))

    def bob_logon(self) -> None:
        ctx = spnego.client("bob", "bobpw", hostname="SRV", service="cifs", protocol="ntlm")
        challenge = self.setup(ctx.step() or b"")
        self.setup(ctx.step(challenge) or b"")
        self.keys = smb2_crypto.derive_session_keys(0x0302, ctx.session_key, None, smb2_crypto.Cipher.AES_128_CCM)

    def open_pipe(self, sign: bool = False) -> None:
        path = "\\\\SRV\\IPC$".encode("utf-16-le")
        reply = self.send(TREE_CONNECT, struct.pack("<HHHH", 9, 0, 72, len(path)) + path, sign=sign)
        self.tree_id = struct.unpack_from("<I", reply, 36)[0]
        name = "srvsvc".encode("utf-16-le")
        reply = self.send(CREATE, struct.pack("<HBBIQQIIIIIHHII", 57, 0, 0, 2, 0, 0, 0x12019F, 0, 7, 1, 0, 120,
                                              len(name), 0, 0) + name, sign=sign)
        self.file_id = reply[128:144]
        bind = dcerpc.encode_bind(dcerpc.Bind(4280, 4280, 0, (dcerpc.ContextElement(0, dcerpc.SRVSVC,
                                                                                    (dcerpc.NDR20,)),)))
        pdu = struct.pack("<BBBBIHHI", 5, 0, dcerpc.PType.BIND, 3, 0x10, 16 + len(bind), 0, 1) + bind
        self.send(IOCTL, self._transceive(pdu), sign=sign)
        stub = ndr.encode_enum_request(messages.EnumRequest(10, None, None, None, 0xFFFFFFFF, 0))
        request = struct.pack("<IHH", len(stub), 0, 12) + stub
        pdu = struct.pack("<BBBBIHHI", 5, 0, dcerpc.PType.REQUEST, 3, 0x10, 16 + len(request), 0, 2) + request
        self.seeds.append(self.header(IOCTL) + self._transceive(pdu))  # a seed only: not sent

    def _transceive(self, data: bytes) -> bytes:
        return struct.pack("<HHI16sIIIIIIII", 57, 0, FSCTL_PIPE_TRANSCEIVE, self.file_id, 120, len(data), 0, 0,
                           0, 65536, 1, 0) + data


def _prepared(state: int) -> Driver:
    driver = Driver()
    if state in (1, 2, 3):
        driver.negotiate({1: 0x0210, 2: 0x0302, 3: 0x0311}[state])
    elif state == 4:
        driver.negotiate(0x0302)
        driver.null_logon()
        driver.open_pipe()
    elif state == 5:
        driver.negotiate(0x0302)
        driver.bob_logon()
        driver.open_pipe(sign=True)
    return driver


# bob's logon costs an NTLM exchange (pyspnego); do it once and copy the logged-on state per
# input (before any pipe exists: pipes hold locks). The config (with its lock and the shared
# server) and the registry are shared, not copied.
_BOB: Driver | None = None


def _driver(state: int) -> Driver:
    global _BOB
    if state != 5:
        return _prepared(state)
    if _BOB is None:
        _BOB = Driver()
        _BOB.negotiate(0x0302)
        _BOB.bob_logon()
    config = _BOB.conn.config
    memo = {id(config): config, id(_BOB.conn.registry): _BOB.conn.registry}
    driver: Driver = copy.deepcopy(_BOB, memo)
    driver.open_pipe(sign=True)
    return driver


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    frames: list[tuple[int, bytes]] = []
    offset = 0
    while offset + 3 <= len(data) and len(frames) < 16:
        length, flags = struct.unpack_from("<HB", data, offset)
        offset += 3
        frames.append((flags, data[offset:offset + length]))
        offset += length
    return frames


def test_one_input(data: bytes) -> None:
    if not data:
        return
    driver = _driver(data[0] % 6)
    for flags, frame in _frames(data[1:]):
        if flags & 8:
            with contextlib.suppress(nbss.FramingError):
                nbss.parse_header(frame[:4])
            continue
        if flags & 1:
            frame = driver.fix(frame)
        if flags & 16:
            frame = driver.put_file_id(frame)
        if flags & 2:
            frame = driver.sign(frame)
        if flags & 4:
            frame = driver.seal(frame)
        out = driver.conn.receive_frame(frame)
        if not isinstance(out, list) or any(len(reply) > MAX_FRAME for reply in out):
            raise AssertionError(f"bad output from receive_frame: {out!r:.200}")
        for reply in out:
            driver.learn(reply)
        if driver.conn.closed:
            break
    driver.conn.close("fuzz input done")


def _seed(corpus: Path) -> None:
    def write(name: str, state: int, frames: list[tuple[int, bytes]]) -> None:
        blob = bytes([state]) + b"".join(struct.pack("<HB", len(f), flags) + f for flags, f in frames)
        (corpus / name).write_bytes(blob)

    full = _prepared(4)
    write("seed-conversation", 0, [(1 | 16, frame) for frame in full.seeds])
    write("seed-null-enum", 4, [(1 | 16, full.seeds[-1])])
    bob = _prepared(5)
    write("seed-signed-enum", 5, [(1 | 2 | 16, bob.seeds[-1])])
    write("seed-sealed-enum", 5, [(1 | 4 | 16, bob.seeds[-1])])
    for state in (1, 2, 3):
        write(f"seed-echo-{state}", state, [(1, full.header(13) + struct.pack("<HH", 4, 0))])


def main() -> None:
    logging.disable(logging.CRITICAL)  # the core logs every refusal; millions of lines would slow the run
    corpus = Path(tempfile.gettempdir()) / "smbsessions-fuzz-smb2-corpus"
    corpus.mkdir(exist_ok=True)
    if not any(corpus.iterdir()):
        _seed(corpus)
    atheris.Setup([*sys.argv, str(corpus)], test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
