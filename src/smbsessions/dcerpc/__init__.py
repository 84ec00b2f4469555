"""Sans-I/O DCE/RPC connection-oriented PDUs (C706 chapter 12, MS-RPCE 2.2.2).

Only what an ncacn_np srvsvc conversation needs, for both sides:

* ``parse_pdu`` / ``PduStream``: bytes -> PDU objects (a pipe is a byte stream
  to some servers, so a stream splitter is provided).
* ``RpcClientConnection``: bind, request fragmentation, response reassembly,
  faults.
* ``RpcServerConnection``: bind/alter_context answers, request reassembly,
  response fragmentation, faults. It queues outgoing PDUs; the shell hands
  them to the pipe one message per read.

No socket, no SMB. Authentication verifiers (MS-RPCE 2.2.2.11): a bind or
alter_context may carry one (NTLM, raw or inside SPNEGO, through a pluggable
``AuthAcceptor`` / ``AuthInitiator``); at CONNECT level only the bind is
authenticated, at PKT_INTEGRITY every request and response is signed, at
PKT_PRIVACY their stubs are also sealed (``PacketSecurity``). Without RPC-level
authentication, ncacn_np relies on the SMB session and a request carrying a
verifier is refused.

Layout (one concern per module; ``smbsessions.dcerpc`` re-exports the public names):

* ``pdu``: the PDU codec -- header, bind / bind_ack / bind_nak, request,
  response, fault, sec_trailer, fragmentation, ``parse_pdu`` / ``PduStream``.
* ``security``: authentication verifiers -- signing and sealing of fragments,
  verifier checks, the verification trailer, ``AuthInitiator`` / ``AuthAcceptor``.
* ``client``: ``RpcClientConnection`` (one association, calls one at a time).
* ``server``: ``RpcServerConnection`` (binds, reassembly, queued answers).
* ``state``: the states of client and server associations and of a server's
  security exchange, as declared transition tables (h11's ``_state.py``).
"""

from __future__ import annotations

from .client import (
    CLIENT_AUTH_CONTEXT_ID,
    RpcClientConnection,
)
from .pdu import (
    AUTH_PAD_ALIGNMENT,
    BIND_TIME_FEATURE_PREFIX,
    DEFAULT_MAX_FRAG,
    HEADER,
    HEADER_SIZE,
    LITTLE_ENDIAN_ASCII_IEEE,
    MAX_CONTEXTS,
    MAX_FRAG,
    MAX_QUEUED_BYTES,
    MAX_REQUEST_STUB,
    MIN_FRAG,
    NAK_REASON_AUTHENTICATION_TYPE_NOT_RECOGNIZED,
    NAK_REASON_INVALID_CHECKSUM,
    NAK_REASON_NAMES,
    NAK_REASON_NOT_SPECIFIED,
    NDR20,
    NDR64,
    NTLM_SIGNATURE_SIZE,
    NULL_SYNTAX,
    PFC_FIRST_FRAG,
    PFC_LAST_FRAG,
    PFC_OBJECT_UUID,
    PFC_SUPPORT_HEADER_SIGN,
    REASON_ABSTRACT_SYNTAX_NOT_SUPPORTED,
    REASON_LOCAL_LIMIT_EXCEEDED,
    REASON_NOT_SPECIFIED,
    REASON_TRANSFER_SYNTAXES_NOT_SUPPORTED,
    REQUEST_HEAD,
    RESPONSE_HEAD,
    RESULT_ACCEPTANCE,
    RESULT_NEGOTIATE_ACK,
    RESULT_PROVIDER_REJECTION,
    SEC_TRAILER,
    SIGNED_LEVELS,
    SRVSVC,
    AuthLevel,
    AuthType,
    Bind,
    BindAck,
    ContextElement,
    ContextResult,
    Fault,
    Pdu,
    PduStream,
    PType,
    Request,
    Response,
    SecTrailer,
    SyntaxId,
    decode_bind,
    decode_bind_ack,
    decode_fault,
    decode_request,
    decode_response,
    encode_bind,
    encode_bind_ack,
    encode_pdu,
    encode_pdu_with_auth,
    fault_pdu,
    fragment,
    parse_pdu,
)
from .security import (
    VERIFICATION_TRAILER_MAGIC,
    AcceptorFactory,
    AuthAcceptor,
    AuthInitiator,
    PacketSecurity,
    RpcAuthError,
    auth_fragments,
    check_verifier,
    strip_verification_trailer,
)
from .server import (
    Call,
    RpcServerConnection,
)

__all__ = [
    "AUTH_PAD_ALIGNMENT",
    "BIND_TIME_FEATURE_PREFIX",
    "CLIENT_AUTH_CONTEXT_ID",
    "DEFAULT_MAX_FRAG",
    "HEADER",
    "HEADER_SIZE",
    "LITTLE_ENDIAN_ASCII_IEEE",
    "MAX_CONTEXTS",
    "MAX_FRAG",
    "MAX_QUEUED_BYTES",
    "MAX_REQUEST_STUB",
    "MIN_FRAG",
    "NAK_REASON_AUTHENTICATION_TYPE_NOT_RECOGNIZED",
    "NAK_REASON_INVALID_CHECKSUM",
    "NAK_REASON_NAMES",
    "NAK_REASON_NOT_SPECIFIED",
    "NDR20",
    "NDR64",
    "NTLM_SIGNATURE_SIZE",
    "NULL_SYNTAX",
    "PFC_FIRST_FRAG",
    "PFC_LAST_FRAG",
    "PFC_OBJECT_UUID",
    "PFC_SUPPORT_HEADER_SIGN",
    "REASON_ABSTRACT_SYNTAX_NOT_SUPPORTED",
    "REASON_LOCAL_LIMIT_EXCEEDED",
    "REASON_NOT_SPECIFIED",
    "REASON_TRANSFER_SYNTAXES_NOT_SUPPORTED",
    "REQUEST_HEAD",
    "RESPONSE_HEAD",
    "RESULT_ACCEPTANCE",
    "RESULT_NEGOTIATE_ACK",
    "RESULT_PROVIDER_REJECTION",
    "SEC_TRAILER",
    "SIGNED_LEVELS",
    "SRVSVC",
    "VERIFICATION_TRAILER_MAGIC",
    "AcceptorFactory",
    "AuthAcceptor",
    "AuthInitiator",
    "AuthLevel",
    "AuthType",
    "Bind",
    "BindAck",
    "Call",
    "ContextElement",
    "ContextResult",
    "Fault",
    "PType",
    "PacketSecurity",
    "Pdu",
    "PduStream",
    "Request",
    "Response",
    "RpcAuthError",
    "RpcClientConnection",
    "RpcServerConnection",
    "SecTrailer",
    "SyntaxId",
    "auth_fragments",
    "check_verifier",
    "decode_bind",
    "decode_bind_ack",
    "decode_fault",
    "decode_request",
    "decode_response",
    "encode_bind",
    "encode_bind_ack",
    "encode_pdu",
    "encode_pdu_with_auth",
    "fault_pdu",
    "fragment",
    "parse_pdu",
    "strip_verification_trailer",
]
