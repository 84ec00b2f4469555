"""DCE/RPC-level authentication (MS-RPCE 2.2.2.11) plugged into ``dcerpc``: NTLM, raw or in SPNEGO.

* Server: ``NtlmRpcAcceptor`` adapts ``ntlm.NtlmAcceptor`` (auth type 10,
  RPC_C_AUTHN_WINNT) or ``spnego.SpnegoAcceptor`` around it (auth type 9,
  RPC_C_AUTHN_GSS_NEGOTIATE) to ``dcerpc.AuthAcceptor``; ``acceptor_factory``
  builds one per bind from the server's account lookup and names.
* Client: ``NtlmRpcInitiator`` adapts a pyspnego NTLM context to
  ``dcerpc.AuthInitiator`` (our client binds with raw NTLM, as impacket and
  Windows do for ncacn_np), and its ``PacketSecurity`` maps sealing onto
  pyspnego's ``wrap_iov`` (header and sec_trailer signed in clear, the stub sealed).

The identity of an RPC-authenticated association is the NTLM identity of its
bind, and it is the caller for every access check (as Windows impersonates the
RPC client and Samba takes the bind's session info): it may differ from the SMB
session's user.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import spnego
from spnego.iov import BufferType

from .auth import Credentials, nt_hash_of
from .dcerpc import AuthLevel, AuthType, PacketSecurity, RpcAuthError
from .ntlm import NtlmAcceptor, NtlmError, NtlmIdentity
from .spnego import SpnegoAcceptor


class RpcAuthLevel(enum.StrEnum):
    """What ``--rpc-auth`` offers: the DCE/RPC level our client binds with."""

    CONNECT = "connect"
    INTEGRITY = "integrity"
    PRIVACY = "privacy"

    @property
    def auth_level(self) -> AuthLevel:
        return {
            RpcAuthLevel.CONNECT: AuthLevel.CONNECT,
            RpcAuthLevel.INTEGRITY: AuthLevel.PKT_INTEGRITY,
            RpcAuthLevel.PRIVACY: AuthLevel.PKT_PRIVACY,
        }[self]


# --------------------------------------------------------------------------- server


class NtlmRpcAcceptor:
    """``dcerpc.AuthAcceptor`` over our NTLM acceptor, optionally inside SPNEGO."""

    def __init__(self, ntlm: NtlmAcceptor, use_spnego: bool) -> None:
        self.ntlm = ntlm
        self._spnego = SpnegoAcceptor(ntlm) if use_spnego else None

    def step(self, token: bytes) -> tuple[bytes, bool]:
        try:
            if self._spnego is not None:
                return self._spnego.step(token)
            reply = self.ntlm.step(token)
        except NtlmError as exc:
            raise RpcAuthError(f"NTLM refused the logon: {exc.ntstatus_name}") from None
        return (b"", True) if reply is None else (reply, False)

    @property
    def identity(self) -> NtlmIdentity:
        return self.ntlm.identity

    def packet_security(self) -> PacketSecurity | None:
        identity = self.ntlm.identity
        if identity.anonymous or identity.guest or not identity.session_key:
            return None
        try:
            if self._spnego is not None:
                return self._spnego.session_security()
            return self.ntlm.session_security()
        except NtlmError:
            return None


def acceptor_factory(
    lookup_nt_hash: Callable[[str], bytes | None], server_name: str, domain_name: str,
    allow_anonymous: bool = True,
) -> Callable[[int], NtlmRpcAcceptor | None]:
    """A ``dcerpc.AcceptorFactory``: NTLM (10) and SPNEGO (9); any other auth type is not recognized."""

    def make(auth_type: int) -> NtlmRpcAcceptor | None:
        if auth_type not in (AuthType.WINNT, AuthType.GSS_NEGOTIATE):
            return None
        ntlm = NtlmAcceptor(lookup_nt_hash, server_name=server_name, domain_name=domain_name,
                            allow_anonymous=allow_anonymous)
        return NtlmRpcAcceptor(ntlm, use_spnego=auth_type == AuthType.GSS_NEGOTIATE)

    return make


# --------------------------------------------------------------------------- client


@dataclass
class _SpnegoPacketSecurity:
    """``dcerpc.PacketSecurity`` over a pyspnego context (its own sequence numbers and RC4 state)."""

    context: spnego.ContextProxy

    def sign(self, message: bytes) -> bytes:
        return self.context.sign(message)

    def verify(self, message: bytes, signature: bytes) -> None:
        self.context.verify(message, signature)

    def seal(
        self, message: bytes, *, sign_prefix: bytes = b"", sign_suffix: bytes = b""
    ) -> tuple[bytes, bytes]:
        result = self.context.wrap_iov(
            [(BufferType.sign_only, sign_prefix), message, (BufferType.sign_only, sign_suffix),
             BufferType.header],
            encrypt=True,
        )
        buffers = result.buffers
        return buffers[1].data or b"", buffers[3].data or b""

    def unseal(
        self, ciphertext: bytes, signature: bytes, *, sign_prefix: bytes = b"", sign_suffix: bytes = b""
    ) -> bytes:
        result = self.context.unwrap_iov(
            [(BufferType.sign_only, sign_prefix), ciphertext, (BufferType.sign_only, sign_suffix),
             (BufferType.header, signature)],
        )
        return result.buffers[1].data or b""


def require_ntlm_account(credentials: Credentials) -> None:
    """RPC-level authentication is NTLM: a null session or a Kerberos logon cannot do it
    (ValueError, checked before any logon so a command fails as a usage error)."""
    if credentials.anonymous or credentials.kerberos:
        raise ValueError("RPC-level authentication needs an NTLM account (a password or an NT hash)")


class NtlmRpcInitiator:
    """``dcerpc.AuthInitiator`` for raw NTLM (auth type 10) with pyspnego."""

    auth_type: int = AuthType.WINNT

    def __init__(self, credentials: Credentials, hostname: str = "unspecified") -> None:
        require_ntlm_account(credentials)
        nt_hash = credentials.nt_hash or nt_hash_of(credentials.password or "")
        self._context = spnego.client(
            spnego.NTLMHash(username=credentials.principal, nt_hash=nt_hash), hostname=hostname,
            service="host", protocol="ntlm",
            context_req=spnego.ContextReq.integrity | spnego.ContextReq.confidentiality
            | spnego.ContextReq.sequence_detect | spnego.ContextReq.replay_detect,
        )

    def step(self, token: bytes | None) -> bytes | None:
        try:
            return self._context.step(token)
        except spnego.exceptions.SpnegoError as exc:
            raise RpcAuthError(f"NTLM could not continue: {exc}") from None

    def packet_security(self) -> PacketSecurity:
        return _SpnegoPacketSecurity(self._context)
