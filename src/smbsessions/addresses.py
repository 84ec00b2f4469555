"""Host, port and address text: the one place that parses and formats them.

Used by ``auth.parse_target`` (the ``[[DOMAIN/]USER[:PASSWORD]@]HOST[:PORT]``
form), the CLIs' ``--port`` options, the sweep's targets and the server's
session table. Pure: no I/O, no name resolution.

Forms understood:

* ``HOST[:PORT]``, ``[IPv6][:PORT]`` or a bare IPv6 address (``parse_host_port``);
* UNC ``\\\\server[\\share...]`` and ``smb://[user@]host[:port][/path]``
  (``strip_host_prefix``, as ``net session \\\\server`` is typed);
* a port, ``1``-``65535`` (``parse_port``, ``check_port``, and the argparse type
  ``port_number``); a port to *listen* on may also be ``0``, "any free port"
  (``listen_port_number``).

Error messages never quote the text they reject: a mistyped ``USER:PASSWORD``
(the ``@HOST`` forgotten) arrives here and must not be echoed.
"""

from __future__ import annotations

import argparse
import ipaddress
import re

__all__ = [
    "PORT_RANGE_MESSAGE",
    "SMB_PORT",
    "bracketed",
    "canonical_ip",
    "check_port",
    "format_host_port",
    "listen_port_number",
    "parse_host_port",
    "parse_port",
    "plain_address",
    "port_number",
    "strip_host_prefix",
]

SMB_PORT = 445
"""The port SMB listens on unless told otherwise."""

PORT_RANGE_MESSAGE = "the port must be a number from 1 to 65535"
"""What ``parse_port`` and ``check_port`` say about a port outside 1-65535."""

_DIGITS_AND_DOTS = re.compile(r"[0-9.]+")


# -- formatting ---------------------------------------------------------------------


def format_host_port(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets: ``[::1]:445``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bracketed(address: str) -> str:
    """An IPv6 address in brackets (as in ``tcp:[::1]:445``); others unchanged."""
    return f"[{address}]" if ":" in address else address


def canonical_ip(text: str) -> str | None:
    """The canonical text of an IP address (``0:0::1`` -> ``::1``, an IPv4-mapped IPv6
    address as IPv4, a ``%scope`` kept), or None when ``text`` is not an IP address."""
    host, _, scope = text.partition("%")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return f"{address}%{scope}" if scope else str(address)


def plain_address(address: str) -> str:
    """A peer's IP in canonical text, without an IPv4-mapped prefix (scope id kept);
    anything that is not an IP address unchanged."""
    canonical = canonical_ip(address)
    return address if canonical is None else canonical


# -- ports --------------------------------------------------------------------------


def parse_port(text: str) -> int:
    """A port written in decimal digits, 1-65535; ``ValueError`` otherwise."""
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(PORT_RANGE_MESSAGE)
    return int(text)


def check_port(value: int) -> int:
    """``value`` if it is a TCP port (1-65535); ``ValueError`` otherwise."""
    if not 0 < value < 65536:
        raise ValueError(PORT_RANGE_MESSAGE)
    return value


def _integer(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def port_number(text: str) -> int:
    """argparse type: a TCP port, 1-65535 (``0x`` and ``0o`` prefixes accepted)."""
    value = _integer(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError("a port is a number from 1 to 65535")
    return value


def listen_port_number(text: str) -> int:
    """argparse type: a TCP port to listen on, 0-65535 (0: any free port)."""
    value = _integer(text)
    if not 0 <= value < 65536:
        raise argparse.ArgumentTypeError("a port to listen on is a number from 0 (any free port) to 65535")
    return value


# -- parsing ------------------------------------------------------------------------


def parse_host_port(text: str) -> tuple[str, int | None]:
    """Split ``HOST[:PORT]``, ``[IPv6][:PORT]`` or a bare IPv6 address.

    An all-digits-and-dots host must be a valid IPv4 address (no DNS name is all
    digits: ``127.0.0.300`` is a mistyped address). Error messages never quote the text.
    """
    if not text:
        raise ValueError("the host is empty")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError("unclosed '[' in the host")
        host, rest = text[1:end], text[end + 1 :]
        if not host:
            raise ValueError("the host between [ ] is empty")
        _check_ipv6(host)
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ValueError("unexpected text after ']' in the host")
        return host, parse_port(rest[1:])
    if text.count(":") > 1:
        _check_ipv6(text)
        return text, None
    host, colon, port_text = text.partition(":")
    if not host:
        raise ValueError("the host before ':' is empty")
    if _DIGITS_AND_DOTS.fullmatch(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{host} is not a valid IPv4 address") from None
    return host, parse_port(port_text) if colon else None


def _check_ipv6(text: str) -> None:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        raise ValueError("a host with several ':' must be an IPv6 address") from None


def strip_host_prefix(spec: str) -> str:
    """``\\\\server`` (UNC, as ``net session \\\\server``) and ``smb://[user@]host[:port][/path]``
    to the plain ``[user@]host[:port]`` form; anything after the host (a share, a path) is
    ignored. Other text is returned unchanged.

    ``smb://DOMAIN;USER[:PASSWORD]@HOST`` (the SMB URI draft) becomes ``DOMAIN/USER...``.
    """
    if spec[:6].lower() == "smb://":
        authority = spec[6:].partition("/")[0]
        who, at, host = authority.rpartition("@")
        if at and ";" in who.partition(":")[0]:
            who = who.replace(";", "/", 1)
        return f"{who}{at}{host}"
    if spec.startswith(("\\\\", "//")):
        rest = spec[2:]
        for index, char in enumerate(rest):
            if char in "\\/":
                return rest[:index]
        return rest
    return spec
