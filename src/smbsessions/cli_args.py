"""What the command lines share: argument builders and types, CLI errors, credentials from arguments.

The root CLI (``cli``, ``commands``) and the ``sweep``, ``watch`` and
``history`` commands build their authentication, timeout, verbosity and
``--rpc-auth`` options here and turn them into ``auth.Credentials`` here, so
each option reads and behaves the same everywhere. Like ``cli``, this module
imports no protocol library (``--help`` and argument errors stay fast).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

from .addresses import SMB_PORT
from .addresses import port_number as port_number  # the argparse type; sweep and watch take it from here

if TYPE_CHECKING:
    from .auth import Credentials

DEFAULT_PORT = SMB_PORT
PASSWORD_ENV = "SMBSESSIONS_PASSWORD"  # auth.PASSWORD_ENV; a test checks they agree
LEVELS_TEXT = "0, 1, 2, 10 or 502"  # levels.VALID_LEVELS; a test checks they agree

# Optional packages and the extra that installs each (pip install 'smbsessions[EXTRA]').
EXTRA_FOR_MODULE: dict[str, str] = {
    "gssapi": "kerberos",
    "krb5": "kerberos",
    "impacket": "server",
    "matplotlib": "plot",
}

# Subcommands living in their own modules: NAME -> (module, one-line help). The

class UsageError(Exception):
    """Bad command-line input: exit 2 with the message."""


class MissingExtraError(UsageError):
    """An optional package is not installed: exit 2 naming the extra that brings it."""

    def __init__(self, package: str, what: str) -> None:
        extra = EXTRA_FOR_MODULE.get(package.partition(".")[0])
        install = f"pip install 'smbsessions[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{what} needs the optional package '{package}': {install}")
        self.package = package
        self.extra = extra


class Interrupted(Exception):
    """Ctrl-C at a prompt (raised through code that would turn KeyboardInterrupt into a failure)."""


class Failure(Exception):
    """An error to report, then a hint under it (both to stderr)."""

    def __init__(self, error: BaseException, hint: str | None = None, message: str | None = None) -> None:
        super().__init__(message or str(error))
        self.error = error
        self.hint = hint


# --------------------------------------------------------------------------- arguments


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def epilog_for(command: str, *examples: str, extra: str = "") -> str:
    """A subcommand's epilog: two or more examples, then its exit codes."""
    from .exitcodes import COMMAND_CODES, exit_codes_text

    parts = [_examples(*examples)]
    if extra:
        parts.append(extra)
    parts.append(exit_codes_text(COMMAND_CODES[command]))
    return "\n\n".join(parts)


def add_auth_arguments(
    parser: argparse.ArgumentParser,
    timeout_help: str = "seconds allowed for connecting and for the whole command (default 10)",
) -> None:
    group = parser.add_argument_group("authentication")
    group.add_argument("-U", "--user-spec", metavar="[DOMAIN/]USER[%PASSWORD]",
                       help="account to log on as. A password after %% is visible to other users in "
                            f"'ps': leave it out and it comes from ${PASSWORD_ENV}, a prompt (on a "
                            "terminal) or -A FILE")
    group.add_argument("-A", "--authentication-file", metavar="FILE",
                       help="read the account from FILE, smbclient's format: lines "
                            "'username = USER', 'password = PASSWORD', 'domain = DOMAIN' "
                            "(keeps the password out of argv and the shell history)")
    group.add_argument("--hashes", metavar="LM:NT", help="log on with an NT hash instead of a password")
    group.add_argument("-k", "--kerberos", action="store_true",
                       help="Kerberos (needs the 'kerberos' extra): a ticket from the user's password "
                            "(-U/-A), --hashes (RC4 key) or --aes-key, else the ticket cache "
                            "KRB5CCNAME (kinit)")
    group.add_argument("--aes-key", metavar="HEX",
                       help="with -k: the user's AES128/256 key (32/64 hex digits)")
    group.add_argument("--dc-ip", metavar="ADDRESS",
                       help="with -k: the KDC (domain controller) to ask, when DNS does not know the realm")
    group.add_argument("--target-name", metavar="NAME",
                       help="with -k: the server's name for the SPN cifs/NAME when the target is an address")
    group.add_argument("--anonymous", action="store_true", help="null session (no credentials)")
    group.add_argument("--timeout", type=positive_seconds, default=10.0, metavar="S", help=timeout_help)
    group.add_argument("--encrypt", action="store_true", help="require SMB 3 encryption")


def add_verbose_argument(parser: argparse.ArgumentParser) -> None:
    """``-v``/``-vv`` after the subcommand too (``smbsessions enum -v HOST``)."""
    if "-v" not in parser._option_string_actions:
        parser.add_argument("-v", "--verbose", action="count", default=0, dest="verbose_after",
                            help="log progress to stderr; -vv also the protocol exchange and other "
                                 "libraries' messages")


RPC_AUTH_LEVELS = ("connect", "integrity", "privacy")  # rpc_auth.RpcAuthLevel; a test checks they agree


def add_rpc_auth_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rpc-auth", choices=RPC_AUTH_LEVELS, metavar="LEVEL",
                        help="also authenticate the DCE/RPC bind (NTLM) at this level: connect, integrity "
                             "(signed calls) or privacy (sealed calls), for servers that demand it")


def _integer(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def level_number(text: str) -> int:
    """argparse type: one of the five levels."""
    from .levels import check_level

    value = _integer(text)
    try:
        check_level(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def positive_seconds(text: str) -> float:
    """argparse type: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def u32_number(text: str) -> int:
    """argparse type: a 32-bit unsigned number."""
    from .levels import U32_MAX

    value = _integer(text)
    if not 0 <= value <= U32_MAX:
        raise argparse.ArgumentTypeError(f"must be from 0 to {U32_MAX}")
    return value


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """The one-server commands' ``HOST`` and ``--port``."""
    parser.add_argument("target", metavar="HOST",
                        help="server: HOST, HOST:PORT, [IPv6]:PORT, \\\\HOST (UNC) or smb://HOST[:PORT]; "
                             "impacket's [[DOMAIN/]USER[:PASSWORD]@]HOST[:PORT] also works")
    parser.add_argument("--port", type=port_number, help=f"SMB port (default {DEFAULT_PORT})")



# --------------------------------------------------------------------------- credentials

def _prompt_password(text: str) -> str:
    import getpass

    try:
        return getpass.getpass(text)
    except KeyboardInterrupt:
        raise Interrupted from None


def check_user_filter(name: str | None, option: str = "--user") -> None:
    """Refuse a ``--user`` filter that carries a password (``alice%pw``) before it goes anywhere.

    The filter is sent to the server and may be logged: a password typed into
    it must never leave this process. The message does not repeat the value.
    """
    if name and "%" in name:
        raise UsageError(
            f"{option} names the user whose sessions to show and is sent to the server; the value "
            "contains '%' like USER%PASSWORD. To log on as that user use -U USER (the password "
            f"from a prompt, ${PASSWORD_ENV} or -A FILE), and give {option} only the name"
        )


def read_authentication_file(path: str) -> Credentials:
    """Credentials from an smbclient ``-A`` file (usage error if unreadable or malformed)."""
    from .auth import parse_authentication_file

    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read(1 << 16)
    except OSError as exc:
        raise UsageError(f"cannot read the authentication file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"the authentication file {path} is not UTF-8 text") from None
    try:
        return parse_authentication_file(text)
    except ValueError as exc:
        raise UsageError(f"{path}: {exc}") from None


def credentials_from_args(args: argparse.Namespace, from_target: Credentials | None,
                          prompt: Callable[[str], str] | None = None) -> Credentials:
    """Credentials from -U / -A / --hashes / -k / --anonymous or the target's user@ part."""
    from .auth import Credentials, parse_hashes, parse_user_spec, resolve_password

    from_file = getattr(args, "authentication_file", None)
    if args.anonymous:
        if args.user_spec or args.hashes or args.kerberos or from_target or from_file:
            raise UsageError("--anonymous takes no user, authentication file, hash or Kerberos option")
        return Credentials(anonymous=True)
    given = [what for what, value in (("-U", args.user_spec), ("-A", from_file), ("USER@HOST", from_target))
             if value]
    if len(given) > 1:
        raise UsageError(f"give the user one way only, not {' and '.join(given)}")
    try:
        if from_file:
            base: Credentials | None = read_authentication_file(from_file)
        else:
            base = from_target or (parse_user_spec(args.user_spec) if args.user_spec else None)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    kerberos_extra: dict[str, str | None] = {"aes_key": getattr(args, "aes_key", None),
                                             "kdc": getattr(args, "dc_ip", None),
                                             "target_name": getattr(args, "target_name", None)}
    if any(kerberos_extra.values()) and not args.kerberos:
        raise UsageError("--aes-key, --dc-ip and --target-name need -k")
    if base is None:
        if args.kerberos:
            if args.hashes or kerberos_extra["aes_key"]:
                raise UsageError("--hashes and --aes-key with -k need the user (-U DOMAIN/USER)")
            return Credentials(kerberos=True, kdc=kerberos_extra["kdc"],
                               target_name=kerberos_extra["target_name"])
        raise UsageError("no credentials: use -U USER, -A FILE, --anonymous, -k, or USER@HOST")
    if base.anonymous:
        return base
    try:
        if args.kerberos:  # -k: the secret (if any) gets a TGT, see kerberos.prepare
            if sum(bool(x) for x in (base.password, args.hashes, kerberos_extra["aes_key"])) > 1:
                raise UsageError("give one of a password, --hashes or --aes-key")
            return Credentials(username=base.username, domain=base.domain, password=base.password,
                               nt_hash=parse_hashes(args.hashes) if args.hashes else None,
                               kerberos=True, aes_key=kerberos_extra["aes_key"],
                               kdc=kerberos_extra["kdc"], target_name=kerberos_extra["target_name"])
        if args.hashes:
            if base.password:
                raise UsageError("give a password or --hashes, not both")
            return Credentials(username=base.username, domain=base.domain, nt_hash=parse_hashes(args.hashes))
        if base.needs_password and PASSWORD_ENV not in os.environ and prompt is None \
                and not (sys.stdin is not None and sys.stdin.isatty()):
            raise UsageError(
                f"no password for {base.principal}: stdin is not a terminal, so it cannot be asked "
                f"for; set {PASSWORD_ENV}, use -A FILE, --hashes, or USER%PASSWORD"
            )
        return resolve_password(base, prompt=prompt or _prompt_password)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends a long command (sweep, watch) like Ctrl-C: what it finished is kept and
    summarised. Only the main thread can take signals; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
