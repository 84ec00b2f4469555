"""Every exit code of the ``smbsessions`` commands, declared once.

The README table, each subcommand's ``--help`` epilog and ``cli.exit_code_for``
are all derived from ``ExitCode`` and ``MEANINGS``. Pure: no imports beyond the
standard library, so ``--help`` stays cheap.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class ExitCode(enum.IntEnum):
    """Process exit status of ``smbsessions`` (stable, for scripts)."""

    OK = 0
    ERROR = 1
    USAGE = 2
    DENIED = 3
    NOT_FOUND = 4
    NET_API = 5
    AUTH = 6
    UNREACHABLE = 7
    PROTOCOL = 8
    SOME_FAILED = 9
    LISTEN_FAILED = 10
    STORE_UNAVAILABLE = 11
    STORE_LOST = 12
    ABORTED = 13
    INTERRUPTED = 130


MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success (an empty session list is success too)",
    ExitCode.ERROR: "unexpected error",
    ExitCode.USAGE: "usage error: bad option or target, missing password on a non-terminal, "
                    "missing optional package (names the smbsessions[...] extra)",
    ExitCode.DENIED: "access denied (ERROR_ACCESS_DENIED)",
    ExitCode.NOT_FOUND: "not found (NERR_UserNotFound, NERR_ClientNameNotFound); "
                        "with --fail-if-empty also an empty list",
    ExitCode.NET_API: "other NET_API_STATUS error (ERROR_INVALID_LEVEL, ERROR_INVALID_PARAMETER, ...)",
    ExitCode.AUTH: "authentication failed (the logon was refused)",
    ExitCode.UNREACHABLE: "host unreachable, closed or reset the connection, or timed out",
    ExitCode.PROTOCOL: "protocol error (DCE/RPC fault, malformed reply, SMB1-only server, SMB error)",
    ExitCode.SOME_FAILED: "sweep: some hosts did not answer",
    ExitCode.LISTEN_FAILED: "serve: cannot listen on the address and port",
    ExitCode.STORE_UNAVAILABLE: "watch, history: the store cannot be opened or read, or (watch) another live "
                                "watcher already watches some of the targets (the message says which)",
    ExitCode.STORE_LOST: "watch: the store stayed unavailable until the events held in memory reached "
                         "--max-pending; the message says what could not be stored",
    ExitCode.ABORTED: "aborted: the confirmation was declined, nothing was done",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C at any point, prompts included)",
}

# The codes each command can end with.
COMMAND_CODES: dict[str, tuple[ExitCode, ...]] = {
    "enum": (ExitCode.OK, ExitCode.ERROR, ExitCode.USAGE, ExitCode.DENIED, ExitCode.NOT_FOUND,
             ExitCode.NET_API, ExitCode.AUTH, ExitCode.UNREACHABLE, ExitCode.PROTOCOL,
             ExitCode.INTERRUPTED),
    "get": (ExitCode.OK, ExitCode.ERROR, ExitCode.USAGE, ExitCode.DENIED, ExitCode.NOT_FOUND,
            ExitCode.NET_API, ExitCode.AUTH, ExitCode.UNREACHABLE, ExitCode.PROTOCOL,
            ExitCode.INTERRUPTED),
    "delete": (ExitCode.OK, ExitCode.ERROR, ExitCode.USAGE, ExitCode.DENIED, ExitCode.NOT_FOUND,
               ExitCode.NET_API, ExitCode.AUTH, ExitCode.UNREACHABLE, ExitCode.PROTOCOL,
               ExitCode.ABORTED, ExitCode.INTERRUPTED),
    "sweep": (ExitCode.OK, ExitCode.ERROR, ExitCode.USAGE, ExitCode.SOME_FAILED, ExitCode.INTERRUPTED),
    "serve": (ExitCode.OK, ExitCode.USAGE, ExitCode.LISTEN_FAILED),
}


def exit_codes_text(codes: Iterable[ExitCode] = tuple(ExitCode), meanings: dict[ExitCode, str] | None = None,
                    title: str = "exit codes:") -> str:
    """The ``exit codes:`` block of a help epilog (one line per code, aligned)."""
    table = {**MEANINGS, **(meanings or {})}
    lines = [title]
    lines.extend(f"  {int(code):<4} {table[code]}" for code in codes)
    return "\n".join(lines)
