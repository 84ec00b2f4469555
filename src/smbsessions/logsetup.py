"""Logging for the command line: our messages, third-party ones only when asked.

``configure_logging(verbosity, stream)``: one handler on the root logger, writing to
``stream``. At the default verbosity and with ``-v`` only records of the
``smbsessions`` loggers pass it (WARNING, then INFO); from ``-vv`` our DEBUG records
and third-party warnings and errors (smbprotocol's "socket aborted by peer ...
treating as EOF", its receive-thread tracebacks) pass too. pyspnego's DEBUG records
(whole NTLM exchanges, crackable offline) never do.

``before_emit(callback)``: while active, ``callback`` runs before any log line is
written (the sweep clears its progress line there).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

OWN_LOGGER = "smbsessions"
_SECRET_LOGGERS = ("spnego",)
FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"

_callbacks: list[Callable[[], None]] = []
_verbosity: int | None = None
_handler: logging.StreamHandler | None = None  # type: ignore[type-arg]
_callbacks_lock = threading.Lock()


class _Policy(logging.Filter):
    """Lets our records through, third-party ones only from ``-vv`` (see the module doc)."""

    def __init__(self, verbosity: int) -> None:
        super().__init__()
        self.verbosity = verbosity

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        ours = name == OWN_LOGGER or name.startswith(OWN_LOGGER + ".")
        if not ours:
            if self.verbosity < 2:
                return False
            if record.levelno < logging.INFO and any(
                name == secret or name.startswith(secret + ".") for secret in _SECRET_LOGGERS
            ):
                return False
        _run_callbacks()
        return True


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``configure_logging`` installs (recognised when configuring again)."""


def configure_logging(verbosity: int, stream: IO[str]) -> logging.Handler:
    """Route log records to ``stream`` by ``verbosity`` (0 default, 1 ``-v``, 2+ ``-vv``)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _Handler):
            root.removeHandler(handler)
    handler = _Handler(stream)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_Policy(verbosity))
    root.addHandler(handler)
    global _verbosity, _handler
    _verbosity = verbosity
    _handler = handler
    # Third-party records from WARNING (smbprotocol's DEBUG is every socket read).
    root.setLevel(logging.WARNING)
    logging.getLogger(OWN_LOGGER).setLevel(logging.WARNING - 10 * min(verbosity, 2))
    return handler


def configured_verbosity() -> int | None:
    """The verbosity ``configure_logging`` last set in this process (None: never called);
    the sweep hands it to its worker processes."""
    return _verbosity


def write_line(text: str) -> None:
    """Write an already formatted log line (another process's) where our records go,
    after the ``before_emit`` callbacks; dropped if logging was never configured."""
    handler = _handler
    if handler is None:
        return
    _run_callbacks()
    handler.acquire()
    try:
        handler.stream.write(text)
        handler.flush()
    finally:
        handler.release()


def _run_callbacks() -> None:
    with _callbacks_lock:
        callbacks = list(_callbacks)
    for callback in callbacks:
        callback()


@contextmanager
def before_emit(callback: Callable[[], None]) -> Iterator[None]:
    """Run ``callback`` before each log line written while the block runs."""
    with _callbacks_lock:
        _callbacks.append(callback)
    try:
        yield
    finally:
        with _callbacks_lock:
            _callbacks.remove(callback)
