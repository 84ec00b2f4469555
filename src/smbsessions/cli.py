"""The ``smbsessions`` command line: the root parser, dispatch, logging set-up and exit codes.

The commands live beside it: ``enum``/``get``/``delete`` in ``commands``,
``sweep`` in ``sweep.cli``, ``serve`` in ``server.cli``, ``watch`` and
``history`` in ``watch.cli``; the options they share in ``cli_args``. Exit
codes are declared once in ``exitcodes.ExitCode``; every ``--help`` lists the
ones its command can end with.

Start-up cost matters for a tool called once per host: this module imports
no protocol library. ``client`` (smbprotocol, pyspnego, cryptography) is
imported when a command connects, and the other commands' modules only when
that command is chosen (each by a plain import: a broken module fails loudly).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, Any

from . import __version__
from .cli_args import Failure, Interrupted, MissingExtraError, UsageError, add_verbose_argument

if TYPE_CHECKING:
    from .exitcodes import ExitCode

# Imported where used, not here: ``smbsessions --version`` and ``--help`` must
# start fast, and nothing here may pull in a protocol library.

_EXIT_ALIASES = ("OK", "ERROR", "USAGE", "DENIED", "NOT_FOUND", "NET_API", "AUTH", "UNREACHABLE", "PROTOCOL",
                 "ABORTED", "INTERRUPTED")


def __getattr__(name: str) -> Any:
    """``EXIT_OK`` ... ``EXIT_INTERRUPTED``, kept for scripts and tests: ``ExitCode`` is the one home."""
    if name.startswith("EXIT_") and name[5:] in _EXIT_ALIASES:
        from .exitcodes import ExitCode

        return ExitCode[name[5:]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------- the parser


def _add_sweep(commands: Any) -> None:
    from .sweep import cli as sweep_cli

    sweep_cli.add_parser(commands)


def _add_serve(commands: Any) -> None:
    from .server import cli as server_cli

    server_cli.add_parser(commands)


def _add_watch_and_history(commands: Any) -> None:
    from .watch import cli as watch_cli

    watch_cli.add_parser(commands)


# Subcommands living in their own modules: NAME -> (registrar, one-line help). A
# registrar imports its module only when the command is chosen (or for the full
# parser) and registers it; one registrar may add several commands.
LAZY_COMMANDS: dict[str, tuple[Callable[[Any], None], str]] = {
    "sweep": (_add_sweep, "enumerate sessions on many hosts (ranges, files), one record per host"),
    "serve": (_add_serve, "run an SMB server that answers NetSessionEnum/NetSessionDel"),
    "watch": (_add_watch_and_history, "poll hosts repeatedly and record who connects where (history store)"),
    "history": (_add_watch_and_history, "who was connected where and when, from the watch store"),
}


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (the main parser's options take no values)."""
    for arg in argv:
        if arg == "--":
            return None
        if not arg.startswith("-"):
            return arg
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the chosen command's module is imported."""
    from .commands import add_parsers
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
    add_parsers(commands)
    chosen = None if argv is None else _chosen_command(argv)
    chosen_registrar = LAZY_COMMANDS[chosen][0] if chosen in LAZY_COMMANDS else None
    registered: set[Callable[[Any], None]] = set()
    for name, (registrar, summary) in LAZY_COMMANDS.items():
        if argv is None or registrar is chosen_registrar:
            if registrar not in registered:
                registered.add(registrar)
                _register(commands, name, registrar)
        else:
            commands.add_parser(name, help=summary, add_help=False)
    for sub in commands.choices.values():
        add_verbose_argument(sub)
    return parser


def _register(commands: Any, name: str, registrar: Callable[[Any], None]) -> None:
    """Register a command; a missing optional package (not our own module) is a usage error."""
    try:
        registrar(commands)
    except ImportError as exc:
        missing = exc.name or ""
        if missing.startswith("smbsessions"):
            raise
        raise MissingExtraError(missing or str(exc), f"smbsessions {name}") from None


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
