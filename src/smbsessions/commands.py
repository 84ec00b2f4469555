"""The one-server commands ``enum``, ``get`` and ``delete``: their parsers and their handlers.

Each handler takes the parsed arguments and the two output streams, connects
through ``client.SessionClient`` (imported when a command connects: it pulls
in smbprotocol) and returns an ``ExitCode``; errors to report are raised as
``cli_args.Failure`` (the error, then a hint) or ``cli_args.UsageError``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from .addresses import format_host_port
from .cli_args import (
    DEFAULT_PORT,
    LEVELS_TEXT,
    Failure,
    Interrupted,
    MissingExtraError,
    UsageError,
    add_auth_arguments,
    add_rpc_auth_argument,
    add_target_arguments,
    check_user_filter,
    credentials_from_args,
    epilog_for,
    level_number,
    u32_number,
)

if TYPE_CHECKING:
    from .auth import TargetSpec
    from .client import Session, SessionClient
    from .status import NetApiError


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
    add_target_arguments(enum)
    add_auth_arguments(enum)
    add_rpc_auth_argument(enum)
    enum.add_argument("--level", type=level_number,
                      help=f"{LEVELS_TEXT} (default: the richest the server allows)")
    enum.add_argument("--client", metavar="NAME", help="only sessions from this client (\\\\NAME or IP)")
    enum.add_argument("--user", metavar="NAME", help="only sessions of this user (a name, never a password)")
    enum.add_argument("--max-length", type=u32_number, default=MAX_PREFERRED_LENGTH, metavar="BYTES",
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
    add_target_arguments(get)
    add_auth_arguments(get)
    add_rpc_auth_argument(get)
    get.add_argument("--client", metavar="NAME", required=True, help="client computer (\\\\NAME or IP)")
    get.add_argument("--user", metavar="NAME", required=True, help="user name of the session")
    get.add_argument("--level", type=level_number, help=f"{LEVELS_TEXT} (default: the richest allowed)")
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
    add_target_arguments(delete)
    add_auth_arguments(delete)
    add_rpc_auth_argument(delete)
    delete.add_argument("--client", metavar="NAME", help="disconnect every session from this client")
    delete.add_argument("--user", metavar="NAME", help="disconnect every session of this user")
    delete.add_argument("--all", action="store_true",
                        help="with neither --client nor --user: disconnect EVERY session (yours too)")
    delete.add_argument("--yes", action="store_true",
                        help="do not ask for confirmation (required when stdin is not a terminal)")
    delete.set_defaults(handler=cmd_delete)

def add_parsers(commands: Any) -> None:
    """Register ``enum``, ``get`` and ``delete`` with the root parser's subcommands."""
    _add_enum_parser(commands)
    _add_get_parser(commands)
    _add_delete_parser(commands)


# --------------------------------------------------------------------------- connecting


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
    return format_host_port(*_host_port(args))


def _connect(args: argparse.Namespace) -> SessionClient:
    import importlib.util

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


