"""The SMB2 command sequence window (MS-SMB2 3.3.1.1): which MessageIds a client may use.

The window starts at {0}; every response grants credits that extend it. A
MessageId is used once; ids may arrive out of order. The number of ids held
open at once is capped, so a client cannot make the server keep a large set.
"""

from __future__ import annotations

DEFAULT_MAX_CREDITS = 512


class CreditWindow:
    def __init__(self, max_credits: int = DEFAULT_MAX_CREDITS) -> None:
        self.max_credits = max_credits
        self._low = 0  # lowest id not yet used
        self._high = 1  # first id beyond the window
        self._used: set[int] = set()  # used ids above _low (out-of-order arrivals)

    @property
    def available(self) -> int:
        """Ids the client may still use without a further grant."""
        return self._high - self._low - len(self._used)

    def consume(self, message_id: int, charge: int = 1) -> bool:
        """Use ``charge`` ids from ``message_id``; False (nothing used) if any is outside the window."""
        charge = max(charge, 1)
        last = message_id + charge
        if message_id < self._low or last > self._high:
            return False
        if any(i in self._used for i in range(message_id, last)):
            return False
        self._used.update(range(message_id, last))
        while self._low in self._used:
            self._used.discard(self._low)
            self._low += 1
        return True

    def grant(self, requested: int) -> int:
        """Credits to grant for a response asking ``requested``: at least one while none are left."""
        room = self.max_credits - self.available
        granted = min(max(requested, 1), max(room, 0))
        if granted == 0 and self.available == 0:
            granted = 1
        self._high += granted
        return granted

    def restart_at(self, message_id: int) -> None:
        """After an SMB1 negotiate upgrade the SMB2 NEGOTIATE may carry 0 or 1."""
        self._low, self._high, self._used = 0, message_id + 1, set()
