#!/usr/bin/env bash
# install-peers.sh -- make sure the interop test peers are installed (idempotent).
#
# Interop tests run a private Samba smbd on a loopback port and use rpcclient,
# nss_wrapper (fake Unix accounts, so /etc/passwd is never edited) and Samba's
# own Python bindings as a second NDR implementation, and smbtorture's rpc.srvsvc. The watch
# tests run a private PostgreSQL (Debian's postgresql: initdb/pg_ctl, started by the tests
# in a temp dir on a loopback port, never the system cluster). This script installs the
# Debian packages that provide them, when run as root and something is missing.
# Without root it explains why it skips and exits 0: the interop tests then skip
# themselves with a visible reason.
set -u

PACKAGES="samba smbclient samba-common-bin libnss-wrapper python3-samba samba-testsuite"
# watch/history tests: PostgreSQL server binaries (a set of its own, like Kerberos below).
PG_PACKAGES="postgresql"
# Kerberos (-k) tests: a Samba AD DC (samba-ad-dc, winbind + libnss-winbind for its
# smbd's user mapping), the krb5 client tools (kinit, klist), faketime (clock skew),
# and libkrb5-dev to build the 'kerberos' extra (gssapi, krb5) into the venv.
KRB_PACKAGES="samba-ad-dc winbind libnss-winbind krb5-user libkrb5-dev faketime"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV_PYTHON="${VENV_PYTHON:-$ROOT/.venv/bin/python}"

find_nss_wrapper() {
    local f
    for f in /usr/lib/x86_64-linux-gnu/libnss_wrapper.so /usr/lib/*/libnss_wrapper.so \
             /usr/lib/libnss_wrapper.so; do
        [ -e "$f" ] && { echo "$f"; return 0; }
    done
    return 1
}

missing_peers() {
    local missing=""
    command -v smbd >/dev/null 2>&1 || [ -x /usr/sbin/smbd ] || missing="$missing smbd"
    command -v rpcclient >/dev/null 2>&1 || missing="$missing rpcclient"
    command -v smbtorture >/dev/null 2>&1 || missing="$missing smbtorture"
    find_nss_wrapper >/dev/null || missing="$missing libnss_wrapper.so"
    /usr/bin/python3 -c 'import samba.dcerpc.srvsvc' >/dev/null 2>&1 \
        || missing="$missing python3-samba"
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$missing postgresql"
    [ -x /usr/sbin/samba ] && [ -d /usr/share/samba/setup ] || missing="$missing samba-ad-dc"
    command -v wbinfo >/dev/null 2>&1 || missing="$missing winbind"
    ls /lib/*/libnss_winbind.so.2 /usr/lib/*/libnss_winbind.so.2 >/dev/null 2>&1 \
        || missing="$missing libnss-winbind"
    command -v kinit >/dev/null 2>&1 || missing="$missing krb5-user"
    command -v krb5-config >/dev/null 2>&1 || missing="$missing libkrb5-dev"
    command -v faketime >/dev/null 2>&1 || missing="$missing faketime"
    echo "${missing# }"
}

# The 'kerberos' extra (gssapi, krb5: built from source against libkrb5-dev) in the
# project's venv, when there is one and it lacks them. Never fatal: the Kerberos
# tests skip with the reason.
kerberos_extra() {
    [ -x "$VENV_PYTHON" ] || return 0
    "$VENV_PYTHON" -c 'import gssapi, krb5' >/dev/null 2>&1 && return 0
    if ! command -v krb5-config >/dev/null 2>&1; then
        echo "install-peers: the kerberos extra needs libkrb5-dev; Kerberos tests will skip"
        return 0
    fi
    if "$VENV_PYTHON" -m pip install -q -e "$ROOT[kerberos]" >/dev/null 2>&1; then
        echo "install-peers: installed the kerberos extra (gssapi, krb5) into the venv"
    else
        echo "install-peers: pip install '.[kerberos]' failed; Kerberos tests will skip"
    fi
}

missing="$(missing_peers)"
if [ -z "$missing" ]; then
    echo "install-peers: all present (smbd, rpcclient, smbtorture, libnss_wrapper.so, python3-samba, Samba AD DC, krb5, postgresql)"
    kerberos_extra
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "install-peers: skipped, not root (missing: $missing); interop tests will skip"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-peers: skipped, no apt-get (missing: $missing); interop tests will skip"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# A fresh machine often has stale or empty package lists: refresh them only when
# the first attempt fails, so the usual (already installed) path stays offline.
# Separate sets, so that a distribution without the AD DC still gets the Samba peer.
for set in "$PACKAGES" "$KRB_PACKAGES" "$PG_PACKAGES"; do
    # shellcheck disable=SC2086
    if ! apt-get install -y -q $set >/dev/null 2>&1; then
        apt-get update -q >/dev/null 2>&1 || true
        # shellcheck disable=SC2086
        if ! apt-get install -y -q $set >/dev/null 2>&1; then
            echo "install-peers: apt-get install $set failed; the tests needing it will skip"
        fi
    fi
done

still="$(missing_peers)"
if [ -n "$still" ]; then
    echo "install-peers: installed $PACKAGES $KRB_PACKAGES $PG_PACKAGES but still missing: $still"
else
    echo "install-peers: installed (was missing: $missing)"
fi
kerberos_extra
exit 0
