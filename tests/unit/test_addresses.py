"""Host, port and address text (smbsessions.addresses): the one parser and formatter."""

from __future__ import annotations

import argparse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smbsessions.addresses import (
    PORT_RANGE_MESSAGE,
    SMB_PORT,
    bracketed,
    canonical_ip,
    check_port,
    format_host_port,
    listen_port_number,
    parse_host_port,
    parse_port,
    plain_address,
    port_number,
    strip_host_prefix,
)


def test_smb_port() -> None:
    assert SMB_PORT == 445


@pytest.mark.parametrize(
    ("host", "port", "text"),
    [("server", 445, "server:445"), ("10.0.0.1", 139, "10.0.0.1:139"), ("::1", 445, "[::1]:445"),
     ("fe80::1%eth0", 4445, "[fe80::1%eth0]:4445")],
)
def test_format_host_port(host: str, port: int, text: str) -> None:
    assert format_host_port(host, port) == text


@given(st.ip_addresses(), st.integers(1, 65535))
def test_format_then_parse_round_trips(address: object, port: int) -> None:
    assert parse_host_port(format_host_port(str(address), port)) == (str(address), port)


@pytest.mark.parametrize("text", ["0", "65536", "-1", "", "x", "44 5", "+445"])
def test_parse_port_refuses_what_is_no_port(text: str) -> None:
    with pytest.raises(ValueError, match=PORT_RANGE_MESSAGE):
        parse_port(text)


@pytest.mark.parametrize("value", [1, 445, 65535])
def test_check_port_accepts_1_to_65535(value: int) -> None:
    assert check_port(value) == value
    assert parse_port(str(value)) == value


@pytest.mark.parametrize("value", [0, -1, 65536, 1 << 32])
def test_check_port_refuses_the_rest(value: int) -> None:
    with pytest.raises(ValueError, match=PORT_RANGE_MESSAGE):
        check_port(value)


def test_port_number_argparse_type() -> None:
    assert port_number("445") == 445
    assert port_number("0x1BD") == 445
    for bad in ("0", "65536", "-5"):
        with pytest.raises(argparse.ArgumentTypeError, match="1 to 65535"):
            port_number(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="not a number"):
        port_number("smb")


def test_listen_port_number_allows_any_free_port() -> None:
    assert listen_port_number("0") == 0
    assert listen_port_number("4455") == 4455
    for bad in ("-1", "65536", "99999999"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"0 .* to 65535"):
            listen_port_number(bad)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("127.0.0.1", "127.0.0.1"), ("::ffff:127.0.0.2", "127.0.0.2"), ("0:0::1", "::1"),
     ("fe80::1%eth0", "fe80::1%eth0"), ("server", None), ("127.0.0.300", None)],
)
def test_canonical_ip(text: str, canonical: str | None) -> None:
    assert canonical_ip(text) == canonical
    assert plain_address(text) == (text if canonical is None else canonical)


def test_bracketed() -> None:
    assert bracketed("::1") == "[::1]"
    assert bracketed("127.0.0.1") == "127.0.0.1"


@pytest.mark.parametrize(
    ("spec", "plain"),
    [(r"\\server", "server"), (r"\\server\share\dir", "server"), ("//server/share", "server"),
     ("smb://host:1445/share", "host:1445"), ("SMB://CORP;alice:pw@host", "CORP/alice:pw@host"),
     ("alice@host", "alice@host"), ("host:445", "host:445")],
)
def test_strip_host_prefix(spec: str, plain: str) -> None:
    assert strip_host_prefix(spec) == plain
