"""Kerberos tickets: ``prepare`` turns ``-k`` credentials into a ticket cache (one
AS-REQ with a secret, or a check of an existing cache), once per process.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from dataclasses import replace
from typing import Any

from smbsessions.auth import Credentials

from . import errors
from .config import principal_text, private_directory, realm_of, state_lock, use_kdc
from .errors import (
    ENCTYPE_AES128,
    ENCTYPE_AES256,
    ENCTYPE_RC4_HMAC,
    KRB5_CC_NOTFOUND,
    KRB5_FCC_NOFILE,
    KRB5KRB_AP_ERR_TKT_EXPIRED,
    KerberosError,
    NoTicketError,
    TicketExpiredError,
    translate_code,
)

_prepared: dict[tuple[Any, ...], Credentials] = {}


def prepare(credentials: Credentials) -> Credentials:
    """Kerberos credentials ready for any number of logons: a ticket cache to use.

    Not Kerberos: returned unchanged. With a secret: one AS-REQ, the TGT into a
    private cache; the result carries the cache name and no secret. Without one:
    the cache named by ``credentials.ccache``, ``KRB5CCNAME`` or the default, checked
    to hold a ticket that has not expired. The same credentials prepared twice in
    one process reuse the first ticket. Raises a ``KerberosError``.
    """
    if not credentials.kerberos:
        return credentials
    errors.require_gssapi()
    key = _cache_key(credentials)
    with state_lock:
        done = _prepared.get(key)
    if done is not None and done.ccache is not None and _cache_valid(done.ccache):
        return done
    if credentials.kdc:
        realm = realm_of(credentials) or _realm_from_cache(credentials)
        if realm is None:
            raise KerberosError(
                "--dc-ip needs the realm: give the user as REALM/user with the DNS domain "
                "(e.g. -U example.com/alice)"
            )
        use_kdc(realm, credentials.kdc)
    if credentials.password is not None or credentials.nt_hash or credentials.aes_key:
        ccache = acquire_ticket(credentials)
        result = replace(credentials, password=None, nt_hash=None, aes_key=None, ccache=ccache)
    else:
        result = replace(credentials, ccache=check_cache(credentials))
    with state_lock:
        _prepared[key] = result
    return result


def _cache_key(credentials: Credentials) -> tuple[Any, ...]:
    secret = credentials.password or credentials.nt_hash or credentials.aes_key or ""
    digest = hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest() if secret else ""
    return (os.getpid(), credentials.username, credentials.domain, credentials.kdc,
            credentials.ccache, digest)


def _realm_from_cache(credentials: Credentials) -> str | None:
    import krb5

    ctx = krb5.init_context()
    try:
        cache = krb5.cc_resolve(ctx, _cache_name(credentials).encode())
        principal = krb5.cc_get_principal(ctx, cache)
    except krb5.Krb5Error:
        return None
    return bytes(principal.realm).decode() if principal.realm else None


def _cache_name(credentials: Credentials) -> str:
    if credentials.ccache:
        return credentials.ccache
    env = os.environ.get("KRB5CCNAME")
    if env:
        return env
    import krb5

    return str(krb5.cc_default_name(krb5.init_context()).decode())


def _key_entry(credentials: Credentials) -> tuple[int, bytes] | None:
    if credentials.nt_hash:
        return ENCTYPE_RC4_HMAC, bytes.fromhex(credentials.nt_hash)
    if credentials.aes_key:
        raw = bytes.fromhex(credentials.aes_key)
        return (ENCTYPE_AES256 if len(raw) == 32 else ENCTYPE_AES128), raw
    return None


def acquire_ticket(credentials: Credentials, *, lifetime: int | None = None) -> str:
    """Get a TGT for ``credentials`` (password, NT hash or AES key); return the cache name.

    The cache is ``FILE:<private dir>/ccache-N``, removed when this process exits.
    ``lifetime``: requested ticket lifetime in seconds (the KDC may shorten it).
    """
    errors.require_gssapi()
    import krb5

    realm = realm_of(credentials)
    name = principal_text(credentials, realm)
    ctx = krb5.init_context()
    try:
        principal = krb5.parse_name_flags(ctx, name.encode())
        opt = krb5.get_init_creds_opt_alloc(ctx)
        krb5.get_init_creds_opt_set_canonicalize(opt, True)
        if lifetime is not None:
            krb5.get_init_creds_opt_set_tkt_life(opt, lifetime)
        entry = _key_entry(credentials)
        if entry is None:
            creds = krb5.get_init_creds_password(
                ctx, principal, opt, password=(credentials.password or "").encode("utf-8")
            )
        else:
            enctype, raw = entry
            krb5.get_init_creds_opt_set_etype_list(opt, [enctype])
            keytab = krb5.kt_resolve(ctx, f"MEMORY:smbsessions-{os.getpid()}-{id(opt)}".encode())
            krb5.kt_add_entry(ctx, keytab, principal, 0, 0, krb5.init_keyblock(ctx, enctype, raw))
            creds = krb5.get_init_creds_keytab(ctx, principal, opt, keytab)
        with state_lock:
            path = os.path.join(private_directory(), f"ccache-{len(_prepared)}-{time.monotonic_ns()}")
        ccache_name = f"FILE:{path}"
        cache = krb5.cc_resolve(ctx, ccache_name.encode())
        krb5.cc_initialize(ctx, cache, creds.client)
        krb5.cc_store_cred(ctx, cache, creds)
    except krb5.Krb5Error as exc:
        raise translate_code(exc.err_code, str(exc), who=name) from None
    return ccache_name


def check_cache(credentials: Credentials) -> str:
    """The name of the ticket cache to use; raise unless it holds an unexpired ticket."""
    import krb5

    name = _cache_name(credentials)
    ctx = krb5.init_context()
    try:
        cache = krb5.cc_resolve(ctx, name.encode())
        principal = krb5.cc_get_principal(ctx, cache)
        creds = list(cache)
    except krb5.Krb5Error as exc:
        raise NoTicketError(
            f"no Kerberos ticket: the cache {name} {_cache_problem(exc)}; run kinit (or "
            "impacket's getTGT and set KRB5CCNAME), or give a password, NT hash or AES key",
            exc.err_code,
        ) from None
    who = krb5.unparse_name_flags(ctx, principal).decode()
    if credentials.username and who.split("@")[0].lower() != credentials.username.lower():
        raise NoTicketError(
            f"the ticket cache {name} holds tickets for {who}, not {credentials.username}: "
            "run kinit for that user, or give a password"
        )
    now = int(time.time())
    tickets = [c for c in creds if not bytes(c.server.realm).startswith(b"X-CACHECONF")]
    if not tickets:
        raise NoTicketError(f"no Kerberos ticket in the cache {name} (for {who}): run kinit")
    if all(c.times.endtime <= now for c in tickets):
        raise TicketExpiredError(
            f"the Kerberos tickets in {name} (for {who}) have expired: run kinit again "
            "(or give a password)",
            KRB5KRB_AP_ERR_TKT_EXPIRED,
        )
    return name


def _cache_problem(exc: Any) -> str:
    if exc.err_code in (KRB5_FCC_NOFILE, KRB5_CC_NOTFOUND):
        return "does not exist"
    return f"cannot be read ({exc})"


def _cache_valid(name: str) -> bool:
    with contextlib.suppress(Exception):
        import krb5

        ctx = krb5.init_context()
        cache = krb5.cc_resolve(ctx, name.encode())
        now = int(time.time())
        return any(c.times.endtime > now for c in cache)
    return False
