"""The ``smbsessions`` command line: ``enum``, ``get``, ``delete`` (and ``sweep``, ``serve``).

Exit codes are declared once in ``exitcodes.ExitCode``; every ``--help``
lists the ones its command can end with.

Start-up cost matters for a tool called once per host: this module imports
no protocol library. ``client`` (smbprotocol, pyspnego, cryptography) is
imported when a command connects, and the other commands' modules only when
that command is chosen.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, Any

from . import __version__

if TYPE_CHECKING:
    from .auth import Credentials, TargetSpec
    from .client import Session, SessionClient
    from .exitcodes import ExitCode
    from .status import NetApiError

# Imported where used, not here: ``smbsessions --version`` and ``--help`` must
# start fast, and nothing here may pull in a protocol library.

_PASSWORD_ENV = "SMBSESSIONS_PASSWORD"  # auth.PASSWORD_ENV; a test checks they agree
DEFAULT_PORT = 445  # auth.SMB_PORT; a test checks they agree
_EXIT_ALIASES = ("OK", "ERROR", "USAGE", "DENIED", "NOT_FOUND", "NET_API", "AUTH", "UNREACHABLE", "PROTOCOL",
                 "ABORTED", "INTERRUPTED")


def __getattr__(name: str) -> Any:
    """``EXIT_OK`` ... ``EXIT_INTERRUPTED``, kept for scripts and tests: ``ExitCode`` is the one home."""
    if name.startswith("EXIT_") and name[5:] in _EXIT_ALIASES:
        from .exitcodes import ExitCode

        return ExitCode[name[5:]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _log() -> Any:
    import logging

    return logging.getLogger("smbsessions")


HARDENING_HINT = (
    "hint: this account may not enumerate sessions at any level. Windows 10 1607+ and Server 2019+ "
    "(also the 'NetCease' hardening) and Samba let only administrators enumerate: use an account "
    "that is a local administrator on the target."
)


def level_denied_hint(level: int) -> str:
    """The hint after ERROR_ACCESS_DENIED for one explicitly requested level."""
    return (f"hint: level {level} was refused to this account (only this level was tried); "
            "without --level the richest level the server allows is tried.")


DELETE_DENIED_HINT = (
    "hint: disconnecting sessions needs an administrator (on Samba: root or Domain Admins). "
    "Samba also answers ERROR_ACCESS_DENIED when no session matched the client/user given."
)

# Optional packages and the extra that installs each (pip install 'smbsessions[EXTRA]').
EXTRA_FOR_MODULE: dict[str, str] = {
    "gssapi": "kerberos",
    "krb5": "kerberos",
    "impacket": "server",
    "matplotlib": "plot",
}

# Subcommands living in their own modules: NAME -> (module, one-line help). The
# module is imported only when the command is chosen; it registers itself with
# ``add_parser(commands)``.
OPTIONAL_COMMANDS: dict[str, tuple[str, str]] = {
    "sweep": ("smbsessions.sweep_cli",
              "enumerate sessions on many hosts (ranges, files), one record per host"),
    "serve": ("smbsessions.server.cli", "run an SMB server that answers NetSessionEnum/NetSessionDel"),
    "watch": ("smbsessions.watch.cli",
              "poll hosts repeatedly and record who connects where (history store)"),
    "history": ("smbsessions.watch.cli", "who was connected where and when, from the watch store"),
}


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
    from .auth import PASSWORD_ENV

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


def port_number(text: str) -> int:
    """argparse type: a TCP port, 1-65535."""
    value = _integer(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError("a port is a number from 1 to 65535")
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


def _u32(text: str) -> int:
    from .levels import U32_MAX

    value = _integer(text)
    if not 0 <= value <= U32_MAX:
        raise argparse.ArgumentTypeError(f"must be from 0 to {U32_MAX}")
    return value


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="HOST",
                        help="server: HOST, HOST:PORT, [IPv6]:PORT, \\\\HOST (UNC) or smb://HOST[:PORT]; "
                             "impacket's [[DOMAIN/]USER[:PASSWORD]@]HOST[:PORT] also works")
    parser.add_argument("--port", type=port_number, help=f"SMB port (default {DEFAULT_PORT})")


_LEVELS_TEXT = "0, 1, 2, 10 or 502"  # levels.VALID_LEVELS; a test checks they agree
_FORMAT_HELP = ("table (default; durations and flag names spelled out), json (one array), jsonl (one "
                "object a line) or csv; JSON/CSV records carry host, port and own_session")


def _add_enum_parser(commands: Any) -> None:
    from .exitcodes import ExitCode
    from .levels import MAX_PREFERRED_LENGTH
    from .output import FORMATS

    enum = commands.add_parser(
        "enum", help="list the sessions on a server (NetSessionEnum)",
        description="List every session on a server (NetrSessionEnum, all pages). Without --level the "
                    "richest level the server allows answers (502, 10, 2, 1, 0). The session this "
                    "command itself opened is marked (own_session, '*' in the table).",
        epilog=epilog_for(
            "enum",
            "smbsessions enum fileserver -U CORP/alice            # password from a prompt",
            "smbsessions enum smb://fileserver:4455 -A ~/.smbcred --level 10 --format json",
            "smbsessions enum '\\\\fileserver' -U alice --user bob --fail-if-empty",
            extra="An empty list (also when --client/--user match nothing) is success: json prints [], "
                  "csv its header. Time values of 0xFFFFFFFF (Samba: 'under a second') are written "
                  "as 0 in JSON and CSV.",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_target(enum)
    add_auth_arguments(enum)
    add_rpc_auth_argument(enum)
    enum.add_argument("--level", type=level_number,
                      help=f"{_LEVELS_TEXT} (default: the richest the server allows)")
    enum.add_argument("--client", metavar="NAME", help="only sessions from this client (\\\\NAME or IP)")
    enum.add_argument("--user", metavar="NAME", help="only sessions of this user (a name, never a password)")
    enum.add_argument("--max-length", type=_u32, default=MAX_PREFERRED_LENGTH, metavar="BYTES",
                      help="PreferedMaximumLength per call (paging is automatic; default: everything)")
    enum.add_argument("--format", choices=FORMATS, default="table", help=_FORMAT_HELP)
    enum.add_argument("--fail-if-empty", action="store_true",
                      help=f"exit {int(ExitCode.NOT_FOUND)} when no session is listed (for scripts)")
    enum.set_defaults(handler=cmd_enum)


def _add_get_parser(commands: Any) -> None:
    from .output import FORMATS

    get = commands.add_parser(
        "get", help="one user's session from one client (NetSessionGetInfo)",
        description="The session of one user from one client (NetSessionGetInfo). When several "
                    "sessions match, the first is shown and stderr says how many there were.",
        epilog=epilog_for(
            "get",
            "smbsessions get fileserver -U alice --client 10.0.0.7 --user bob",
            "smbsessions get '\\\\fileserver' -A ~/.smbcred --client '\\\\WS7' --user bob --format json",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_target(get)
    add_auth_arguments(get)
    add_rpc_auth_argument(get)
    get.add_argument("--client", metavar="NAME", required=True, help="client computer (\\\\NAME or IP)")
    get.add_argument("--user", metavar="NAME", required=True, help="user name of the session")
    get.add_argument("--level", type=level_number, help=f"{_LEVELS_TEXT} (default: the richest allowed)")
    get.add_argument("--format", choices=FORMATS, default="table", help=_FORMAT_HELP)
    get.set_defaults(handler=cmd_get)


def _add_delete_parser(commands: Any) -> None:
    delete = commands.add_parser(
        "delete", help="disconnect sessions (NetSessionDel)",
        description="Disconnect sessions (NetrSessionDel). After logging on, the sessions that will go "
                    "are listed (with their open files) and, on a terminal, confirmed; then the number "
                    "disconnected is reported. --all deletes one client at a time, as "
                    "'net session /delete' does, this connection last.",
        epilog=epilog_for(
            "delete",
            "smbsessions delete fileserver -U alice --user bob",
            "smbsessions delete fileserver -U alice --client '\\\\10.0.0.7' --yes",
            "smbsessions delete fileserver -U alice --all",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_target(delete)
    add_auth_arguments(delete)
    add_rpc_auth_argument(delete)
    delete.add_argument("--client", metavar="NAME", help="disconnect every session from this client")
    delete.add_argument("--user", metavar="NAME", help="disconnect every session of this user")
    delete.add_argument("--all", action="store_true",
                        help="with neither --client nor --user: disconnect EVERY session (yours too)")
    delete.add_argument("--yes", action="store_true",
                        help="do not ask for confirmation (required when stdin is not a terminal)")
    delete.set_defaults(handler=cmd_delete)


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (the main parser's options take no values)."""
    for arg in argv:
        if arg == "--":
            return None
        if not arg.startswith("-"):
            return arg
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the chosen optional command's module is imported."""
    from .exitcodes import exit_codes_text

    parser = argparse.ArgumentParser(
        prog="smbsessions",
        description="Who is connected to an SMB server: enumerate, look up and delete sessions "
                    "(NetSessionEnum / NetSessionGetInfo / NetSessionDel over MS-SRVS).",
        epilog=exit_codes_text() + "\n\nrun 'smbsessions COMMAND --help' for a command's options",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log progress to stderr (-vv: the protocol exchange too); "
                             "also accepted after the command")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_enum_parser(commands)
    _add_get_parser(commands)
    _add_delete_parser(commands)
    chosen = None if argv is None else _chosen_command(argv)
    chosen_module = OPTIONAL_COMMANDS[chosen][0] if chosen in OPTIONAL_COMMANDS else None
    imported: set[str] = set()
    for name, (module, summary) in OPTIONAL_COMMANDS.items():
        if argv is None or module == chosen_module:
            # A module may register several commands (watch and history): import it once.
            if module not in imported:
                imported.add(module)
                _add_optional_command(commands, name, module)
        else:
            commands.add_parser(name, help=summary, add_help=False)
    for sub in commands.choices.values():
        add_verbose_argument(sub)
    return parser


def _add_optional_command(commands: Any, name: str, module: str) -> None:
    """Import ``module`` and let it register ``name``; a missing optional package is a usage error."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or ""
        if missing.startswith("smbsessions"):
            return  # not part of this installation
        raise MissingExtraError(missing or str(exc), f"smbsessions {name}") from None
    mod.add_parser(commands)


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
    from .auth import PASSWORD_ENV

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
    from .auth import PASSWORD_ENV, Credentials, parse_hashes, parse_user_spec, resolve_password

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


def _parse_target(args: argparse.Namespace) -> TargetSpec:
    from .auth import parse_target

    try:
        return parse_target(args.target)
    except ValueError as exc:
        raise UsageError(f"bad target: {exc}") from None


def _host_port(args: argparse.Namespace) -> tuple[str, int]:
    target = _parse_target(args)
    return target.host, args.port or target.port or DEFAULT_PORT


def _target_host(args: argparse.Namespace) -> str:
    """HOST:PORT for messages: never the USER:PASSWORD@ part of the target."""
    from .auth import format_host_port

    return format_host_port(*_host_port(args))


def _connect(args: argparse.Namespace) -> SessionClient:
    import importlib.util

    from .auth import format_host_port

    target = _parse_target(args)
    credentials = credentials_from_args(args, target.credentials)
    if args.rpc_auth:  # before any Kerberos work: a usage error, whatever the ticket cache holds
        from .rpc_auth import require_ntlm_account

        try:
            require_ntlm_account(credentials)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if credentials.kerberos and importlib.util.find_spec("gssapi") is None:
        raise MissingExtraError("gssapi", "Kerberos (-k)")
    if credentials.kerberos:  # the TGT once, before connecting (typed KerberosErrors)
        from .kerberos import prepare

        credentials = prepare(credentials)
    port = args.port or target.port or DEFAULT_PORT
    from .client import SessionClient  # here, not at the top: it pulls in smbprotocol

    _log().info("connecting to %s as %s", format_host_port(target.host, port), credentials)
    client = SessionClient(target.host, port, credentials=credentials, timeout=args.timeout,
                           require_encryption=args.encrypt, rpc_auth=args.rpc_auth)
    client.start_deadline()  # one --timeout for the whole command: connect, every page, the output
    return client


def _now() -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _records(sessions: Sequence[Session], client: SessionClient, fmt: str) -> list[dict[str, Any]]:
    """Output records: the table keeps raw times (it spells them out), JSON gets a timestamp."""
    from .output import session_records

    timestamp = _now() if fmt in ("json", "jsonl") else None
    return session_records(sessions, client.host, client.port, timestamp=timestamp,
                           normalise_times=fmt != "table")


# --------------------------------------------------------------------------- commands


def _qualifiers(client: str | None, user: str | None) -> str:
    from .output import printable

    parts = [f"of user {printable(user)}" if user else "",
             f"from client {printable(client)}" if client else ""]
    return " ".join(p for p in parts if p)


def cmd_enum(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from .status import NetApiError, NetApiStatus

    check_user_filter(args.user)
    with _connect(args) as client:
        try:
            result = client.enum(args.level, args.client, args.user, args.max_length)
            sessions = list(result)
            level = result.level
        except NetApiError as exc:
            if exc.status in (NetApiStatus.NERR_UserNotFound, NetApiStatus.NERR_ClientNameNotFound):
                # An empty answer to a filter is an empty list, as without one.
                sessions, level = [], (exc.attempts[-1][0] if exc.attempts else args.level or 0)
                note = (f"no sessions {_qualifiers(args.client, args.user)} on {_target_host(args)} "
                        f"({exc.name})")
                return _write_enum([], level, args, client, out, err, note)
            raise Failure(exc, _hint_for(exc, client, args.level)) from None
        _report_level(level, result.attempts, args.level, err)
        if result.filtered_locally:
            err.write("note: the server ignored the client/user qualifiers; they were applied locally\n")
        return _write_enum(sessions, level, args, client, out, err, f"no sessions on {_target_host(args)}")


def _write_enum(sessions: list[Session], level: int, args: argparse.Namespace, client: SessionClient,
                out: IO[str], err: IO[str], empty_note: str) -> int:
    from .exitcodes import ExitCode
    from .output import write_sessions

    written = write_sessions(_records(sessions, client, args.format), level, args.format, out)
    if args.format == "table" and any(getattr(s, "own_session", False) for s in sessions):
        err.write("* = this command's own session\n")
    if not written:
        if args.format == "table" or args.fail_if_empty:
            err.write(empty_note + "\n")
        if args.fail_if_empty:
            return ExitCode.NOT_FOUND
    return ExitCode.OK


def cmd_get(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from .exitcodes import ExitCode
    from .output import write_sessions
    from .status import NetApiError, NetApiStatus

    check_user_filter(args.user)
    with _connect(args) as client:
        try:
            sessions = list(client.enum(args.level, args.client, args.user))
        except NetApiError as exc:
            raise _not_found_or(exc, client, args) from None
        if not sessions:  # pragma: no cover - enum raises NERR_*NotFound instead
            raise Failure(NetApiError(NetApiStatus.NERR_UserNotFound), None,
                          f"no session {_qualifiers(args.client, args.user)} on {_target_host(args)}")
        first = sessions[0]
        write_sessions(_records([first], client, args.format), first.level, args.format, out)
        if len(sessions) > 1:
            err.write(f"note: {len(sessions)} sessions {_qualifiers(args.client, args.user)}; "
                      "NetSessionGetInfo answers with one, this is the first. All of them: "
                      "smbsessions enum ... --client CLIENT --user USER\n")
    return ExitCode.OK


def _not_found_or(exc: NetApiError, client: SessionClient, args: argparse.Namespace) -> Failure:
    from .status import NetApiStatus

    if exc.status in (NetApiStatus.NERR_UserNotFound, NetApiStatus.NERR_ClientNameNotFound):
        return Failure(exc, None, f"{exc.name} ({exc.status}): no session "
                                  f"{_qualifiers(args.client, args.user)} on {_target_host(args)}")
    return Failure(exc, _hint_for(exc, client, args.level))


def _ask(question: str, err: IO[str]) -> bool:
    err.write(question)
    err.flush()
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        raise Interrupted from None
    return answer.strip().lower() in ("y", "yes")


def _describe(sessions: Sequence[Session]) -> list[str]:
    from .output import printable

    lines = []
    for session in sessions:
        opens = session.info.num_opens
        files = "" if opens is None else f"  {opens} open file{'s' if opens != 1 else ''}"
        own = "  (this command's own session)" if getattr(session, "own_session", False) else ""
        lines.append(f"  {printable(session.client_name or '-')}  {printable(session.user_name or '-')}"
                     f"{files}{own}")
    return lines


def _list_for_delete(client: SessionClient, args: argparse.Namespace) -> tuple[list[Session] | None, str]:
    """The sessions a delete will take (None when they cannot be listed, with the reason)."""
    from .status import NetApiError, NetApiStatus

    try:
        return list(client.enum(None, args.client, args.user)), ""
    except NetApiError as exc:
        if exc.status in (NetApiStatus.NERR_UserNotFound, NetApiStatus.NERR_ClientNameNotFound):
            return [], ""
        return None, f"{exc.name} ({exc.status})"


def cmd_delete(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from .exitcodes import ExitCode
    from .status import NetApiError, NetApiStatus

    if not args.client and not args.user and not args.all:
        raise UsageError("name --client and/or --user (or --all to disconnect every session, yours included)")
    if args.all and (args.client or args.user):
        raise UsageError("--all disconnects every session: give it without --client/--user")
    check_user_filter(args.user)
    if not args.yes and not (sys.stdin is not None and sys.stdin.isatty()):
        raise UsageError("refusing to delete without --yes when not on a terminal")
    what = _qualifiers(args.client, args.user) or "(every session)"
    where = _target_host(args)
    with _connect(args) as client:  # the logon happens here, before any question
        sessions, unlisted = _list_for_delete(client, args)
        if sessions == []:
            status = NetApiStatus.NERR_UserNotFound if args.user else NetApiStatus.NERR_ClientNameNotFound
            raise Failure(NetApiError(status), None,
                          f"no session {what} on {where}: nothing to disconnect")
        if sessions is not None:
            opens = sum(s.info.num_opens or 0 for s in sessions)
            has_opens = any(s.info.num_opens is not None for s in sessions)
            summary = (f"{len(sessions)} session{'s' if len(sessions) != 1 else ''}"
                       + (f" with {opens} open file{'s' if opens != 1 else ''}" if has_opens else ""))
            preview = [f"will disconnect {summary} {what} on {where}:", *_describe(sessions)]
        else:
            summary = "the matching sessions"
            preview = [f"will disconnect every session {what} on {where} "
                       f"(cannot list them first: {unlisted})"]
        if not args.yes:
            err.write("\n".join(preview) + "\n")
            if not _ask("Disconnect? [y/N] ", err):
                err.write("aborted: nothing was disconnected\n")
                return ExitCode.ABORTED
            client.start_deadline()  # the time spent answering does not count against --timeout
        else:
            for line in preview:
                _log().info("%s", line)
        try:
            if args.all and sessions is not None:
                _delete_each_client(client, sessions)
            else:
                client.delete(args.client, args.user, force_all=args.all)
        except NetApiError as exc:
            raise Failure(exc, _delete_hint(exc, args, sessions is not None)) from None
        out.write(f"disconnected {summary} {what} on {where}\n")
        if sessions and not any(getattr(s, "own_session", False) for s in sessions):
            _report_reconnects(client, args, err)
    return ExitCode.OK


def _report_reconnects(client: SessionClient, args: argparse.Namespace, err: IO[str]) -> None:
    """After a delete, say if matching sessions exist again (Windows clients reconnect on their own)."""
    from .status import NetApiError, SmbSessionsError

    try:
        now = list(client.enum(None, args.client, args.user))
    except NetApiError:
        return  # NERR_*NotFound: none left (any other refusal: nothing to add)
    except SmbSessionsError as exc:
        _log().info("could not list the sessions again after the delete: %s", exc)
        return
    if now:
        err.write(f"note: {len(now)} matching session{'s' if len(now) != 1 else ''} "
                  f"{'exist' if len(now) != 1 else 'exists'} again (a client reconnected, or a new "
                  "logon): run the same delete again to disconnect it, or stop the client\n")


def _delete_each_client(client: SessionClient, sessions: Sequence[Session]) -> None:
    """``--all`` as ``net session /delete``: one NetSessionDel per client, our own client last."""
    from .status import NetApiError, NetApiStatus

    own = [s.raw_client_name for s in sessions if getattr(s, "own_session", False)]
    names: list[str] = []
    for session in sessions:
        name = session.raw_client_name or session.client_name
        if name and name not in names and name not in own:
            names.append(name)
    names.extend(name for name in dict.fromkeys(own) if name)
    for name in names:
        try:
            client.delete(name, None)
        except NetApiError as exc:
            if exc.status != NetApiStatus.NERR_ClientNameNotFound:  # gone meanwhile: fine
                raise


def _delete_hint(exc: NetApiError, args: argparse.Namespace, listed: bool) -> str | None:
    from .status import NetApiStatus

    if exc.status == NetApiStatus.ERROR_ACCESS_DENIED:
        return DELETE_DENIED_HINT
    if exc.status == NetApiStatus.ERROR_INVALID_PARAMETER and args.all and not listed:
        return ("hint: this server refuses NetSessionDel with neither client nor user (MS-SRVS allows "
                "it to), and the sessions could not be listed to delete them one client at a time")
    return None


def _report_level(level: int, attempts: list[tuple[int, int]], requested: int | None, err: IO[str]) -> None:
    from .status import NetApiError

    if requested is None and attempts:
        tried = ", ".join(f"{lvl} ({NetApiError(status).name})" for lvl, status in attempts)
        err.write(f"level {level} answered (tried first: {tried})\n")


def _hint_for(exc: NetApiError, client: SessionClient, requested: int | None) -> str | None:
    """The hint that helps after a refusal (probing which levels work if useful)."""
    from .status import NetApiStatus, SmbSessionsError

    if exc.status == NetApiStatus.ERROR_ACCESS_DENIED:
        return HARDENING_HINT if requested is None else level_denied_hint(requested)
    if exc.status == NetApiStatus.ERROR_INVALID_LEVEL and requested is not None:
        from .levels import FALLBACK_ORDER

        supported = []
        for level in FALLBACK_ORDER:
            try:
                status = client.enum_page(level).status
                if status in (NetApiStatus.NERR_Success, NetApiStatus.ERROR_MORE_DATA):
                    supported.append(level)
            except SmbSessionsError:
                break
        if supported:
            return f"hint: this server supports level(s) {', '.join(map(str, supported))}"
        return "hint: this server answered no level for this account"
    return None


# --------------------------------------------------------------------------- main


def exit_code_for(exc: BaseException) -> ExitCode:
    from .exitcodes import ExitCode
    from .status import (
        AuthenticationError,
        HostTimeoutError,
        HostUnreachableError,
        NetApiError,
        NetApiStatus,
        ProtocolError,
        RpcFaultError,
        TransportError,
    )

    if isinstance(exc, Failure):
        return exit_code_for(exc.error)
    if isinstance(exc, NetApiError):
        if exc.status == NetApiStatus.ERROR_ACCESS_DENIED:
            return ExitCode.DENIED
        if exc.status in (NetApiStatus.NERR_UserNotFound, NetApiStatus.NERR_ClientNameNotFound):
            return ExitCode.NOT_FOUND
        return ExitCode.NET_API
    if isinstance(exc, AuthenticationError):
        return ExitCode.AUTH
    if isinstance(exc, HostUnreachableError | HostTimeoutError | ConnectionError):
        return ExitCode.UNREACHABLE
    if isinstance(exc, ProtocolError | RpcFaultError | TransportError):
        return ExitCode.PROTOCOL
    if isinstance(exc, UsageError):
        return ExitCode.USAGE
    if isinstance(exc, Interrupted | KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    return ExitCode.ERROR


def configure_logging(verbose: int, err: IO[str]) -> None:
    """Our records from WARNING (INFO with -v, DEBUG with -vv); other libraries' only with -vv
    (see ``logsetup``: one home for the policy, and the hook the sweep's progress line uses)."""
    from . import logsetup

    logsetup.configure_logging(verbose, err)


SHORT_COMMANDS = frozenset({"enum", "get", "delete"})
"""Commands that run for well under a minute: no cyclic garbage collection while they run."""


def _asks_version(arguments: Sequence[str]) -> bool:
    """``--version`` before any command name (argparse would print it and stop there too)."""
    for arg in arguments:
        if arg == "--version":
            return True
        if arg in ("--", "-h", "--help") or not arg.startswith("-"):
            return False
    return False


def main(argv: Sequence[str] | None = None, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """Run the command line; returns the exit code (``ExitCode``).

    Called as the program (``argv`` None), a short command runs with the cyclic
    collector off, and before returning everything still alive is frozen
    (``gc.freeze``), so the interpreter's exit does not walk every object the
    imports created. Output is flushed first; atexit handlers still run.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    arguments = list(sys.argv[1:] if argv is None else argv)
    if _asks_version(arguments):
        out.write(f"smbsessions {__version__}\n")
        return 0
    if argv is not None:
        return _main(arguments, out, err, program=False)
    import contextlib
    import gc

    short = _chosen_command(arguments) in SHORT_COMMANDS
    if short:
        gc.disable()
    try:
        return _main(arguments, out, err, program=True)
    finally:
        for stream in (out, err):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        gc.freeze()
        if short:
            gc.enable()


def _main(arguments: list[str], out: IO[str], err: IO[str], program: bool) -> int:
    from .exitcodes import ExitCode
    from .status import SmbSessionsError

    try:
        parser = build_parser(arguments)
    except MissingExtraError as exc:
        err.write(f"smbsessions: error: {exc}\n")
        return ExitCode.USAGE
    args, extra = parser.parse_known_args(arguments)
    if extra:
        # argparse gives a "*" positional its (empty) share before the options, so
        # targets written after options come back unparsed: take them.
        if isinstance(getattr(args, "targets", None), list) and not any(x.startswith("-") for x in extra):
            args.targets.extend(extra)
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.verbose = args.verbose + getattr(args, "verbose_after", 0)
    configure_logging(args.verbose, err)
    try:
        return int(args.handler(args, out, err))
    except (KeyboardInterrupt, Interrupted):
        err.write("\ninterrupted\n")
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # Output piped into something that stopped reading (head): not an error of ours.
        if program:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    except ImportError as exc:
        if not exc.name or exc.name.startswith("smbsessions"):
            raise
        err.write(f"smbsessions: error: {MissingExtraError(exc.name, f'smbsessions {args.command}')}\n")
        return ExitCode.USAGE
    except (SmbSessionsError, UsageError, Failure, ConnectionError) as exc:
        from .output import printable

        # A message may quote what a server sent: never raw control or bidi characters.
        message = "\n".join(printable(line) for line in str(exc).split("\n"))
        err.write(f"smbsessions: error: {message}\n")
        hint = exc.hint if isinstance(exc, Failure) else None
        if hint:
            err.write(hint + "\n")
        return exit_code_for(exc)


def run() -> None:
    """The console entry point: ``main()``, then exit with its code."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
