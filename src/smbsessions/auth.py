"""Credentials and the command-line forms that name them.

``Credentials`` says *who* logs on; ``transport.SmbPipe`` decides *how* (NTLM with a
password or an NT hash, Kerberos from a ticket cache, or an anonymous null session).

Secrets (passwords, NT hashes) never appear in ``repr``/``str``, in exception messages
or in prompts: every error below names the offending part without echoing its value.

Accepted spellings:

* ``parse_user_spec``: Samba's ``-U`` form, ``[DOMAIN/|DOMAIN\\]USER[%PASSWORD]``;
  ``""`` or ``"%"`` is the anonymous login, as with ``smbclient -U %``.
* ``parse_target``: impacket's positional form,
  ``[[DOMAIN/]USER[:PASSWORD]@]HOST[:PORT]`` with ``[v6addr]:port`` or a bare IPv6
  address.
* ``parse_hashes``: impacket's ``-hashes`` form, ``LM:NT``, ``:NT`` or ``NT``.
"""

from __future__ import annotations

import getpass
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import NamedTuple, TextIO

from smbsessions.addresses import parse_host_port, strip_host_prefix
from smbsessions.status import AuthenticationError

PASSWORD_ENV = "SMBSESSIONS_PASSWORD"
"""Environment variable consulted when a password is needed but was not given."""

_HASH_RE = re.compile(r"[0-9a-fA-F]{32}")
_AES_KEY_RE = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{64}")


@dataclass(frozen=True, repr=False)
class Credentials:
    """Who to log on as.

    Exactly one way of proving it applies:

    * ``anonymous``: a null session (no user, no secret);
    * ``nt_hash``: NTLM with the NT hash (32 hex digits) instead of the password;
    * ``kerberos``: Kerberos via GSSAPI (see ``kerberos.prepare``): a TGT from
      ``password``, ``nt_hash`` (the RC4 key) or ``aes_key``, or, with none of them,
      the ticket cache ``ccache`` (default: ``KRB5CCNAME``). ``kdc`` is the KDC's
      address when DNS does not know the realm (``--dc-ip``); ``target_name`` the
      server's name for the SPN ``cifs/<name>`` when the target is an address;
    * otherwise NTLM with ``password``. ``None`` means "not given yet": call
      ``resolve_password`` before using it.

    ``repr`` and ``str`` never show the password or the hash.
    """

    username: str = ""
    domain: str = ""
    password: str | None = None
    nt_hash: str | None = None
    kerberos: bool = False
    anonymous: bool = False
    aes_key: str | None = None
    kdc: str | None = None
    ccache: str | None = None
    target_name: str | None = None

    def __post_init__(self) -> None:
        if self.anonymous:
            if self.username or self.domain or self.password or self.nt_hash or self.kerberos:
                raise ValueError("anonymous credentials take no user, domain, password, hash")
            return
        if not self.username and not self.kerberos:
            raise ValueError("a user name is required (or ask for an anonymous login)")
        if not self.kerberos and (self.aes_key or self.kdc or self.ccache or self.target_name):
            raise ValueError("an AES key, KDC address, ticket cache or target name needs Kerberos (-k)")
        if self.nt_hash is not None:
            if not _HASH_RE.fullmatch(self.nt_hash):
                raise ValueError("the NT hash must be 32 hexadecimal digits")
            if self.password is not None:
                raise ValueError("give a password or an NT hash, not both")
        if self.aes_key is not None:
            if not _AES_KEY_RE.fullmatch(self.aes_key):
                raise ValueError("the AES key must be 32 (AES128) or 64 (AES256) hexadecimal digits")
            if self.password is not None or self.nt_hash is not None:
                raise ValueError("give one of password, NT hash or AES key")
        secret = self.password is not None or self.nt_hash or self.aes_key
        if self.kerberos and secret and not self.username:
            raise ValueError("a password, NT hash or AES key needs the user name")

    @property
    def principal(self) -> str:
        """``DOMAIN\\user`` (or ``user``), the name the server is told; ``""`` if anonymous."""
        if self.domain:
            return f"{self.domain}\\{self.username}"
        return self.username

    @property
    def needs_password(self) -> bool:
        """True if a password must still be obtained before logging on."""
        return not self.anonymous and not self.kerberos and self.nt_hash is None and self.password is None

    def __repr__(self) -> str:
        return (
            f"Credentials(username={self.username!r}, domain={self.domain!r}, "
            f"password={_mask(self.password)}, nt_hash={_mask(self.nt_hash)}, "
            f"kerberos={self.kerberos}, anonymous={self.anonymous}, aes_key={_mask(self.aes_key)}, "
            f"kdc={self.kdc!r}, ccache={self.ccache!r}, target_name={self.target_name!r})"
        )

    def __str__(self) -> str:
        if self.anonymous:
            return "(anonymous)"
        method = "kerberos" if self.kerberos else "nt-hash" if self.nt_hash else "password"
        return f"{self.principal or '(default principal)'} [{method}]"


ANONYMOUS = Credentials(anonymous=True)
"""The null-session login."""


def _mask(secret: str | None) -> str:
    return "None" if secret is None else "'<redacted>'"


def parse_user_spec(spec: str) -> Credentials:
    """Parse Samba's ``[DOMAIN/|DOMAIN\\]USER[%PASSWORD]``.

    ``""`` and ``"%"`` give ``ANONYMOUS``. Without ``%`` the password is ``None``
    (see ``resolve_password``); ``USER%`` means an empty password. The password may
    itself contain ``%``, ``/`` and ``\\``: only the first ``%`` splits.
    """
    who, sep, password = spec.partition("%")
    if not who and (not sep or not password):
        return ANONYMOUS
    domain, user = _split_domain(who)
    if not user:
        raise ValueError("the user name is empty")
    return Credentials(username=user, domain=domain, password=password if sep else None)


def _split_domain(who: str) -> tuple[str, str]:
    # The first separator wins: a user name cannot contain '/' or '\\' on Windows.
    for index, char in enumerate(who):
        if char in "/\\":
            return who[:index], who[index + 1 :]
    return "", who


class TargetSpec(NamedTuple):
    """What ``parse_target`` found: ``credentials`` is ``None`` when no ``user@`` part."""

    credentials: Credentials | None
    host: str
    port: int | None


def parse_target(spec: str) -> TargetSpec:
    """Parse impacket's ``[[DOMAIN/]USER[:PASSWORD]@]HOST[:PORT]``.

    The host part may be a name, an IPv4 address, ``[IPv6]`` with an optional
    ``:PORT``, or a bare IPv6 address (no port then). The *last* ``@`` separates
    the credentials, so a password may contain ``@``; the first ``:`` ends the user
    name, so a password may contain ``:``. No error message repeats the
    credentials part.
    """
    spec = strip_host_prefix(spec)
    who, at, hostport = spec.rpartition("@")
    credentials: Credentials | None = None
    if at:
        user_part, colon, password = who.partition(":")
        domain, user = _split_domain(user_part)
        if not user:
            raise ValueError("the user name before '@' is empty")
        credentials = Credentials(username=user, domain=domain, password=password if colon else None)
    host, port = parse_host_port(hostport)
    return TargetSpec(credentials, host, port)


def parse_hashes(text: str) -> str:
    """Return the NT hash (lower-case hex) from ``LM:NT``, ``:NT`` or ``NT``.

    The LM half, if present, must also be 32 hex digits or empty; it is discarded
    because NTLMv2 never uses it.
    """
    lm, colon, nt = text.strip().rpartition(":")
    if colon and lm and not _HASH_RE.fullmatch(lm):
        raise ValueError("the LM hash must be 32 hexadecimal digits (or empty, as in ':NT')")
    if not _HASH_RE.fullmatch(nt):
        raise ValueError("the NT hash must be 32 hexadecimal digits")
    return nt.lower()


def nt_hash_of(password: str) -> str:
    """The NT hash (NTOWFv1, MS-NLMP 3.3.1) of ``password`` as hex: ``ntlm.nt_hash``.

    Logging on with this hash instead of the password spares pyspnego from also
    deriving the LM hash (pure-Python DES, about 1.2 ms per logon), which NTLMv2
    never uses.
    """
    from smbsessions.ntlm import nt_hash  # the one MD4; imported when a logon needs it

    return nt_hash(password).hex()


def resolve_password(
    credentials: Credentials,
    *,
    environ: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
    prompt: Callable[[str], str] = getpass.getpass,
) -> Credentials:
    """Fill in a missing password; return ``credentials`` unchanged if none is needed.

    Order: the ``SMBSESSIONS_PASSWORD`` environment variable, then an interactive
    prompt without echo, but only if ``stdin`` is a terminal. Otherwise raise
    ``AuthenticationError`` saying how to supply one. The password is never printed.
    """
    if not credentials.needs_password:
        return credentials
    env = os.environ if environ is None else environ
    from_env = env.get(PASSWORD_ENV)
    if from_env is not None:
        return replace(credentials, password=from_env)
    stream = sys.stdin if stdin is None else stdin
    if stream is None or not stream.isatty():
        raise AuthenticationError(
            f"no password for {credentials.principal}: give one (USER%PASSWORD or "
            f"USER:PASSWORD@HOST), an NT hash, or set {PASSWORD_ENV}; "
            "stdin is not a terminal, so it cannot be asked for"
        )
    try:
        password = prompt(f"Password for {credentials.principal}: ")
    except (EOFError, KeyboardInterrupt):
        raise AuthenticationError(f"no password entered for {credentials.principal}") from None
    return replace(credentials, password=password)


_AUTH_FILE_KEYS = ("username", "password", "domain")


def parse_authentication_file(text: str) -> Credentials:
    """Credentials from smbclient's ``-A`` file: ``username = U``, ``password = P``, ``domain = D``.

    Blank lines and ``#``/``;`` comments are skipped; the user name may carry
    the domain (``CORP/alice``). No password line means "ask" (see
    ``resolve_password``). Errors give the line number, never a line's value.
    """
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        key, equals, value = stripped.partition("=")
        key = key.strip().lower()
        if not equals or key not in _AUTH_FILE_KEYS:
            raise ValueError(f"line {number}: expected 'username = ...', 'password = ...' or 'domain = ...'")
        values[key] = value.strip()
    if not values.get("username"):
        raise ValueError("no 'username = ...' line")
    domain, user = _split_domain(values["username"])
    if not user:
        raise ValueError("the user name is empty")
    return Credentials(username=user, domain=values.get("domain") or domain, password=values.get("password"))
