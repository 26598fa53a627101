"""The Cache protocol shared by the back-ends, and the outage bookkeeping they use.

A cache maps opaque ``bytes`` keys to ``bytes`` values; every entry lives ``ttl_s`` from its
write. A back-end never raises for its own failures: reads become misses and writes are
dropped, so a broken cache costs speed, never a request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import structlog

log = structlog.get_logger(__name__)

WARN_INTERVAL_S = 30.0
"""Longest silence between two warnings about the same ongoing outage."""
BACKOFF_S = 1.0
"""After a failure, calls skip the back-end this long instead of waiting on it again."""


class Cache(Protocol):
    """Key/value storage with a fixed time-to-live per entry."""

    name: str

    async def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """The value of each key, ``None`` for a miss (or when the back-end is unavailable)."""
        ...

    async def set_many(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        """Store every (key, value) for ``ttl_s``; silently dropped when unavailable."""
        ...

    async def close(self) -> None:
        """Release connections (idempotent)."""
        ...


@runtime_checkable
class LocalCache(Cache, Protocol):
    """A back-end in this process, whose reads and writes are safe from any thread."""

    def read(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """:meth:`Cache.get_many`, synchronously."""
        ...

    def write(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        """:meth:`Cache.set_many`, synchronously."""
        ...


class OutageTracker:
    """Remembers that a remote back-end is failing.

    It throttles the warning to one per ``warn_interval_s`` (the warning says how many failures
    were not logged) and opens a short back-off during which callers skip the back-end, so an
    unreachable Redis does not add its timeout to every request. The interval holds across
    recoveries: a flapping back-end logs one warning and one recovery per interval, and the
    outages in between are counted in the next warning instead of each logging a pair.
    """

    def __init__(
        self,
        backend: str,
        *,
        warn_interval_s: float = WARN_INTERVAL_S,
        backoff_s: float = BACKOFF_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.warn_interval_s = warn_interval_s
        self.backoff_s = backoff_s
        self._clock = clock
        self._retry_at = 0.0
        self._next_warning_at = 0.0
        self._unlogged = 0
        self._down = False
        self._announced = False

    def available(self) -> bool:
        """False during the back-off that follows a failure."""
        return not self._down or self._clock() >= self._retry_at

    def failed(self, exc: BaseException, action: str) -> None:
        """Record a failure of ``action``; logs a warning unless one was logged recently."""
        now = self._clock()
        self._down = True
        self._retry_at = now + self.backoff_s
        if now < self._next_warning_at:
            self._unlogged += 1
            return
        log.warning(
            "backend_unavailable",
            backend=self.backend,
            action=action,
            error=type(exc).__name__,
            reason=str(exc)[:200],
            failures_not_logged=self._unlogged,
        )
        self._unlogged = 0
        self._next_warning_at = now + self.warn_interval_s
        self._announced = True

    def succeeded(self) -> None:
        """Record a success; logs when an outage whose warning was logged ends."""
        if not self._down:
            return
        self._down = False
        if self._announced:
            self._announced = False
            log.info("backend_recovered", backend=self.backend, failures_not_logged=self._unlogged)
            self._unlogged = 0
