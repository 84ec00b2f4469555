"""What each SMB2 command does on this server: IPC$ and the srvsvc pipe, nothing else.

Called by ``connection.ServerConnection`` once the framing rules (window,
session, signature, tree) have passed; each handler returns a ``Result``.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from smbsessions.server.logfmt import escape
from smbsessions.server.pipe import PipeBusyError, PipeOverflowError
from smbsessions.server.smb2 import codec
from smbsessions.server.smb2.constants import (
    ANY_FILE_ID,
    FILE_ACCESS_INFORMATION,
    FILE_ATTRIBUTE_NORMAL,
    FILE_BASIC_INFORMATION,
    FILE_EA_INFORMATION,
    FILE_INTERNAL_INFORMATION,
    FILE_MODE_INFORMATION,
    FILE_NETWORK_OPEN_INFORMATION,
    FILE_OPENED,
    FILE_PIPE_INFORMATION,
    FILE_PIPE_LOCAL_INFORMATION,
    FILE_POSITION_INFORMATION,
    FILE_STANDARD_INFORMATION,
    FSCTL_DFS_GET_REFERRALS,
    FSCTL_DFS_GET_REFERRALS_EX,
    FSCTL_PIPE_TRANSCEIVE,
    FSCTL_PIPE_WAIT,
    FSCTL_VALIDATE_NEGOTIATE_INFO,
    INFO_FILE,
    IOCTL_IS_FSCTL,
    SESSION_FLAG_BINDING,
    SHARE_TYPE_PIPE,
    SHAREFLAG_ENCRYPT_DATA,
    SHAREFLAG_NO_CACHING,
    Command,
    Dialect,
    HeaderFlags,
    SecurityMode,
    SessionFlags,
    SigningAlgorithm,
)
from smbsessions.server.smb2.messages import (
    CreateRequest,
    FileRequest,
    Header,
    IoctlRequest,
    Message,
    NegotiateRequest,
    QueryInfoRequest,
    ReadRequest,
    Request,
    SessionSetupRequest,
    TreeConnectRequest,
    WriteRequest,
)
from smbsessions.server.smb2.negotiate import (
    choose,
    validate_negotiate_matches,
    validate_negotiate_output,
)
from smbsessions.server.smb2.session import PipeOpen, SessionSecurity, SmbSession, Tree
from smbsessions.server.smb2.state import ConnectionEvent, SessionEvent, SessionState, advance_connection
from smbsessions.server.smb2_crypto import preauth_hash
from smbsessions.status import NtStatus, ntstatus_name

if TYPE_CHECKING:
    from smbsessions.server.smb2.connection import ServerConnection

log = logging.getLogger("smbsessions.server")

HMAC = SigningAlgorithm.HMAC_SHA256
OK_STATUSES = frozenset({NtStatus.STATUS_SUCCESS, NtStatus.STATUS_BUFFER_OVERFLOW,
                         NtStatus.STATUS_MORE_PROCESSING_REQUIRED})
PIPE_NAMES = frozenset({"srvsvc", "pipe\\srvsvc"})
IPC_SHARE = "IPC$"
PIPE_MAXIMAL_ACCESS = 0x001F01FF


@dataclass
class Result:
    status: int = NtStatus.STATUS_SUCCESS
    body: bytes | None = None  # None: the error body
    session_id: int | None = None
    tree_id: int | None = None
    file_id: bytes = b""  # for related requests that follow a CREATE
    sign: bool = True  # sign when the session signs
    force_sign: bool = False  # sign even though the request was not (final SESSION_SETUP)
    signer: SmbSession | None = None
    hash_into: Any = None  # an object with ``preauth_hash`` the response is hashed into


def error(status: NtStatus) -> Result:
    return Result(status=int(status))


def response_flags(header: Header, signed: bool) -> int:
    flags = HeaderFlags.SERVER_TO_REDIR | (header.flags & HeaderFlags.RELATED_OPERATIONS)
    return int(flags | (HeaderFlags.SIGNED if signed else 0))


def handle(conn: ServerConnection, message: Message, request: Request, session: SmbSession | None,
           previous_file_id: bytes) -> Result:
    command = message.header.command
    if command == Command.NEGOTIATE:
        assert isinstance(request, NegotiateRequest)
        return negotiate(conn, message, request)
    if command == Command.SESSION_SETUP:
        assert isinstance(request, SessionSetupRequest)
        return session_setup(conn, message, request)
    if command == Command.ECHO:
        return Result(body=codec.EMPTY_RESPONSE)
    assert session is not None
    if command == Command.LOGOFF:
        conn.end_session()
        log.info("connection %s from %s: logoff of %s", conn.id, conn.client_address, _who(session))
        return Result(body=codec.EMPTY_RESPONSE, signer=session)
    if command == Command.TREE_CONNECT:
        assert isinstance(request, TreeConnectRequest)
        return tree_connect(conn, session, request)
    tree = session.trees[message.header.tree_id]
    if command == Command.TREE_DISCONNECT:
        for file_id, open_ in list(session.opens.items()):
            if open_.tree_id == tree.tree_id:
                _close(conn, session, file_id)
        del session.trees[tree.tree_id]
        return Result(body=codec.EMPTY_RESPONSE)
    if command == Command.CREATE:
        assert isinstance(request, CreateRequest)
        return create(conn, session, tree, request)
    if command == Command.IOCTL:
        assert isinstance(request, IoctlRequest)
        if request.ctl_code == FSCTL_VALIDATE_NEGOTIATE_INFO:
            return validate_negotiate(conn, request)
    file_request: Any = request
    file_id = getattr(file_request, "file_id", b"")
    if file_id == ANY_FILE_ID and previous_file_id:
        file_id = previous_file_id
    found = session.opens.get(file_id)
    if found is None or found.tree_id != tree.tree_id:
        return error(NtStatus.STATUS_FILE_CLOSED)
    open_ = found
    if command == Command.CLOSE:
        assert isinstance(request, FileRequest)
        _close(conn, session, file_id)
        return Result(body=codec.close_response(request.flags, FILE_ATTRIBUTE_NORMAL, _now()))
    if command == Command.FLUSH:
        return Result(body=codec.EMPTY_RESPONSE)
    if command == Command.READ:
        assert isinstance(request, ReadRequest)
        return read(open_, request)
    if command == Command.WRITE:
        assert isinstance(request, WriteRequest)
        return write(open_, request)
    if command == Command.IOCTL:
        assert isinstance(request, IoctlRequest)
        return ioctl(open_, request)
    if command == Command.QUERY_INFO:
        assert isinstance(request, QueryInfoRequest)
        return query_info(request)
    return error(NtStatus.STATUS_NOT_SUPPORTED)


def _now() -> int:
    from smbsessions.server.smb2.connection import filetime

    return filetime()


def _who(session: SmbSession) -> str:
    """``user=... domain=... workstation=...`` with every client-chosen value escaped."""
    if session.anonymous:
        return f"user=(anonymous) workstation={escape(session.workstation)!s}"
    return (f"user={escape(session.user)} domain={escape(session.domain)} "
            f"workstation={escape(session.workstation)}")


# --------------------------------------------------------------------------- negotiate


def negotiate_body(conn: ServerConnection, dialect: int, capabilities: int,
                   contexts: list[tuple[int, bytes]]) -> bytes:
    from smbsessions.server.smb2.connection import MAX_IO_SIZE, filetime
    from smbsessions.spnego import neg_token_init_hint

    return codec.negotiate_response(
        security_mode=conn.security_mode, dialect=dialect, server_guid=conn.config.server_guid,
        capabilities=capabilities, max_size=MAX_IO_SIZE, system_time=filetime(),
        token=neg_token_init_hint(), contexts=contexts)


def negotiate(conn: ServerConnection, message: Message, request: NegotiateRequest) -> Result:
    negotiated = choose(request)
    conn.negotiate_request = request
    conn.negotiated = negotiated
    conn.state = advance_connection(conn.state, ConnectionEvent.NEGOTIATE)
    hash_into = None
    if negotiated.dialect is Dialect.SMB_3_1_1:
        conn.preauth_hash = preauth_hash(conn.preauth_hash, message.raw)
        hash_into = conn
    log.info("connection %s from %s: negotiated %s", conn.id, conn.client_address, negotiated.dialect.label)
    body = negotiate_body(conn, negotiated.dialect, negotiated.capabilities, negotiated.contexts)
    return Result(body=body, sign=False, hash_into=hash_into)


def validate_negotiate(conn: ServerConnection, request: IoctlRequest) -> Result:
    from smbsessions.server.smb2.connection import _Drop

    if request.file_id != ANY_FILE_ID or not request.flags & IOCTL_IS_FSCTL:
        return error(NtStatus.STATUS_INVALID_PARAMETER)
    if conn.negotiate_request is None or conn.negotiated is None:
        raise _Drop("VALIDATE_NEGOTIATE_INFO before NEGOTIATE")
    if not validate_negotiate_matches(request.input, conn.negotiate_request):
        raise _Drop("FSCTL_VALIDATE_NEGOTIATE_INFO does not match the NEGOTIATE (downgrade?)")
    output = validate_negotiate_output(conn.negotiated.capabilities, conn.config.server_guid,
                                       conn.security_mode, int(conn.negotiated.dialect))
    return Result(body=codec.ioctl_response(request.ctl_code, ANY_FILE_ID, output))


# --------------------------------------------------------------------------- session setup


def session_setup(conn: ServerConnection, message: Message, request: SessionSetupRequest) -> Result:
    from smbsessions.ntlm import NtlmAcceptor
    from smbsessions.spnego import SpnegoAcceptor

    header = message.header
    if request.flags & SESSION_FLAG_BINDING:
        return error(NtStatus.STATUS_REQUEST_NOT_ACCEPTED)
    session = conn.session
    if header.session_id == 0 or session is None or session.state is not SessionState.IN_PROGRESS:
        # A new logon (or a re-authentication) replaces the connection's session: its trees and
        # opens, and the rights they were granted under, end here.
        previous = session if session is not None and session.id == header.session_id else None
        conn.end_session()
        ntlm = NtlmAcceptor(conn.config.lookup_nt_hash, server_name=conn.config.server_name,
                            domain_name=conn.config.domain, allow_anonymous=conn.config.allow_anonymous)
        session_id = header.session_id or int.from_bytes(os.urandom(8), "little") | 1
        session = SmbSession(session_id, conn.preauth_hash, SpnegoAcceptor(ntlm))
        if previous is not None:
            # Re-authentication: the client keeps sealing and signing with the old keys
            # until the new exchange has finished.
            session.security = previous.security
        conn.session = session
    is_311 = conn.dialect is Dialect.SMB_3_1_1
    if is_311:
        session.preauth_hash = preauth_hash(session.preauth_hash, message.raw)
    try:
        token, done = session.acceptor.step(request.token)
    except Exception as exc:  # NtlmError carries the NTSTATUS; anything else is a bad token
        status = NtStatus(getattr(exc, "ntstatus", NtStatus.STATUS_LOGON_FAILURE))
        return _logon_failed(conn, session, status, str(exc))
    if not done:
        session.advance(SessionEvent.MORE_PROCESSING)
        return Result(NtStatus.STATUS_MORE_PROCESSING_REQUIRED, codec.session_setup_response(0, token or b""),
                      session_id=session.id, sign=False, hash_into=session if is_311 else None)
    identity = session.acceptor.identity
    session.user, session.domain = identity.user, identity.domain
    session.workstation, session.anonymous = identity.workstation, identity.anonymous
    if session.anonymous and not conn.config.allow_anonymous:
        return _logon_failed(conn, session, NtStatus.STATUS_LOGON_FAILURE, "anonymous logons refused")
    dialect = conn.dialect or Dialect.SMB_2_0_2
    negotiated = conn.negotiated
    assert negotiated is not None
    flags = SessionFlags.IS_NULL if session.anonymous else SessionFlags(0)
    if conn.config.require_encryption and (session.anonymous or dialect < Dialect.SMB_3_0
                                           or negotiated.cipher is None):
        return _logon_failed(conn, session, NtStatus.STATUS_ACCESS_DENIED, "encryption required")
    session.security = SessionSecurity()  # a re-authentication's old keys end here
    if not session.anonymous:
        session.is_admin = conn.config.is_admin(session.user)
        if not conn.config.may_logon(session.user, session.is_admin):
            return _logon_failed(conn, session, NtStatus.STATUS_REQUEST_NOT_ACCEPTED,
                                 "the account holds too many sessions")
        session.security.establish(dialect, identity.session_key, session.preauth_hash,
                                   negotiated.signing, negotiated.cipher)
        session.signing_required = conn.config.require_signing or bool(
            request.security_mode & SecurityMode.SIGNING_REQUIRED)
        if conn.config.require_encryption:
            session.encrypt_data = True
            flags |= SessionFlags.ENCRYPT_DATA
    session.advance(SessionEvent.SUCCEEDED)
    session.acceptor = None
    conn.logon_succeeded(session)
    log.info("connection %s from %s: logon %s dialect=%s -> STATUS_SUCCESS%s", conn.id,
             conn.client_address, _who(session), dialect.label, " (admin)" if session.is_admin else "")
    return Result(body=codec.session_setup_response(int(flags), token or b""), session_id=session.id,
                  signer=session, force_sign=session.security.can_sign)


def _attempted(session: SmbSession) -> str:
    """``domain\\user workstation=...`` of a failed logon, from its AUTHENTICATE message if any."""
    from smbsessions.ntlm import NtlmError, parse_authenticate

    ntlm = getattr(session.acceptor, "ntlm", None)
    token = getattr(ntlm, "authenticate_message", b"")
    if not token:
        return "(before AUTHENTICATE)"
    try:
        message = parse_authenticate(token)
    except NtlmError:
        return "(unreadable AUTHENTICATE)"
    codec_name = "utf-16-le" if message.flags & 1 else "cp437"  # NTLMSSP_NEGOTIATE_UNICODE

    def text(raw: bytes) -> str:
        return raw.decode(codec_name, errors="replace")

    user, domain = text(message.user), text(message.domain)
    return (f"user={escape(user) or '(anonymous)'} domain={escape(domain)} "
            f"workstation={escape(text(message.workstation))}")


def _logon_failed(conn: ServerConnection, session: SmbSession, status: NtStatus, reason: str) -> Result:
    log.info("connection %s from %s: logon %s failed -> %s (%s)", conn.id, conn.client_address,
             _attempted(session), ntstatus_name(status), escape(reason))
    session_id = session.id
    session.advance(SessionEvent.FAILED)
    conn.end_session()
    return Result(int(status), session_id=session_id, sign=False)


# --------------------------------------------------------------------------- tree and create


def tree_connect(conn: ServerConnection, session: SmbSession, request: TreeConnectRequest) -> Result:
    path = request.path.rstrip("\0")
    if not path.startswith("\\\\"):
        return error(NtStatus.STATUS_BAD_NETWORK_NAME)
    parts = path[2:].split("\\")
    if len(parts) != 2 or not parts[0] or parts[1].upper() != IPC_SHARE:
        return error(NtStatus.STATUS_BAD_NETWORK_NAME)
    if len(session.trees) >= conn.config.max_trees:
        return error(NtStatus.STATUS_INSUFFICIENT_RESOURCES)
    tree_id = session.next_tree_id
    session.next_tree_id += 1
    session.trees[tree_id] = Tree(tree_id, IPC_SHARE)
    share_flags = SHAREFLAG_NO_CACHING | (SHAREFLAG_ENCRYPT_DATA if session.encrypt_data else 0)
    return Result(body=codec.tree_connect_response(SHARE_TYPE_PIPE, share_flags, 0, PIPE_MAXIMAL_ACCESS),
                  tree_id=tree_id)


def pipe_name(name: str) -> str | None:
    """The canonical pipe name if ``name`` is a spelling of ``srvsvc`` clients use, else None."""
    canonical = name.rstrip("\0").lstrip("\\").lower()
    return "srvsvc" if canonical in PIPE_NAMES else None


def create(conn: ServerConnection, session: SmbSession, tree: Tree, request: CreateRequest) -> Result:
    if pipe_name(request.name) is None:
        return error(NtStatus.STATUS_OBJECT_NAME_NOT_FOUND)
    cap = conn.config.max_pipes_anonymous if session.anonymous else conn.config.max_pipes
    if len(session.opens) >= cap:
        return error(NtStatus.STATUS_INSUFFICIENT_RESOURCES)
    if not conn.config.pipe_budget.take():
        log.warning("connection %s from %s: server-wide pipe cap (%d) reached", conn.id,
                    conn.client_address, conn.config.pipe_budget.limit)
        return error(NtStatus.STATUS_INSUFFICIENT_RESOURCES)
    pipe = conn.open_pipe(session)
    if pipe is None:
        conn.config.pipe_budget.give()
        return error(NtStatus.STATUS_OBJECT_NAME_NOT_FOUND)
    file_id = conn.next_file_id()
    session.opens[file_id] = PipeOpen(file_id, tree.tree_id, pipe, "srvsvc")
    conn.registry.opens(conn.id, len(session.opens))
    return Result(body=codec.create_response(file_id, FILE_ATTRIBUTE_NORMAL, FILE_OPENED, _now()),
                  file_id=file_id)


def _close(conn: ServerConnection, session: SmbSession, file_id: bytes) -> None:
    open_ = session.opens.pop(file_id, None)
    if open_ is not None:
        conn.config.pipe_budget.give()
        try:
            open_.pipe.close()
        except Exception:
            log.exception("srvsvc pipe endpoint failed to close")
        conn.registry.opens(conn.id, len(session.opens))


# --------------------------------------------------------------------------- pipe I/O


def read(open_: PipeOpen, request: ReadRequest) -> Result:
    from smbsessions.server.smb2.connection import MAX_IO_SIZE

    if request.length > MAX_IO_SIZE:
        return error(NtStatus.STATUS_INVALID_PARAMETER)
    data, more = open_.pipe.read(request.length)
    if not data and not more:
        return error(NtStatus.STATUS_PIPE_EMPTY)
    status = NtStatus.STATUS_BUFFER_OVERFLOW if more else NtStatus.STATUS_SUCCESS
    return Result(int(status), codec.read_response(data))


_PIPE_REFUSALS = (PipeBusyError, PipeOverflowError, OSError)


def _pipe_refusal(exc: Exception) -> Result:
    """A write (or transceive) the pipe refused: unread output queued, an answer over the
    output cap, or a closed pipe."""
    if isinstance(exc, PipeBusyError):
        return error(NtStatus.STATUS_PIPE_BUSY)
    if isinstance(exc, PipeOverflowError):
        return error(NtStatus.STATUS_INSUFFICIENT_RESOURCES)
    return error(NtStatus.STATUS_PIPE_DISCONNECTED)


def write(open_: PipeOpen, request: WriteRequest) -> Result:
    try:
        open_.pipe.write(request.data)
    except _PIPE_REFUSALS as exc:
        return _pipe_refusal(exc)
    return Result(body=codec.write_response(len(request.data)))


def ioctl(open_: PipeOpen, request: IoctlRequest) -> Result:
    from smbsessions.server.smb2.connection import MAX_IO_SIZE

    if not request.flags & IOCTL_IS_FSCTL:
        return error(NtStatus.STATUS_NOT_SUPPORTED)
    if request.ctl_code == FSCTL_PIPE_TRANSCEIVE:
        try:
            data, more = open_.pipe.transceive(request.input, min(request.max_output, MAX_IO_SIZE))
        except _PIPE_REFUSALS as exc:
            return _pipe_refusal(exc)
        status = NtStatus.STATUS_BUFFER_OVERFLOW if more else NtStatus.STATUS_SUCCESS
        return Result(int(status), codec.ioctl_response(request.ctl_code, open_.file_id, data))
    if request.ctl_code == FSCTL_PIPE_WAIT:
        return Result(body=codec.ioctl_response(request.ctl_code, open_.file_id, b""))
    if request.ctl_code in (FSCTL_DFS_GET_REFERRALS, FSCTL_DFS_GET_REFERRALS_EX):
        return error(NtStatus.STATUS_NOT_FOUND)
    return error(NtStatus.STATUS_INVALID_DEVICE_REQUEST)


def _pipe_info(info_class: int) -> bytes | None:
    now = _now()
    if info_class == FILE_STANDARD_INFORMATION:
        return struct.pack("<QQIBBH", 4096, 0, 1, 1, 0, 0)
    if info_class == FILE_BASIC_INFORMATION:
        return struct.pack("<QQQQII", now, now, now, now, FILE_ATTRIBUTE_NORMAL, 0)
    if info_class == FILE_NETWORK_OPEN_INFORMATION:
        return struct.pack("<QQQQQQII", now, now, now, now, 4096, 0, FILE_ATTRIBUTE_NORMAL, 0)
    if info_class == FILE_PIPE_INFORMATION:
        return struct.pack("<II", 1, 0)  # message read mode, queued completion
    if info_class == FILE_PIPE_LOCAL_INFORMATION:
        return struct.pack("<10I", 1, 2, 0xFFFFFFFF, 1, 4096, 0, 4096, 4096, 3, 1)
    if info_class in (FILE_POSITION_INFORMATION, FILE_INTERNAL_INFORMATION):
        return bytes(8)
    if info_class in (FILE_EA_INFORMATION, FILE_MODE_INFORMATION):
        return bytes(4)
    if info_class == FILE_ACCESS_INFORMATION:
        return struct.pack("<I", PIPE_MAXIMAL_ACCESS)
    return None


def query_info(request: QueryInfoRequest) -> Result:
    if request.info_type != INFO_FILE:
        return error(NtStatus.STATUS_NOT_SUPPORTED)
    data = _pipe_info(request.info_class)
    if data is None:
        return error(NtStatus.STATUS_INVALID_INFO_CLASS)
    if request.output_length < len(data):
        return error(NtStatus.STATUS_INFO_LENGTH_MISMATCH)
    return Result(body=codec.query_info_response(data))
