"""Kerberos names and ``--dc-ip``: the realm and SPN host of a logon, and a private
krb5.conf naming the KDC (in a 0700 directory of this process, removed at exit).
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import shutil
import tempfile
import threading

from smbsessions.auth import Credentials

from .errors import NeedsHostNameError

# ------------------------------------------------------------------------- names


def realm_of(credentials: Credentials) -> str | None:
    """The realm ``credentials`` name: the DNS domain upper-cased (``example.com`` ->
    ``EXAMPLE.COM``). A NetBIOS-style domain (no dot) or none gives ``None``: the
    default realm of krb5.conf (or the ticket cache's) applies."""
    domain = credentials.domain.strip()
    if "." in domain:
        return domain.upper()
    return None


def principal_text(credentials: Credentials, realm: str | None) -> str:
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

state_lock = threading.Lock()
_private_dir: str | None = None
_private_dir_pid: int | None = None
_kdc_configs: dict[tuple[str, str], str] = {}


def private_directory() -> str:
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
    with state_lock:
        path = _kdc_configs.get((realm, kdc))
        if path is None:
            path = os.path.join(private_directory(), f"krb5-{len(_kdc_configs)}.conf")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(krb5_conf_text(realm, kdc))
            _kdc_configs[(realm, kdc)] = path
        previous = os.environ.get("KRB5_CONFIG", "/etc/krb5.conf")
        rest = [p for p in previous.split(":") if p and p not in _kdc_configs.values()]
        os.environ["KRB5_CONFIG"] = ":".join([path, *rest])
    return path
