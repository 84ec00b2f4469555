"""Credential parsing, redaction and password resolution (smbsessions.auth)."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smbsessions.addresses import parse_host_port
from smbsessions.auth import (
    ANONYMOUS,
    PASSWORD_ENV,
    Credentials,
    TargetSpec,
    nt_hash_of,
    parse_hashes,
    parse_target,
    parse_user_spec,
    resolve_password,
)
from smbsessions.ntlm import md4
from smbsessions.status import AuthenticationError

SECRET = "S3cr%t:@/pw"
NT_HASH = "8846f7eaee8fb117ad06bdd830b7586c"  # NT hash of "password", a published vector


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


# ---------------------------------------------------------------- Credentials


def test_repr_and_str_hide_password_and_hash() -> None:
    with_password = Credentials("alice", "DOM", password=SECRET)
    with_hash = Credentials("alice", nt_hash=NT_HASH)
    for creds in (with_password, with_hash):
        for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
            assert SECRET not in text
            assert NT_HASH not in text
            assert "alice" in text
    assert "password='<redacted>'" in repr(with_password)
    assert "nt_hash=None" in repr(with_password)
    assert str(with_password) == "DOM\\alice [password]"
    assert str(with_hash) == "alice [nt-hash]"
    assert str(ANONYMOUS) == "(anonymous)"


def test_principal() -> None:
    assert Credentials("alice", "DOM", password="x").principal == "DOM\\alice"
    assert Credentials("alice", password="x").principal == "alice"
    assert ANONYMOUS.principal == ""


@pytest.mark.parametrize(
    "kwargs",
    [
        {"anonymous": True, "username": "alice"},
        {"anonymous": True, "password": "x"},
        {"username": ""},
        {"username": "alice", "nt_hash": "abc"},
        {"username": "alice", "nt_hash": NT_HASH, "password": "x"},
        {"username": "alice", "aes_key": "00" * 16},
        {"username": "alice", "kerberos": True, "aes_key": "abc"},
        {"username": "alice", "kerberos": True, "nt_hash": NT_HASH, "aes_key": "00" * 16},
        {"kerberos": True, "password": "x"},
        {"username": "alice", "kdc": "10.0.0.1"},
    ],
)
def test_inconsistent_credentials_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError) as info:
        Credentials(**kwargs)  # type: ignore[arg-type]
    assert NT_HASH not in str(info.value)


def test_kerberos_may_use_the_default_principal() -> None:
    creds = Credentials(kerberos=True)
    assert not creds.needs_password
    assert str(creds) == "(default principal) [kerberos]"


def test_needs_password() -> None:
    assert Credentials("alice").needs_password
    assert not Credentials("alice", password="").needs_password
    assert not Credentials("alice", nt_hash=NT_HASH).needs_password
    assert not Credentials("alice", kerberos=True).needs_password
    assert not ANONYMOUS.needs_password


# ---------------------------------------------------------------- parse_user_spec


@pytest.mark.parametrize(
    ("spec", "domain", "user", "password"),
    [
        ("alice", "", "alice", None),
        ("alice%pw", "", "alice", "pw"),
        ("alice%", "", "alice", ""),
        ("DOM/alice%pw", "DOM", "alice", "pw"),
        ("DOM\\alice%pw", "DOM", "alice", "pw"),
        ("alice%p%w/x\\y", "", "alice", "p%w/x\\y"),
        ("alice@realm.example%pw", "", "alice@realm.example", "pw"),
    ],
)
def test_parse_user_spec(spec: str, domain: str, user: str, password: str | None) -> None:
    assert parse_user_spec(spec) == Credentials(user, domain, password=password)


@pytest.mark.parametrize("spec", ["", "%"])
def test_parse_user_spec_anonymous(spec: str) -> None:
    assert parse_user_spec(spec) == ANONYMOUS


@pytest.mark.parametrize("spec", ["DOM/%pw", "%pw", "DOM\\"])
def test_parse_user_spec_rejects_empty_user(spec: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_user_spec(spec)
    assert "pw" not in str(info.value)


@given(
    domain=st.text(alphabet=st.characters(blacklist_characters="/\\%"), max_size=8),
    user=st.text(alphabet=st.characters(blacklist_characters="/\\%"), min_size=1, max_size=8),
    password=st.text(max_size=20),
)
def test_parse_user_spec_keeps_any_password(domain: str, user: str, password: str) -> None:
    spec = f"{domain}/{user}%{password}" if domain else f"{user}%{password}"
    assert parse_user_spec(spec) == Credentials(user, domain, password=password)


# ---------------------------------------------------------------- parse_target


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("host", TargetSpec(None, "host", None)),
        ("10.0.0.1:4455", TargetSpec(None, "10.0.0.1", 4455)),
        ("[::1]:4455", TargetSpec(None, "::1", 4455)),
        ("[::1]", TargetSpec(None, "::1", None)),
        ("::1", TargetSpec(None, "::1", None)),
        ("fe80::1%eth0", TargetSpec(None, "fe80::1%eth0", None)),
        ("alice@host", TargetSpec(Credentials("alice"), "host", None)),
        ("alice:pw@host:445", TargetSpec(Credentials("alice", password="pw"), "host", 445)),
        ("alice:@host", TargetSpec(Credentials("alice", password=""), "host", None)),
        (
            "DOM/alice:p@s:s/w@[::1]:4455",
            TargetSpec(Credentials("alice", "DOM", password="p@s:s/w"), "::1", 4455),
        ),
    ],
)
def test_parse_target(spec: str, expected: TargetSpec) -> None:
    assert parse_target(spec) == expected


@pytest.mark.parametrize(
    "spec",
    [
        "alice:pw@",
        "alice:pw@host:0",
        "alice:pw@host:65536",
        "alice:pw@host:http",
        "alice:pw@[::1",
        "alice:pw@[::1]x",
        "alice:pw@[nothost]:445",
        "alice:pw@1:2:zz",
        ":pw@host",
        "alice:pw@:445",
    ],
)
def test_parse_target_errors_never_show_the_password(spec: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_target(spec)
    assert "pw" not in str(info.value)


@given(
    user=st.text(alphabet=st.characters(blacklist_characters="/\\:@"), min_size=1, max_size=8),
    password=st.text(alphabet=st.characters(blacklist_characters="@"), max_size=20),
    port=st.integers(1, 65535),
)
def test_parse_target_round_trip(user: str, password: str, port: int) -> None:
    target = parse_target(f"{user}:{password}@[::1]:{port}")
    assert target == TargetSpec(Credentials(user, password=password), "::1", port)


def test_parse_target_password_may_contain_at_signs() -> None:
    assert parse_target("alice:a@b@host").credentials == Credentials("alice", password="a@b")


def test_parse_host_port_plain() -> None:
    assert parse_host_port("server.example") == ("server.example", None)
    assert parse_host_port("[2001:db8::5]:139") == ("2001:db8::5", 139)


# ---------------------------------------------------------------- hashes


@pytest.mark.parametrize(
    "text",
    [
        NT_HASH,
        NT_HASH.upper(),
        f":{NT_HASH}",
        f"aad3b435b51404eeaad3b435b51404ee:{NT_HASH}",
        f" {NT_HASH}\n",
    ],
)
def test_parse_hashes(text: str) -> None:
    assert parse_hashes(text) == NT_HASH


@pytest.mark.parametrize(
    "text",
    ["", ":", NT_HASH[:-1], NT_HASH + "0", "zz" * 16, f"short:{NT_HASH}", f"{NT_HASH}:"],
)
def test_parse_hashes_rejects_without_echo(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_hashes(text)
    assert NT_HASH[:8] not in str(info.value)


def test_md4_rfc1320_vectors() -> None:
    vectors = {
        b"": "31d6cfe0d16ae931b73c59d7e0c089c0",
        b"a": "bde52cb31de33e46245e05fbdbd6fb24",
        b"abc": "a448017aaf21d8525fc10ae87aa6729d",
        b"message digest": "d9130a8164549fe818874806e1c7014b",
        b"abcdefghijklmnopqrstuvwxyz": "d79e1c308aa5bbcdeea8ed63df412da9",
        b"12345678901234567890123456789012345678901234567890123456789012345678901234567890": (
            "e33b4ddc9c38f2199c3e7b164fcc0536"
        ),
    }
    for message, digest in vectors.items():
        assert md4(message).hex() == digest


def test_nt_hash_of() -> None:
    assert nt_hash_of("password") == NT_HASH
    assert nt_hash_of("") == "31d6cfe0d16ae931b73c59d7e0c089c0"


# ---------------------------------------------------------------- resolve_password


def test_resolve_password_leaves_complete_credentials_alone() -> None:
    def no_prompt(text: str) -> str:
        raise AssertionError("must not prompt")

    for creds in (
        Credentials("alice", password="pw"),
        Credentials("alice", nt_hash=NT_HASH),
        Credentials("alice", kerberos=True),
        ANONYMOUS,
    ):
        assert resolve_password(creds, environ={}, stdin=_Tty(), prompt=no_prompt) is creds


def test_resolve_password_from_environment() -> None:
    resolved = resolve_password(Credentials("alice"), environ={PASSWORD_ENV: SECRET}, stdin=_Pipe())
    assert resolved == Credentials("alice", password=SECRET)


def test_resolve_password_prompts_on_a_terminal() -> None:
    prompts: list[str] = []

    def prompt(text: str) -> str:
        prompts.append(text)
        return SECRET

    resolved = resolve_password(Credentials("alice", "DOM"), environ={}, stdin=_Tty(), prompt=prompt)
    assert resolved.password == SECRET
    assert prompts == ["Password for DOM\\alice: "]


def test_resolve_password_without_terminal_is_a_clear_error() -> None:
    with pytest.raises(AuthenticationError) as info:
        resolve_password(Credentials("alice"), environ={}, stdin=_Pipe())
    assert PASSWORD_ENV in str(info.value)
    assert "alice" in str(info.value)


def test_resolve_password_prompt_cancelled() -> None:
    def prompt(text: str) -> str:
        raise EOFError

    with pytest.raises(AuthenticationError):
        resolve_password(Credentials("alice"), environ={}, stdin=_Tty(), prompt=prompt)


# ---- issue 9 item 11: hosts as people type them


@pytest.mark.parametrize(
    ("spec", "host", "port", "user"),
    [
        ("\\\\fileserver", "fileserver", None, None),
        ("\\\\fileserver\\IPC$", "fileserver", None, None),
        ("//fileserver/share", "fileserver", None, None),
        ("\\\\10.0.0.7", "10.0.0.7", None, None),
        ("smb://fileserver", "fileserver", None, None),
        ("SMB://fileserver:4455/", "fileserver", 4455, None),
        ("smb://[::1]:4455/share/dir", "::1", 4455, None),
        ("smb://CORP;alice@fileserver:4455", "fileserver", 4455, "alice"),
        ("smb://alice:pw@fileserver", "fileserver", None, "alice"),
    ],
)
def test_unc_and_smb_url_hosts(spec: str, host: str, port: int | None, user: str | None) -> None:
    target = parse_target(spec)
    assert (target.host, target.port) == (host, port)
    assert (target.credentials.username if target.credentials else None) == user


def test_smb_url_domain_and_password() -> None:
    creds = parse_target("smb://CORP;alice:pw@fileserver").credentials
    assert creds is not None and (creds.domain, creds.username, creds.password) == ("CORP", "alice", "pw")


@pytest.mark.parametrize("spec", ["127.0.0.300", "127.0.0.300:445", "10.0.0", "1.2.3.4.5", "999"])
def test_digits_and_dots_must_be_an_ipv4_address(spec: str) -> None:
    with pytest.raises(ValueError, match="not a valid IPv4 address"):
        parse_target(spec)


def test_authentication_file_format() -> None:
    from smbsessions.auth import parse_authentication_file

    creds = parse_authentication_file("username = CORP/alice\npassword = pw\n")
    assert (creds.domain, creds.username, creds.password) == ("CORP", "alice", "pw")
    creds = parse_authentication_file("; comment\n\nusername=alice\ndomain=WG\n")
    assert (creds.domain, creds.username, creds.password) == ("WG", "alice", None)
    with pytest.raises(ValueError, match="no 'username"):
        parse_authentication_file("password = secret-value\n")
    with pytest.raises(ValueError, match="line 1") as info:
        parse_authentication_file("secret-value\n")
    assert "secret-value" not in str(info.value)
