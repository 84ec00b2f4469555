"""One open of an in-process named pipe, in message mode.

impacket forwards a pipe over a local TCP socket, which turns it into a byte
stream: one read may return parts of two DCE/RPC fragments, and a reply can
never be longer than one read. Here the endpoint's output is kept as whole
messages (one PDU each) and a read never crosses a message boundary; a read
smaller than the message returns what fits and says more remains (the SMB
layer turns that into STATUS_BUFFER_OVERFLOW), as Windows does.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence

from smbsessions.server.limits import Budget, take_all
from smbsessions.server.types import PipeEndpoint

# How much to ask the endpoint for at once: larger than any fragment it makes.
_PULL_SIZE = 1 << 20
# Bounds on what one write may queue; an endpoint beyond them is broken.
_MAX_MESSAGES_PER_WRITE = 100_000
_MAX_CHUNKS_PER_MESSAGE = 10_000
# Output held for one write. A NetrSessionEnum answer at MAX_PREFERRED_LENGTH
# over 100k level-502 entries is about 20 MB (~200 bytes an entry); anything
# beyond this bound is refused rather than buffered.
MAX_QUEUED_BYTES = 64 << 20


class PipeBusyError(Exception):
    """A write or transceive was attempted while unread output is queued (STATUS_PIPE_BUSY)."""


class PipeOverflowError(Exception):
    """The endpoint answered one write with more than ``MAX_QUEUED_BYTES``, or with more
    than the unread-output budgets (connection, server) have left."""


class PipeHandle:
    """Queue of whole messages in front of a ``PipeEndpoint``.

    Used by one connection thread; ``close`` may also come from ``stop()``.
    It also offers ``send``/``sendall``/``recv`` so impacket's own pipe code
    paths that we do not intercept (SMB1 core READ/WRITE) still work, as a
    byte stream.

    ``budgets`` count the bytes queued here and not yet read (the connection's and
    the server's): an answer that does not fit in all of them is dropped and the
    write refused with ``PipeOverflowError``; reads and ``close`` give bytes back.
    """

    def __init__(self, endpoint: PipeEndpoint, budgets: Sequence[Budget] = ()) -> None:
        self._endpoint = endpoint
        self._budgets = tuple(budgets)
        self._held = 0  # bytes queued and taken from the budgets
        self._messages: deque[bytes] = deque()
        self._lock = threading.Lock()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def pending(self) -> bool:
        """True while output is queued that the client has not read."""
        return bool(self._messages)

    def write(self, data: bytes) -> None:
        """Client -> endpoint; collects whatever the endpoint answered.

        DCE/RPC over a pipe has one reply outstanding at a time: a write while
        the previous reply is unread is refused (``PipeBusyError``), which
        bounds the queue to the answer to one write.
        """
        if self._closed:
            raise OSError("pipe is closed")
        if self._messages:
            raise PipeBusyError("unread data is queued on the pipe")
        self._endpoint.write(data)
        self._collect()

    def read(self, max_len: int) -> tuple[bytes, bool]:
        """Up to ``max_len`` bytes of the oldest message; True if more of it remains."""
        if not self._messages or max_len <= 0:
            return b"", bool(self._messages)
        message = self._messages[0]
        if len(message) <= max_len:
            self._messages.popleft()
            self._release(len(message))
            return message, False
        self._messages[0] = message[max_len:]
        self._release(max_len)
        return message[:max_len], True

    def transceive(self, data: bytes, max_len: int) -> tuple[bytes, bool]:
        """FSCTL_PIPE_TRANSCEIVE / TRANSACT_NMPIPE: write, then read one message."""
        if self._messages:
            raise PipeBusyError("unread data is queued on the pipe")
        self.write(data)
        return self.read(max_len)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._messages.clear()
        self._release(self._held)
        self._endpoint.close()

    # Socket-shaped methods for impacket's uninterrupted byte-stream paths.
    def send(self, data: bytes) -> int:
        self.write(data)
        return len(data)

    def sendall(self, data: bytes) -> None:
        self.write(data)

    def recv(self, max_len: int) -> bytes:
        chunk, _ = self.read(max_len)
        return chunk

    def _release(self, amount: int) -> None:
        with self._lock:
            amount = min(amount, self._held)
            self._held -= amount
        if amount:
            for budget in self._budgets:
                budget.give(amount)

    def _collect(self) -> None:
        answer: list[bytes] = []
        queued = self._gather(answer)
        if queued and not take_all(self._budgets, queued):
            # The answer was read out of the endpoint whole: dropping it leaves the pipe usable.
            raise PipeOverflowError(f"no room for a {queued}-byte answer in the unread-output budget")
        self._held += queued
        self._messages.extend(answer)

    def _gather(self, answer: list[bytes]) -> int:
        """Every message the endpoint has for one write, into ``answer``; their total size."""
        queued = 0
        for _ in range(_MAX_MESSAGES_PER_WRITE):
            chunk, more = self._endpoint.read(_PULL_SIZE)
            if not chunk and not more:
                return queued
            parts = [chunk]
            queued += len(chunk)
            for _ in range(_MAX_CHUNKS_PER_MESSAGE):
                if not more or queued > MAX_QUEUED_BYTES:
                    break
                chunk, more = self._endpoint.read(_PULL_SIZE)
                parts.append(chunk)
                queued += len(chunk)
            else:
                raise RuntimeError("pipe endpoint never finished a message")
            if queued > MAX_QUEUED_BYTES:
                # The rest of the answer is still inside the endpoint: this open is unusable.
                self.close()
                raise PipeOverflowError(f"the reply to one write exceeds {MAX_QUEUED_BYTES} bytes")
            answer.append(b"".join(parts))
        raise RuntimeError("pipe endpoint produced too many messages for one write")
