"""SMB2 messages the server core reads, as plain values (h11's ``_events.py``).

Each request type holds the fields the server acts on; ``codec.py`` reads
them from bytes and writes the responses. Nothing here parses or does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Header:
    """The 64-byte SMB2 sync header (async headers are refused: clients never send them)."""

    credit_charge: int
    status: int  # ChannelSequence/Status; ignored in requests
    command: int
    credits: int  # CreditRequest in a request, CreditResponse in a response
    flags: int
    next_command: int
    message_id: int
    tree_id: int
    session_id: int
    signature: bytes
    async_id: int = 0


@dataclass(frozen=True)
class NegotiateContext:
    context_type: int
    data: bytes


@dataclass(frozen=True)
class NegotiateRequest:
    security_mode: int
    capabilities: int
    client_guid: bytes
    dialects: tuple[int, ...]
    contexts: tuple[NegotiateContext, ...] = ()


@dataclass(frozen=True)
class SessionSetupRequest:
    flags: int
    security_mode: int
    capabilities: int
    previous_session_id: int
    token: bytes


@dataclass(frozen=True)
class TreeConnectRequest:
    path: str


@dataclass(frozen=True)
class CreateRequest:
    desired_access: int
    create_disposition: int
    create_options: int
    name: str


@dataclass(frozen=True)
class FileRequest:
    """CLOSE and FLUSH: a FileId and (CLOSE) its flags."""

    file_id: bytes
    flags: int = 0


@dataclass(frozen=True)
class ReadRequest:
    length: int
    offset: int
    file_id: bytes
    minimum_count: int


@dataclass(frozen=True)
class WriteRequest:
    offset: int
    file_id: bytes
    data: bytes


@dataclass(frozen=True)
class IoctlRequest:
    ctl_code: int
    file_id: bytes
    input: bytes
    max_output: int
    flags: int


@dataclass(frozen=True)
class QueryInfoRequest:
    info_type: int
    info_class: int
    output_length: int
    file_id: bytes


@dataclass(frozen=True)
class EmptyRequest:
    """LOGOFF, TREE_DISCONNECT, ECHO, CANCEL: a StructureSize of 4 and nothing else."""


Request = (
    NegotiateRequest | SessionSetupRequest | TreeConnectRequest | CreateRequest | FileRequest
    | ReadRequest | WriteRequest | IoctlRequest | QueryInfoRequest | EmptyRequest
)


@dataclass(frozen=True)
class Message:
    """One SMB2 message of a (possibly compound) frame: its header, body and raw bytes."""

    header: Header
    raw: bytes  # the whole message as received (signed and hashed over exactly this)
    body: bytes = field(repr=False, default=b"")
