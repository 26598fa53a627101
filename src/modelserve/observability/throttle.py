"""At most one log line per interval for a condition that can repeat on every request."""

from __future__ import annotations

import time
from collections.abc import Callable


class LogThrottle:
    """Lets one line through per ``interval_s`` and counts the occurrences it held back.

    A client can make every one of its requests trip a warning (out-of-range values, a
    tampered cache entry); without a throttle the log grows with the attacker's request rate.
    """

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._next_at = 0.0
        self._held_back = 0

    def allow(self) -> int | None:
        """Occurrences held back since the last line if this one may be logged, else ``None``."""
        now = self._clock()
        if now < self._next_at:
            self._held_back += 1
            return None
        held_back, self._held_back = self._held_back, 0
        self._next_at = now + self.interval_s
        return held_back
