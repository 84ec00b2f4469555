"""The ``smbsessions`` command line.

Exit codes (stable, for scripts):

====  =====================================================================
0     success (an empty session list is success too)
1     unexpected error
2     usage error (bad arguments, refused confirmation)
3     access denied (ERROR_ACCESS_DENIED at every level tried)
4     not found (NERR_UserNotFound, NERR_ClientNameNotFound)
5     other NET_API_STATUS error (ERROR_INVALID_LEVEL, ERROR_INVALID_PARAMETER, ...)
6     authentication failed
7     host unreachable or timed out
8     protocol error (DCE/RPC fault, malformed reply, SMB1-only server, SMB error)
====  =====================================================================
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import IO, Any

from . import __version__
from .auth import (
    SMB_PORT,
    Credentials,
    TargetSpec,
    format_host_port,
    parse_hashes,
    parse_target,
    parse_user_spec,
    resolve_password,
)
from .client import SessionClient
from .levels import FALLBACK_ORDER, MAX_PREFERRED_LENGTH, U32_MAX, check_level
from .output import FORMATS, write_sessions
from .rpc_auth import RpcAuthLevel
from .status import (
    AuthenticationError,
    HostTimeoutError,
    HostUnreachableError,
    NetApiError,
    NetApiStatus,
    ProtocolError,
    RpcFaultError,
    SmbSessionsError,
    TransportError,
)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DENIED = 3
EXIT_NOT_FOUND = 4
EXIT_NET_API = 5
EXIT_AUTH = 6
EXIT_UNREACHABLE = 7
EXIT_PROTOCOL = 8

DEFAULT_PORT = SMB_PORT
log = logging.getLogger("smbsessions")

HARDENING_HINT = (
    "hint: the server refused session enumeration at every level for this account. Windows 10 1607+ "
    "and Server 2019+ let only administrators enumerate sessions (the SrvsvcSessionInfo security "
    "descriptor under HKLM\\SYSTEM\\CurrentControlSet\\Services\\LanmanServer\\DefaultSecurity, "
    "also set by the 'NetCease' hardening); Samba requires BUILTIN\\Administrators. Use an account "
    "that is a local administrator on the target."
)


DELETE_DENIED_HINT = (
    "hint: disconnecting sessions needs an administrator (on Samba: root or Domain Admins). "
    "Samba also answers ERROR_ACCESS_DENIED when no session matched the client/user given."
)


class UsageError(Exception):
    """Bad command-line input: exit 2 with the message."""


# --------------------------------------------------------------------------- arguments


def add_auth_arguments(
    parser: argparse.ArgumentParser,
    timeout_help: str = "seconds allowed for connecting and for each call (default 10)",
) -> None:
    group = parser.add_argument_group("authentication")
    group.add_argument("-U", "--user-spec", metavar="[DOMAIN/]USER[%PASSWORD]",
                       help="account to log on as; without %%PASSWORD the password comes from "
                            "$SMBSESSIONS_PASSWORD or a prompt")
    group.add_argument("--hashes", metavar="LM:NT", help="log on with an NT hash instead of a password")
    group.add_argument("-k", "--kerberos", action="store_true",
                       help="Kerberos (ticket cache from KRB5CCNAME; needs the 'kerberos' extra)")
    group.add_argument("--anonymous", action="store_true", help="null session (no credentials)")
    group.add_argument("--timeout", type=positive_seconds, default=10.0, metavar="S", help=timeout_help)
    group.add_argument("--encrypt", action="store_true", help="require SMB 3 encryption")


def add_rpc_auth_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rpc-auth", choices=[level.value for level in RpcAuthLevel], metavar="LEVEL",
                        help="also authenticate the DCE/RPC bind (NTLM) at this level: connect, integrity "
                             "(signed calls) or privacy (sealed calls), for servers that demand it")


def _integer(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def level_number(text: str) -> int:
    """argparse type: one of the five levels."""
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
    value = _integer(text)
    if not 0 <= value <= U32_MAX:
        raise argparse.ArgumentTypeError(f"must be from 0 to {U32_MAX}")
    return value


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="HOST[:PORT]",
                        help="server; impacket-style [[DOMAIN/]USER[:PASSWORD]@]HOST[:PORT] also works")
    parser.add_argument("--port", type=port_number, help=f"SMB port (default {DEFAULT_PORT})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smbsessions",
        description="Who is connected to an SMB server: enumerate, look up and delete sessions "
                    "(NetSessionEnum / NetSessionGetInfo / NetSessionDel over MS-SRVS).",
        epilog="exit codes: 0 ok, 1 error, 2 usage, 3 denied, 4 not found, 5 other NET_API_STATUS, "
               "6 authentication failed, 7 unreachable/timeout, 8 protocol error",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log progress to stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    enum = commands.add_parser("enum", help="list the sessions on a server (NetSessionEnum)")
    _add_target(enum)
    add_auth_arguments(enum)
    add_rpc_auth_argument(enum)
    enum.add_argument("--level", type=level_number,
                      help="0, 1, 2, 10 or 502 (default: the richest the server allows)")
    enum.add_argument("--client", metavar="NAME", help="only sessions from this client (\\\\NAME or IP)")
    enum.add_argument("--user", metavar="NAME", help="only sessions of this user")
    enum.add_argument("--max-length", type=_u32, default=MAX_PREFERRED_LENGTH, metavar="BYTES",
                      help="PreferedMaximumLength per call (paging is automatic)")
    enum.add_argument("--format", choices=FORMATS, default="table")
    enum.set_defaults(handler=cmd_enum)

    get = commands.add_parser("get", help="one user's session from one client (NetSessionGetInfo)")
    _add_target(get)
    add_auth_arguments(get)
    add_rpc_auth_argument(get)
    get.add_argument("--client", metavar="NAME", required=True)
    get.add_argument("--user", metavar="NAME", required=True)
    get.add_argument("--level", type=level_number)
    get.add_argument("--format", choices=FORMATS, default="table")
    get.set_defaults(handler=cmd_get)

    delete = commands.add_parser("delete", help="disconnect sessions (NetSessionDel)")
    _add_target(delete)
    add_auth_arguments(delete)
    add_rpc_auth_argument(delete)
    delete.add_argument("--client", metavar="NAME", help="disconnect every session from this client")
    delete.add_argument("--user", metavar="NAME", help="disconnect every session of this user")
    delete.add_argument("--all", action="store_true",
                        help="with neither --client nor --user: disconnect EVERY session (yours too)")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(handler=cmd_delete)

    for name, module in (("serve", "smbsessions.server.cli"), ("sweep", "smbsessions.sweep_cli")):
        _add_optional_command(commands, name, module)
    return parser


def _add_optional_command(commands: Any, name: str, module: str) -> None:
    """Commands living in their own modules register themselves via ``add_parser(commands)``."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        if exc.name and exc.name.startswith("smbsessions"):
            return
        raise
    mod.add_parser(commands)


# --------------------------------------------------------------------------- credentials


def credentials_from_args(args: argparse.Namespace, from_target: Credentials | None,
                          prompt: Callable[[str], str] | None = None) -> Credentials:
    """Credentials from -U / --hashes / -k / --anonymous or the target's user@ part."""
    if args.anonymous:
        if args.user_spec or args.hashes or args.kerberos or from_target:
            raise UsageError("--anonymous takes no user, hash or Kerberos option")
        return Credentials(anonymous=True)
    if args.user_spec and from_target:
        raise UsageError("give the user either with -U or in USER@HOST, not both")
    try:
        base = from_target or (parse_user_spec(args.user_spec) if args.user_spec else None)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if base is None:
        if args.kerberos:
            return Credentials(kerberos=True)
        raise UsageError("no credentials: use -U USER, --anonymous, -k, or USER@HOST")
    if base.anonymous:
        return base
    try:
        if args.hashes:
            if base.password:
                raise UsageError("give a password or --hashes, not both")
            return Credentials(username=base.username, domain=base.domain, nt_hash=parse_hashes(args.hashes))
        if args.kerberos:
            return Credentials(username=base.username, domain=base.domain, password=base.password,
                               kerberos=True)
        return resolve_password(base, prompt=prompt) if prompt else resolve_password(base)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _parse_target(args: argparse.Namespace) -> TargetSpec:
    try:
        return parse_target(args.target)
    except ValueError as exc:
        raise UsageError(f"bad target: {exc}") from None


def _target_host(args: argparse.Namespace) -> str:
    """HOST[:PORT] for messages: never the USER:PASSWORD@ part of the target."""
    target = _parse_target(args)
    port = args.port or target.port or DEFAULT_PORT
    return format_host_port(target.host, port)


def _connect(args: argparse.Namespace) -> SessionClient:
    target = _parse_target(args)
    credentials = credentials_from_args(args, target.credentials)
    port = args.port or target.port or DEFAULT_PORT
    log.info("connecting to %s port %d as %s", target.host, port, credentials)
    try:
        return SessionClient(target.host, port, credentials=credentials, timeout=args.timeout,
                             require_encryption=args.encrypt, rpc_auth=args.rpc_auth)
    except ValueError as exc:  # --rpc-auth with --anonymous or -k: RPC-level auth is NTLM
        raise UsageError(str(exc)) from None


# --------------------------------------------------------------------------- commands


def cmd_enum(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    with _connect(args) as client:
        try:
            result = client.enum(args.level, args.client, args.user, args.max_length)
            records = [session.to_dict() for session in result]
        except NetApiError as exc:
            _explain(exc, client, args.level, err)
            raise
        _report_level(result.level, result.attempts, args.level, err)
        if result.filtered_locally:
            err.write("note: the server ignored the client/user qualifiers; they were applied locally\n")
        written = write_sessions(records, result.level, args.format, out)
        if args.format == "table" and not written:
            err.write(f"no sessions on {client.host}\n")
    return EXIT_OK


def cmd_get(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    with _connect(args) as client:
        try:
            session = client.get_info(args.client, args.user, args.level)
        except NetApiError as exc:
            _explain(exc, client, args.level, err)
            raise
        write_sessions([session.to_dict()], session.level, args.format, out)
    return EXIT_OK


def cmd_delete(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    if not args.client and not args.user and not args.all:
        raise UsageError("name --client and/or --user (or --all to disconnect every session, yours included)")
    what = " and ".join(
        part for part in (f"client {args.client}" if args.client else "",
                          f"user {args.user}" if args.user else "") if part
    ) or "EVERY session"
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("refusing to delete without --yes when not on a terminal")
        err.write(f"Disconnect {what} on {_target_host(args)}? [y/N] ")
        err.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            raise UsageError("not confirmed")
    with _connect(args) as client:
        try:
            client.delete(args.client, args.user, force_all=args.all)
        except NetApiError as exc:
            if exc.status == NetApiStatus.ERROR_ACCESS_DENIED:
                err.write(DELETE_DENIED_HINT + "\n")
            raise
    out.write(f"deleted: {what}\n")
    return EXIT_OK


def _report_level(level: int, attempts: list[tuple[int, int]], requested: int | None, err: IO[str]) -> None:
    if requested is None and attempts:
        tried = ", ".join(f"{lvl} ({NetApiError(status).name})" for lvl, status in attempts)
        err.write(f"level {level} answered (tried first: {tried})\n")


def _explain(exc: NetApiError, client: SessionClient, requested: int | None, err: IO[str]) -> None:
    """Write the hint that helps after a refusal (probing which levels work if useful)."""
    if exc.status == NetApiStatus.ERROR_ACCESS_DENIED:
        err.write(HARDENING_HINT + "\n")
    elif exc.status == NetApiStatus.ERROR_INVALID_LEVEL and requested is not None:
        supported = []
        for level in FALLBACK_ORDER:
            try:
                status = client.enum_page(level).status
                if status in (NetApiStatus.NERR_Success, NetApiStatus.ERROR_MORE_DATA):
                    supported.append(level)
            except SmbSessionsError:
                break
        if supported:
            err.write(f"hint: this server supports level(s) {', '.join(map(str, supported))}\n")
        else:
            err.write("hint: this server answered no level for this account\n")


# --------------------------------------------------------------------------- main


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, NetApiError):
        if exc.status == NetApiStatus.ERROR_ACCESS_DENIED:
            return EXIT_DENIED
        if exc.status in (NetApiStatus.NERR_UserNotFound, NetApiStatus.NERR_ClientNameNotFound):
            return EXIT_NOT_FOUND
        return EXIT_NET_API
    if isinstance(exc, AuthenticationError):
        return EXIT_AUTH
    if isinstance(exc, HostUnreachableError | HostTimeoutError):
        return EXIT_UNREACHABLE
    if isinstance(exc, ProtocolError | RpcFaultError | TransportError):
        return EXIT_PROTOCOL
    if isinstance(exc, UsageError):
        return EXIT_USAGE
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # argparse gives a "*" positional its (empty) share before the options, so
        # targets written after options come back unparsed: take them.
        if isinstance(getattr(args, "targets", None), list) and not any(x.startswith("-") for x in extra):
            args.targets.extend(extra)
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=err)
    # -v raises our own logger only: pyspnego logs whole NTLM exchanges at DEBUG
    # (crackable offline), and smbprotocol its messages.
    logging.getLogger("smbsessions").setLevel(logging.WARNING - 10 * min(args.verbose, 2))
    try:
        return int(args.handler(args, out, err))
    except KeyboardInterrupt:
        err.write("interrupted\n")
        return 130
    except (SmbSessionsError, UsageError) as exc:
        err.write(f"smbsessions: error: {exc}\n")
        return exit_code_for(exc)
    except BrokenPipeError:
        # Output piped into something that stopped reading (head): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
