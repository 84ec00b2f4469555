"""How ``transport.SmbPipe`` logs on: credentials to an smbprotocol ``Session``.

NTLM always with the NT hash, Kerberos from a prepared ticket cache, or the null
session (``_smbprotocol_compat.NullSession``); a refused logon becomes an
``AuthenticationError`` carrying the NTSTATUS, or a Kerberos clock-skew error when the
server's clock says so.
"""

from __future__ import annotations

from smbprotocol.exceptions import SMBResponseException
from smbprotocol.session import Session
from spnego import NTLMHash

from smbsessions._smbprotocol_compat import DeadlineConnection, NullSession
from smbsessions.auth import Credentials, nt_hash_of
from smbsessions.status import AuthenticationError, ntstatus_failure

__all__ = ["kerberos_skew", "logon", "make_session"]


def logon(session: Session, where: str) -> None:
    """``session.connect()``, with a refusal already an ``AuthenticationError`` (the guard counts it)."""
    try:
        session.connect()
    except SMBResponseException as exc:
        status = int(exc.status)
        skewed = kerberos_skew(session.connection, where, status)
        if skewed is not None:
            raise skewed from None
        raise ntstatus_failure(AuthenticationError, f"{where}: session setup", status) from None


def kerberos_skew(connection: DeadlineConnection, where: str, status: int) -> AuthenticationError | None:
    """A skewed Kerberos AP-REQ gets a plain STATUS_LOGON_FAILURE: compare the clocks."""
    if not connection.kerberos_logon:
        return None
    from smbsessions.kerberos import server_clock_skew

    return server_clock_skew(connection.server_time, where, status)


def make_session(
    connection: DeadlineConnection,
    credentials: Credentials,
    host: str,
    require_encryption: bool,
) -> Session:
    """An unconnected smbprotocol ``Session`` for ``credentials``: the null session, Kerberos
    from the ticket cache ``kerberos.prepare`` left, or NTLM with the NT hash."""
    if credentials.anonymous:
        return NullSession(connection, None, None, require_encryption=require_encryption)
    principal = credentials.principal
    if credentials.kerberos:
        from spnego import KerberosCCache

        from smbsessions import kerberos

        # ``credentials`` went through kerberos.prepare: a ticket cache, no secret.
        connection.kerberos_logon = True
        return Session(
            connection,
            KerberosCCache(ccache=credentials.ccache or ""),
            None,
            require_encryption=require_encryption,
            auth_protocol="kerberos",
            hostname_override=kerberos.spn_host(credentials, host),
        )
    # Always an NTLMHash: given a password, pyspnego would also derive the LM hash
    # (pure-Python DES, ~1.2 ms) that NTLMv2 never uses. A credential object also
    # keeps pyspnego from reading a password that looks like "LM:NT" as a hash.
    nt_hash = credentials.nt_hash
    if nt_hash is None:
        nt_hash = nt_hash_of(credentials.password or "")
    return Session(
        connection,
        NTLMHash(username=principal, nt_hash=nt_hash),
        None,
        require_encryption=require_encryption,
        auth_protocol="ntlm",
    )
