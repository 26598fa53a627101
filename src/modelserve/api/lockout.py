"""Failed authentications per client address, one count per server, and refusal log lines at a
bounded rate.

A client address that fails authentication ``auth.failed_auth_limit`` times (say 30 per
minute) is refused with 429 on every route that needs a key until its window ends, a valid
key included: otherwise a 429 would only mean "wrong guess" and guessing would go on at full
speed. The window starts at the address's first failure.

One count per server: the counts live in a fixed-size table of shared memory that
:class:`FailedAuthLimiter` maps when it is built, before the server forks. Every process of
the server shares it: the serving process and its probe process, or the gunicorn master (its
probe port) and every worker, so guesses spread over ports and workers count once. A
cross-process lock (``lockf`` on the table's file, released by the kernel if its holder dies)
and a lock per process (threads: the main port, gRPC, the probe listener) guard it. The table
is bounded: an address hashes (keyed by a secret made at import) to one bucket of
:data:`WAYS` entries, and a new address in a full bucket evicts the entry whose window started
first, so a flood of addresses cannot grow it. Replicas share their counts through Redis on
top of this (:mod:`modelserve.api.fleet_lockout`).

Each refusal used to write a log line; now the first refusal of an interval is logged and the
rest are only counted, then reported in the next line (``refused_since_last``).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import math
import mmap
import os
import tempfile
import threading
import time
import weakref
from collections.abc import Callable

import structlog
from limits import parse

log = structlog.get_logger(__name__)

BUCKETS = 1024
"""Buckets of the shared table; an address always lands in the same one."""
WAYS = 8
"""Entries per bucket: addresses tracked at once are at most ``BUCKETS * WAYS``."""
REFUSAL_LOG_INTERVAL_S = 10.0
_EMPTY = 0
_DIGEST_KEY = os.urandom(16)
"""Made at import, before any fork, so every process of a server hashes alike, and nobody
outside can pick addresses that fall into one bucket to evict an entry."""


class FailedAuthLimiter:
    """Counts failed authentications per client address in fixed windows from the first one,
    in memory shared by every process forked after it was built (see the module docstring)."""

    def __init__(self, limit: str, clock: Callable[[], float] = time.monotonic) -> None:
        item = parse(limit)
        self.limit = str(item)
        self.max_failures = item.amount
        self.window_s = float(item.get_expiry())
        # CLOCK_MONOTONIC is one clock for every process of the host: times compare across them.
        self._clock = clock
        self._buckets = BUCKETS
        self._ways = WAYS
        entries = BUCKETS * WAYS
        self._fd = _shared_file()
        os.ftruncate(self._fd, entries * 24)
        self._memory = mmap.mmap(self._fd, entries * 24)
        weakref.finalize(self, os.close, self._fd)
        view = memoryview(self._memory)
        self._keys = view[: entries * 8].cast("Q")
        self._started_at = view[entries * 8 : entries * 16].cast("d")
        self._failures = view[entries * 16 :].cast("q")
        self._owner_pid = os.getpid()
        self._thread_lock = threading.Lock()

    def retry_after_s(self, address: str) -> int | None:
        """Seconds until ``address`` may try again, or ``None`` when it is not locked out."""
        key = _key(address)
        first = (key % self._buckets) * self._ways
        if key not in self._keys[first : first + self._ways].tolist():
            # The common case (every request that needs a key asks), read without the locks:
            # a failure being counted at this instant is as if counted just after.
            return None
        with self._locked():
            slot = self._find(key)
            if slot is None or self._failures[slot] < self.max_failures:
                return None
            left = self._started_at[slot] + self.window_s - self._clock()
        if left <= 0:
            return None
        return max(1, math.ceil(left))

    def failed(self, address: str) -> None:
        """Count one failed authentication from ``address``."""
        key = _key(address)
        with self._locked():
            now = self._clock()
            slot = self._find(key)
            if slot is None or now - self._started_at[slot] >= self.window_s:
                self._claim(key, now, 1, slot)
            else:
                self._failures[slot] += 1

    def lock_out(self, address: str, retry_after_s: float) -> None:
        """Lock ``address`` out for ``retry_after_s`` (a lockout the fleet's count decided), so
        every process of this server refuses it without asking again."""
        key = _key(address)
        with self._locked():
            now = self._clock()
            started_at = now + retry_after_s - self.window_s
            slot = self._find(key)
            if slot is not None and self._failures[slot] >= self.max_failures:
                started_at = max(started_at, self._started_at[slot])
            self._claim(key, started_at, self.max_failures, slot)

    def tracked(self) -> int:
        """How many addresses the table holds (ended windows included until reused)."""
        with self._locked():
            return sum(1 for key in self._keys if key != _EMPTY)

    def _find(self, key: int) -> int | None:
        first = (key % self._buckets) * self._ways
        keys = self._keys[first : first + self._ways].tolist()
        return first + keys.index(key) if key in keys else None

    def _claim(self, key: int, started_at: float, failures: int, slot: int | None) -> None:
        """Write an entry for ``key``: in its own slot, an empty one, or the oldest one's."""
        if slot is None:
            first = (key % self._buckets) * self._ways
            slots = range(first, first + self._ways)
            empty = [s for s in slots if self._keys[s] == _EMPTY]
            slot = empty[0] if empty else min(slots, key=lambda s: self._started_at[s])
        self._keys[slot] = key
        self._started_at[slot] = started_at
        self._failures[slot] = failures

    def _locked(self) -> _TableLock:
        if self._owner_pid != os.getpid():
            # A lock held by another thread at fork time stays held in the child forever.
            self._owner_pid, self._thread_lock = os.getpid(), threading.Lock()
        return _TableLock(self._thread_lock, self._fd)


class _TableLock:
    """The process's thread lock, then the cross-process ``lockf`` lock."""

    __slots__ = ("_fd", "_thread_lock")

    def __init__(self, thread_lock: threading.Lock, fd: int) -> None:
        self._thread_lock = thread_lock
        self._fd = fd

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        fcntl.lockf(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *_: object) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()


def _shared_file() -> int:
    """An anonymous file to map and lock: no name any other process could open."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("modelserve-failed-auth", os.MFD_CLOEXEC)
    descriptor, path = tempfile.mkstemp(prefix="modelserve-failed-auth-")
    os.unlink(path)
    return descriptor


@functools.lru_cache(maxsize=4096)
def _key(address: str) -> int:
    """64 bits of the address's keyed digest (never 0, which marks an empty entry)."""
    encoded = address.encode("utf-8", "replace")
    digest = hashlib.blake2b(encoded, digest_size=8, key=_DIGEST_KEY).digest()
    return int.from_bytes(digest, "little") or 1


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
