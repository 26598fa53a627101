"""In-process cache: least recently used beyond ``maxsize``, every entry expiring ``ttl_s``
after its write.

An ``OrderedDict`` in recency order holding ``(expires_at, value)``: a read or write of a key
is a dict operation and a move to the end, eviction pops the front. A 1000-row request reads
and writes 1000 keys on the event loop; cachetools' ``TTLCache`` spent 20-40 ms on the writes
of one such request on a loaded machine (its per-item expiry links and timer), this ~2 ms.
An expired entry is dropped when it is read, or when it reaches the front.

:meth:`MemoryCache.read` and :meth:`MemoryCache.write` are the same operations without the
event loop, under a lock: the prediction cache calls them from the worker thread that hashes
a large request's rows, so the 1000 dictionary operations never run on the loop.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence


class MemoryCache:
    """Per-process entries; nothing is shared between workers or replicas."""

    name = "memory"

    def __init__(
        self, *, maxsize: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._maxsize = maxsize
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    async def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        return self.read(keys)

    async def set_many(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        self.write(items)

    def read(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """:meth:`get_many` from any thread."""
        found: list[bytes | None] = []
        with self._lock:
            now = self._clock()
            entries = self._entries
            for key in keys:
                entry = entries.get(key)
                if entry is None:
                    found.append(None)
                elif entry[0] <= now:
                    del entries[key]
                    found.append(None)
                else:
                    entries.move_to_end(key)
                    found.append(entry[1])
        return found

    def write(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        """:meth:`set_many` from any thread."""
        with self._lock:
            expires_at = self._clock() + self._ttl_s
            entries = self._entries
            for key, value in items:
                entries[key] = (expires_at, value)
                entries.move_to_end(key)
            while len(entries) > self._maxsize:
                entries.popitem(last=False)

    async def close(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
