"""Kerberos for ``-k``: getting a ticket once, naming the server, and saying what went wrong.

The SMB logon itself is GSSAPI through pyspnego (``transport``); this module does the
parts around it, with MIT krb5 through the ``krb5`` and ``gssapi`` packages of the
``smbsessions[kerberos]`` extra (both are imported lazily, so the rest of the package
works without them):

* ``prepare``: turn ``-k`` credentials into a ticket cache. With a secret (password,
  NT hash = RC4 key, or AES key) it asks the KDC for a TGT once (one AS-REQ) and
  stores it in a private ``FILE:`` cache in a 0700 temporary directory, removed at
  exit. Without a secret it checks the cache ``KRB5CCNAME`` (or the default one)
  names, as left by ``kinit`` or impacket's getTGT. Every later SMB logon, in this
  process or in sweep workers forked from it, uses that cache: one TGT per run,
  one service ticket per server.
* ``use_kdc``: ``--dc-ip``. Writes a private krb5.conf naming the KDC for the realm
  and puts it first in ``KRB5_CONFIG`` for this process (and its children).
* ``spn_host``: the name in the SPN ``cifs/<host>``. Kerberos needs the server's
  name; a target given as an IP address needs the name given separately
  (``Credentials.target_name``, ``--target-name``).
* ``translate``: a krb5 or GSSAPI failure as a typed ``KerberosError``.

Secrets are never logged, printed or put in argv; keys live in a ``MEMORY:`` keytab
of this process only.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import hashlib
import importlib.util
import ipaddress
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import replace
from typing import Any

from smbsessions.auth import Credentials
from smbsessions.status import AuthenticationError

EXTRA = "smbsessions[kerberos]"
"""The pip extra that brings Kerberos (pyspnego[kerberos]: gssapi and krb5)."""

SYSTEM_PACKAGE = "libkrb5-dev"
"""The Debian/Ubuntu package gssapi and krb5 build against (krb5-devel on Fedora/RHEL)."""

# MIT krb5 error codes (com_err table "krb5", base -1765328384): KDC/AP protocol
# errors are base + their RFC 4120 number, library errors further on.
_BASE = -1765328384
KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN = _BASE + 6
KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN = _BASE + 7
KRB5KDC_ERR_ETYPE_NOSUPP = _BASE + 14
KRB5KDC_ERR_CLIENT_REVOKED = _BASE + 18
KRB5KDC_ERR_KEY_EXP = _BASE + 23
KRB5KDC_ERR_PREAUTH_FAILED = _BASE + 24
KRB5KRB_AP_ERR_BAD_INTEGRITY = _BASE + 31
KRB5KRB_AP_ERR_TKT_EXPIRED = _BASE + 32
KRB5KRB_AP_ERR_SKEW = _BASE + 37
KRB5_CC_NOTFOUND = -1765328243
KRB5_FCC_NOFILE = -1765328189
KRB5_KDC_UNREACH = -1765328228
KRB5_REALM_UNKNOWN = -1765328230
KRB5_REALM_CANT_RESOLVE = -1765328164
KRB5_CC_END = -1765328242
KRB5KRB_AP_ERR_MODIFIED = _BASE + 41

ENCTYPE_AES128 = 17
ENCTYPE_AES256 = 18
ENCTYPE_RC4_HMAC = 23

_CODE_NAMES = {
    KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN: "KDC_ERR_C_PRINCIPAL_UNKNOWN",
    KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN: "KDC_ERR_S_PRINCIPAL_UNKNOWN",
    KRB5KDC_ERR_ETYPE_NOSUPP: "KDC_ERR_ETYPE_NOSUPP",
    KRB5KDC_ERR_CLIENT_REVOKED: "KDC_ERR_CLIENT_REVOKED",
    KRB5KDC_ERR_KEY_EXP: "KDC_ERR_KEY_EXPIRED",
    KRB5KDC_ERR_PREAUTH_FAILED: "KDC_ERR_PREAUTH_FAILED",
    KRB5KRB_AP_ERR_BAD_INTEGRITY: "KRB_AP_ERR_BAD_INTEGRITY",
    KRB5KRB_AP_ERR_TKT_EXPIRED: "KRB_AP_ERR_TKT_EXPIRED",
    KRB5KRB_AP_ERR_SKEW: "KRB_AP_ERR_SKEW",
    KRB5KRB_AP_ERR_MODIFIED: "KRB_AP_ERR_MODIFIED",
    KRB5_CC_NOTFOUND: "KRB5_CC_NOTFOUND",
    KRB5_CC_END: "KRB5_CC_END",
    KRB5_FCC_NOFILE: "KRB5_FCC_NOFILE",
    KRB5_KDC_UNREACH: "KRB5_KDC_UNREACH",
    KRB5_REALM_UNKNOWN: "KRB5_REALM_UNKNOWN",
    KRB5_REALM_CANT_RESOLVE: "KRB5_REALM_CANT_RESOLVE",
}


# ------------------------------------------------------------------------- errors


class KerberosError(AuthenticationError):
    """A Kerberos logon could not be made. ``code``: the krb5 error code, if known;
    ``code_name``: its name (``KRB_AP_ERR_SKEW``...)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        self.code = code
        self.code_name = _CODE_NAMES.get(code) if code is not None else None
        super().__init__(message)


class GssapiMissingError(KerberosError):
    """The ``gssapi``/``krb5`` Python packages are not installed."""


class ClockSkewError(KerberosError):
    """This machine's clock and the KDC's (or the server's) differ by more than allowed."""


class NoTicketError(KerberosError):
    """No ticket cache, or no usable ticket in it, and no secret to get one."""


class TicketExpiredError(KerberosError):
    """The tickets in the cache have expired."""


class UnknownPrincipalError(KerberosError):
    """The KDC does not know the user (or the server's SPN)."""


class KdcUnreachableError(KerberosError):
    """No KDC for the realm could be found or reached."""


class WrongPasswordError(KerberosError):
    """The KDC refused the password (or key): pre-authentication failed."""


class NeedsHostNameError(KerberosError):
    """A server given by IP address: Kerberos needs its name for the SPN."""


class UnsupportedKeyError(KerberosError):
    """The KDC (or local policy) does not accept this key type."""


def gssapi_available() -> bool:
    """True when the ``kerberos`` extra's packages (gssapi and krb5) can be imported."""
    return all(importlib.util.find_spec(name) is not None for name in ("gssapi", "krb5"))


def require_gssapi() -> None:
    """Raise ``GssapiMissingError`` naming the extra and the system package, if missing."""
    if not gssapi_available():
        raise GssapiMissingError(
            f"Kerberos (-k) needs the Python packages gssapi and krb5: pip install '{EXTRA}' "
            f"(building them needs MIT Kerberos headers: apt-get install {SYSTEM_PACKAGE}, "
            "or krb5-devel on Fedora/RHEL, and a C compiler)"
        )


# ------------------------------------------------------------------------- names


def realm_of(credentials: Credentials) -> str | None:
    """The realm ``credentials`` name: the DNS domain upper-cased (``example.com`` ->
    ``EXAMPLE.COM``). A NetBIOS-style domain (no dot) or none gives ``None``: the
    default realm of krb5.conf (or the ticket cache's) applies."""
    domain = credentials.domain.strip()
    if "." in domain:
        return domain.upper()
    return None


def _principal_text(credentials: Credentials, realm: str | None) -> str:
    user = credentials.username
    return f"{user}@{realm}" if realm else user


def is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return False
    return True


def spn_host(credentials: Credentials, host: str) -> str:
    """The host part of the SPN ``cifs/<host>`` for a logon to ``host``.

    ``credentials.target_name`` wins; otherwise ``host`` itself, which must be a
    name: a ticket is issued for a name, never for an address.
    """
    if credentials.target_name:
        return credentials.target_name
    if is_address(host):
        raise NeedsHostNameError(
            f"{host}: Kerberos needs the server's name, not an IP address (the ticket is "
            f"for the SPN cifs/<name>): give the name as the target, or keep the address "
            "and add --target-name NAME"
        )
    return host


# ------------------------------------------------------------------------- --dc-ip

_lock = threading.Lock()
_private_dir: str | None = None
_private_dir_pid: int | None = None
_kdc_configs: dict[tuple[str, str], str] = {}
_prepared: dict[tuple[Any, ...], Credentials] = {}


def _directory() -> str:
    """A private 0700 directory for this process's krb5.conf and ticket cache."""
    global _private_dir, _private_dir_pid
    if _private_dir is None or _private_dir_pid != os.getpid():
        _private_dir = tempfile.mkdtemp(prefix="smbsessions-krb5-")
        _private_dir_pid = os.getpid()
        atexit.register(_remove_directory, _private_dir, _private_dir_pid)
    return _private_dir


def _remove_directory(path: str, owner_pid: int) -> None:
    # Forked sweep workers inherit the atexit list: only the creator removes it.
    if os.getpid() == owner_pid:
        shutil.rmtree(path, ignore_errors=True)


def krb5_conf_text(realm: str, kdc: str) -> str:
    """A krb5.conf naming ``kdc`` (an address or name, optionally ``:port``) for ``realm``.

    No DNS lookups of KDCs or realms, and the server name is used as given (no
    forward/reverse canonicalisation), so the SPN is exactly ``cifs/<name>``.
    """
    kdc_entry = f"[{kdc}]" if ":" in kdc and not kdc.startswith("[") and is_address(kdc) else kdc
    return (
        "[libdefaults]\n"
        f"    default_realm = {realm}\n"
        "    dns_lookup_kdc = false\n"
        "    dns_lookup_realm = false\n"
        "    dns_canonicalize_hostname = false\n"
        "    rdns = false\n"
        "[realms]\n"
        f"    {realm} = {{\n"
        f"        kdc = {kdc_entry}\n"
        "    }\n"
        "[domain_realm]\n"
        f"    .{realm.lower()} = {realm}\n"
        f"    {realm.lower()} = {realm}\n"
    )


def use_kdc(realm: str, kdc: str) -> str:
    """``--dc-ip``: make ``kdc`` the KDC of ``realm`` for this process and its children.

    Writes a private krb5.conf and puts it first in ``KRB5_CONFIG`` (the files
    already named there, or /etc/krb5.conf, still apply after it). Returns its path.
    """
    realm = realm.upper()
    with _lock:
        path = _kdc_configs.get((realm, kdc))
        if path is None:
            path = os.path.join(_directory(), f"krb5-{len(_kdc_configs)}.conf")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(krb5_conf_text(realm, kdc))
            _kdc_configs[(realm, kdc)] = path
        previous = os.environ.get("KRB5_CONFIG", "/etc/krb5.conf")
        rest = [p for p in previous.split(":") if p and p not in _kdc_configs.values()]
        os.environ["KRB5_CONFIG"] = ":".join([path, *rest])
    return path


# ------------------------------------------------------------------------- tickets


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
    require_gssapi()
    key = _cache_key(credentials)
    with _lock:
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
    with _lock:
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
    require_gssapi()
    import krb5

    realm = realm_of(credentials)
    name = _principal_text(credentials, realm)
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
        with _lock:
            path = os.path.join(_directory(), f"ccache-{len(_prepared)}-{time.monotonic_ns()}")
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


# ------------------------------------------------------------------------- errors

_MINOR_RE = re.compile(r"Minor \(([-0-9]+)\)")


def translate_code(code: int, text: str, *, who: str = "", where: str = "") -> KerberosError:
    """A typed ``KerberosError`` for the krb5 error ``code`` (``text``: krb5's own words)."""
    prefix = f"{where}: " if where else ""
    name = _CODE_NAMES.get(code)
    tag = f" ({name})" if name else f" (krb5 error {code})"
    subject = who or "the user"
    if code == KRB5KRB_AP_ERR_SKEW:
        return ClockSkewError(
            f"{prefix}clock skew too great between this machine and the KDC or server{tag}: "
            "synchronise the clocks (Kerberos allows 5 minutes by default)", code)
    if code == KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN:
        return UnknownPrincipalError(f"{prefix}the KDC does not know {subject}{tag}", code)
    if code == KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN:
        return UnknownPrincipalError(
            f"{prefix}the KDC knows no service principal for this server{tag}: use the "
            "server's name as registered in the domain (cifs/<name>)", code)
    if code in (KRB5KDC_ERR_PREAUTH_FAILED, KRB5KRB_AP_ERR_BAD_INTEGRITY):
        return WrongPasswordError(
            f"{prefix}the KDC refused the password or key of {subject}{tag}", code)
    if code == KRB5KRB_AP_ERR_TKT_EXPIRED:
        return TicketExpiredError(f"{prefix}the Kerberos ticket has expired{tag}: run kinit again", code)
    if code in (KRB5_KDC_UNREACH, KRB5_REALM_CANT_RESOLVE, KRB5_REALM_UNKNOWN):
        return KdcUnreachableError(
            f"{prefix}no KDC could be reached for the realm{tag}: {text}; give the domain "
            "controller's address with --dc-ip", code)
    if code in (KRB5_FCC_NOFILE, KRB5_CC_NOTFOUND, KRB5_CC_END):
        return NoTicketError(f"{prefix}no usable Kerberos ticket{tag}: {text}; run kinit", code)
    if code == KRB5KDC_ERR_ETYPE_NOSUPP:
        return UnsupportedKeyError(
            f"{prefix}the KDC does not accept this key type{tag} (an NT hash is an RC4 key; "
            "the domain may allow only AES)", code)
    if code == KRB5KDC_ERR_CLIENT_REVOKED:
        return KerberosError(f"{prefix}the account {subject} is disabled or locked out{tag}", code)
    if code == KRB5KDC_ERR_KEY_EXP:
        return KerberosError(f"{prefix}the password of {subject} has expired{tag}", code)
    return KerberosError(f"{prefix}Kerberos failed{tag}: {text}", code)


def translate(exc: BaseException, *, where: str = "") -> KerberosError | None:
    """A typed error for a GSSAPI/krb5 failure raised during an SMB logon, else None.

    pyspnego wraps GSSAPI errors in ``spnego.exceptions.SpnegoError`` whose
    ``base_error`` (a ``gssapi`` ``GSSError``) carries the krb5 code as its minor
    status; smbprotocol may wrap that again with the text only.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        base = getattr(current, "base_error", None)
        for candidate in (current, base):
            code = getattr(candidate, "min_code", None) or getattr(candidate, "err_code", None)
            if isinstance(code, int) and code:
                return translate_code(_signed(code), _gss_text(candidate), where=where)
        current = base if isinstance(base, BaseException) else (current.__cause__ or current.__context__)
    match = _MINOR_RE.search(str(exc))
    if match:
        return translate_code(_signed(int(match.group(1))), str(exc), where=where)
    return None


MAX_SKEW_SECONDS = 300
"""Kerberos' default allowance (krb5.conf ``clockskew``, Windows and Samba alike)."""


def server_clock_skew(server_time: Any, where: str, ntstatus: int | None = None) -> ClockSkewError | None:
    """A ``ClockSkewError`` when a server refused a Kerberos logon and its clock (from
    its SMB2 NEGOTIATE reply) is more than 5 minutes from ours, else None.

    The server answers a skewed AP-REQ with a plain STATUS_LOGON_FAILURE, not a
    KRB-ERROR, so this comparison is the only way to tell the cause.
    """
    if not isinstance(server_time, datetime.datetime):
        return None
    theirs = server_time if server_time.tzinfo else server_time.replace(tzinfo=datetime.UTC)
    offset = (theirs - datetime.datetime.now(datetime.UTC)).total_seconds()
    if abs(offset) <= MAX_SKEW_SECONDS:
        return None
    direction = "ahead of" if offset > 0 else "behind"
    status = f" (0x{ntstatus:08X})" if ntstatus is not None else ""
    return ClockSkewError(
        f"{where}: the server refused the Kerberos logon{status} and its clock is "
        f"{abs(offset) / 60:.0f} min {direction} this machine's (KRB_AP_ERR_SKEW: Kerberos "
        "allows 5 minutes): synchronise the clocks",
        KRB5KRB_AP_ERR_SKEW,
    )


def _signed(code: int) -> int:
    return code - (1 << 32) if code >= 1 << 31 else code


def _gss_text(error: Any) -> str:
    text = getattr(error, "gen_message", None)
    if callable(text):
        with contextlib.suppress(Exception):
            return str(text())
    return str(error)
