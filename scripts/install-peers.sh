#!/usr/bin/env bash
# install-peers.sh -- make sure the interop test peers are installed (idempotent).
#
# Interop tests run a private Samba smbd on a loopback port and use rpcclient,
# nss_wrapper (fake Unix accounts, so /etc/passwd is never edited) and Samba's
# own Python bindings as a second NDR implementation, and smbtorture's rpc.srvsvc. This script installs the
# Debian packages that provide them, when run as root and something is missing.
# Without root it explains why it skips and exits 0: the interop tests then skip
# themselves with a visible reason.
set -u

PACKAGES="samba smbclient samba-common-bin libnss-wrapper python3-samba samba-testsuite"

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
    echo "${missing# }"
}

missing="$(missing_peers)"
if [ -z "$missing" ]; then
    echo "install-peers: all present (smbd, rpcclient, smbtorture, libnss_wrapper.so, python3-samba)"
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
# shellcheck disable=SC2086
if ! apt-get install -y -q $PACKAGES >/dev/null 2>&1; then
    apt-get update -q >/dev/null 2>&1 || true
    # shellcheck disable=SC2086
    if ! apt-get install -y -q $PACKAGES >/dev/null 2>&1; then
        echo "install-peers: apt-get install failed (missing: $missing); interop tests will skip"
        exit 0
    fi
fi

still="$(missing_peers)"
if [ -n "$still" ]; then
    echo "install-peers: installed $PACKAGES but still missing: $still"
else
    echo "install-peers: installed (was missing: $missing)"
fi
exit 0
