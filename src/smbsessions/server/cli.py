"""``smbsessions serve``: argument parsing and the run loop.

Importing this module must stay cheap (the top-level CLI imports it to
register the command); the server core is imported only to run.
"""

from __future__ import annotations

import argparse
import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from smbsessions.addresses import SMB_PORT, listen_port_number
from smbsessions.exitcodes import COMMAND_CODES, ExitCode, exit_codes_text
from smbsessions.rules import SessionInfoPolicy

log = logging.getLogger("smbsessions.server")
EXIT_OK = ExitCode.OK
EXIT_USAGE = ExitCode.USAGE
EXIT_BIND = ExitCode.LISTEN_FAILED
SERVE_MEANINGS = {ExitCode.OK: "stopped cleanly", ExitCode.USAGE: "bad arguments or sessions file"}


def add_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run an SMB server whose srvsvc answers NetrSessionEnum/NetrSessionDel from live sessions",
        description="An SMB 2/3 server (dialects 2.0.2 to 3.1.1, signing, encryption) serving IPC$ "
                    "and \\PIPE\\srvsvc only: no files. NetrSessionEnum and NetrSessionDel follow "
                    "MS-SRVS over the server's real sessions (plus optional decoys). Logons are NTLMv2 "
                    "or anonymous (no Kerberos). Logs connections, logons, enumerations and deletions, "
                    "never passwords.",
        epilog=exit_codes_text(COMMAND_CODES["serve"], SERVE_MEANINGS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--bind", default="127.0.0.1", metavar="ADDR",
                       help="address to listen on (default 127.0.0.1; '::' or 0.0.0.0 to serve the network)")
    serve.add_argument("--port", type=listen_port_number, default=SMB_PORT,
                       help=f"TCP port (default {SMB_PORT}; 0: any free port)")
    serve.add_argument("--account", action="append", default=[], metavar="USER:PASSWORD[:admin]",
                       help="an account that may log on; ':admin' lets it enumerate and delete sessions "
                            "(repeatable; prefer --accounts-file, command lines are visible to other users)")
    serve.add_argument("--accounts-file", type=Path, metavar="FILE",
                       help="accounts, one USER:PASSWORD[:admin] per line (# comments allowed)")
    serve.add_argument("--share", action="append", default=[], metavar="NAME=PATH",
                       help=argparse.SUPPRESS)  # refused with a pointer to real file servers
    serve.add_argument("--decoy-share", action="append", default=[], metavar="NAME[:REMARK]",
                       help="a share name NetrShareEnum lists (never served; repeatable)")
    serve.add_argument("--name", default="SMBSESSIONS", help="the server's NetBIOS name (NTLM, srvsvc)")
    serve.add_argument("--comment", default="", help="the server comment srvsvc reports")
    serve.add_argument("--encrypt", action="store_true",
                       help="require SMB3 encryption for every authenticated session (SMB 2.x clients "
                            "and null sessions are then refused)")
    serve.add_argument("--require-signing", action="store_true",
                       help="announce that signing is required, as domain controllers do (clients then "
                            "cannot open null sessions)")
    serve.add_argument("--max-connections", type=int, default=1024, metavar="N",
                       help="connections at once (default 1024; an eighth is kept for authenticated "
                            "sessions)")
    serve.add_argument("--max-per-address", type=int, default=64, metavar="N",
                       help="connections without an authenticated session per client address "
                            "(default 64)")
    serve.add_argument("--max-per-account", type=int, default=64, metavar="N",
                       help="sessions one non-admin account may hold at once (default 64)")
    serve.add_argument("--log-format", choices=("text", "json"), default="text",
                       help="log lines as text or one JSON object per line (for a SIEM)")
    serve.add_argument("--sessions-file", type=Path, metavar="FILE",
                       help="decoy sessions served beside the live ones: the JSON that "
                            "'smbsessions enum --format json' prints")
    serve.add_argument("--session-info", choices=[p.value for p in SessionInfoPolicy],
                       default=SessionInfoPolicy.ADMINS.value,
                       help="who may enumerate: 'admins' (modern Windows default) or 'authenticated' "
                            "(levels 0 and 10 for any authenticated user, as older Windows)")
    serve.add_argument("--domain", default="WORKGROUP", help="NetBIOS domain the server announces")
    serve.add_argument("--no-anonymous", action="store_true", help="refuse null-session logons")
    serve.add_argument("--quiet", action="store_true", help="log warnings only")
    serve.set_defaults(handler=run)


def read_accounts_file(path: Path) -> list[str]:
    """Account specs from a file: one per line, blank lines and # comments ignored."""
    specs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            specs.append(line)
    return specs


@contextmanager
def _server_logging(kind: str, quiet: bool, err: IO[str]) -> Iterator[None]:
    """Our records to ``err`` in the chosen format while the server runs; the logger's
    previous state comes back afterwards (``run`` may be called in-process, e.g. by tests)."""
    from smbsessions.server.logfmt import formatter

    logger = logging.getLogger("smbsessions")
    saved = logger.propagate, logger.level
    handler = logging.StreamHandler(err)
    handler.setFormatter(formatter(kind))
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate, level = saved
        logger.setLevel(level)


def run(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from smbsessions.server.shell import FILE_SHARES_REFUSED

    if args.share:
        err.write(f"smbsessions serve: --share: {FILE_SHARES_REFUSED}\n")
        return EXIT_USAGE
    with _server_logging(args.log_format, args.quiet, err):
        return _serve(args, out, err)


def _serve(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from smbsessions.server.accounts import parse_account
    from smbsessions.server.decoys import SessionsFileError, load_sessions_file
    from smbsessions.server.shell import build_server
    from smbsessions.server.srvsvc import srvsvc_factory

    policy = SessionInfoPolicy(args.session_info)
    specs = list(args.account)
    if args.accounts_file:
        try:
            specs += read_accounts_file(args.accounts_file)
        except OSError as exc:
            # strerror only: never echo the file's contents (passwords).
            err.write(f"smbsessions serve: cannot read accounts file {args.accounts_file}: "
                      f"{exc.strerror or type(exc).__name__}\n")
            return EXIT_USAGE
        except UnicodeDecodeError:
            err.write(f"smbsessions serve: accounts file {args.accounts_file} is not UTF-8 text\n")
            return EXIT_USAGE
    try:
        accounts = [parse_account(spec) for spec in specs]
        decoys = load_sessions_file(args.sessions_file) if args.sessions_file else []
        server = build_server(
            args.bind, args.port, accounts=accounts, domain=args.domain, server_name=args.name,
            comment=args.comment, decoy_shares=args.decoy_share, decoys=decoys,
            allow_anonymous=not args.no_anonymous, require_encryption=args.encrypt,
            require_signing=args.require_signing, max_connections=args.max_connections,
            max_per_address=args.max_per_address, max_per_account=args.max_per_account,
            make_pipe_factory=lambda control: srvsvc_factory(control, policy),
        )
    except SessionsFileError as exc:
        err.write(f"smbsessions serve: bad sessions file: {exc}\n")
        return EXIT_USAGE
    except ValueError as exc:
        err.write(f"smbsessions serve: {exc}\n")
        return EXIT_USAGE
    except OSError as exc:
        err.write(f"smbsessions serve: cannot listen on {args.bind} port {args.port}: {exc}\n")
        return EXIT_BIND

    def stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        server.request_stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    host, port = server.address
    admins = sum(1 for account in accounts if account.admin)
    log.info("serving SMB 2/3 (IPC$ and srvsvc) on %s port %d: %d account(s) (%d admin), %d decoy "
             "session(s), %d decoy share(s), session info for %s%s", host, port, len(accounts), admins,
             len(decoys), len(args.decoy_share), policy.value,
             ", encryption required" if args.encrypt else "")
    out.write(f"listening on {host}:{port}\n")
    out.flush()
    try:
        server.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("stopped")
    return EXIT_OK
