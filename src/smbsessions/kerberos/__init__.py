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

Layout: ``errors`` (krb5 codes, the typed errors, ``translate``, clock skew),
``config`` (names and SPNs, ``--dc-ip``'s private krb5.conf), ``tickets`` (``prepare``,
``acquire_ticket``, ``check_cache``). Every public name is importable from
``smbsessions.kerberos``.
"""

from .config import is_address, krb5_conf_text, realm_of, spn_host, use_kdc
from .errors import (
    ENCTYPE_AES128,
    ENCTYPE_AES256,
    ENCTYPE_RC4_HMAC,
    EXTRA,
    KRB5_CC_END,
    KRB5_CC_NOTFOUND,
    KRB5_FCC_NOFILE,
    KRB5_KDC_UNREACH,
    KRB5_REALM_CANT_RESOLVE,
    KRB5_REALM_UNKNOWN,
    KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN,
    KRB5KDC_ERR_CLIENT_REVOKED,
    KRB5KDC_ERR_ETYPE_NOSUPP,
    KRB5KDC_ERR_KEY_EXP,
    KRB5KDC_ERR_PREAUTH_FAILED,
    KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN,
    KRB5KRB_AP_ERR_BAD_INTEGRITY,
    KRB5KRB_AP_ERR_MODIFIED,
    KRB5KRB_AP_ERR_SKEW,
    KRB5KRB_AP_ERR_TKT_EXPIRED,
    MAX_SKEW_SECONDS,
    SYSTEM_PACKAGE,
    ClockSkewError,
    GssapiMissingError,
    KdcUnreachableError,
    KerberosError,
    NeedsHostNameError,
    NoTicketError,
    TicketExpiredError,
    UnknownPrincipalError,
    UnsupportedKeyError,
    WrongPasswordError,
    gssapi_available,
    require_gssapi,
    server_clock_skew,
    translate,
    translate_code,
)
from .tickets import acquire_ticket, check_cache, prepare

__all__ = [
    "ENCTYPE_AES128", "ENCTYPE_AES256", "ENCTYPE_RC4_HMAC", "EXTRA",
    "KRB5KDC_ERR_CLIENT_REVOKED", "KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN", "KRB5KDC_ERR_ETYPE_NOSUPP",
    "KRB5KDC_ERR_KEY_EXP", "KRB5KDC_ERR_PREAUTH_FAILED", "KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN",
    "KRB5KRB_AP_ERR_BAD_INTEGRITY", "KRB5KRB_AP_ERR_MODIFIED", "KRB5KRB_AP_ERR_SKEW",
    "KRB5KRB_AP_ERR_TKT_EXPIRED", "KRB5_CC_END", "KRB5_CC_NOTFOUND", "KRB5_FCC_NOFILE",
    "KRB5_KDC_UNREACH", "KRB5_REALM_CANT_RESOLVE", "KRB5_REALM_UNKNOWN", "MAX_SKEW_SECONDS",
    "SYSTEM_PACKAGE", "ClockSkewError", "GssapiMissingError", "KdcUnreachableError", "KerberosError",
    "NeedsHostNameError", "NoTicketError", "TicketExpiredError", "UnknownPrincipalError",
    "UnsupportedKeyError", "WrongPasswordError", "acquire_ticket", "check_cache", "gssapi_available",
    "is_address", "krb5_conf_text", "prepare", "realm_of", "require_gssapi", "server_clock_skew",
    "spn_host", "translate", "translate_code", "use_kdc",
]
