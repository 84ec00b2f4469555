"""Kerberos failures, typed: the MIT krb5 error codes we name, one ``KerberosError``
subclass per cause a user can act on, and the translation of krb5/GSSAPI exceptions
(and of a server's clock) into them. Also whether the ``kerberos`` extra is installed.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import re
from typing import Any

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
