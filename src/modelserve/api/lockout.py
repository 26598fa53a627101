"""Failed authentications per client address, and refusal log lines at a bounded rate.

A client address that fails authentication ``auth.failed_auth_limit`` times (say 30 per
minute) is refused with 429 on every route that needs a key until its window ends, a valid
key included: otherwise a 429 would only mean "wrong guess" and guessing would go on at full
speed. The window starts at the address's first failure. Counts are per process and bounded
in size, so a flood of addresses cannot grow them without limit. One limiter serves every
listener of a process (the main port, gRPC and the probe port's thread), so it takes a lock.

Each refusal used to write a log line; now the first refusal of an interval is logged and the
rest are only counted, then reported in the next line (``refused_since_last``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from limits import parse

log = structlog.get_logger(__name__)

MAX_TRACKED_ADDRESSES = 10_000
REFUSAL_LOG_INTERVAL_S = 10.0


@dataclass(slots=True)
class _Window:
    started_at: float
    failures: int


class FailedAuthLimiter:
    """Counts failed authentications per client address in fixed windows from the first one."""

    def __init__(self, limit: str, clock: Callable[[], float] = time.monotonic) -> None:
        item = parse(limit)
        self.limit = str(item)
        self.max_failures = item.amount
        self.window_s = float(item.get_expiry())
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def retry_after_s(self, address: str) -> int | None:
        """Seconds until ``address`` may try again, or ``None`` when it is not locked out."""
        window = self._windows.get(address)
        if window is None or window.failures < self.max_failures:
            return None
        left = window.started_at + self.window_s - self._clock()
        if left <= 0:
            with self._lock:
                self._windows.pop(address, None)
            return None
        return max(1, int(left + 0.999))

    def failed(self, address: str) -> None:
        """Count one failed authentication from ``address``."""
        with self._lock:
            now = self._clock()
            window = self._windows.get(address)
            if window is None or now - window.started_at >= self.window_s:
                if window is None and len(self._windows) >= MAX_TRACKED_ADDRESSES:
                    self._evict(now)
                self._windows[address] = _Window(now, 1)
            else:
                window.failures += 1

    def _evict(self, now: float) -> None:
        """Drop ended windows; if every window is live, drop the oldest half."""
        live = {a: w for a, w in self._windows.items() if now - w.started_at < self.window_s}
        if len(live) >= MAX_TRACKED_ADDRESSES:
            live = dict(list(live.items())[len(live) // 2 :])
        self._windows = live


class RefusalLog:
    """Logs ``auth_refused`` at most once per interval, with how many refusals it stands for."""

    def __init__(
        self,
        interval_s: float = REFUSAL_LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last_at: float | None = None
        self._unlogged = 0

    def refused(self, **fields: object) -> None:
        now = self._clock()
        if self._last_at is not None and now - self._last_at < self.interval_s:
            self._unlogged += 1
            return
        log.warning("auth_refused", refused_since_last=self._unlogged + 1, **fields)
        self._last_at, self._unlogged = now, 0
