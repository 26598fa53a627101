"""In-process cache: a cachetools TTLCache (least recently used beyond ``maxsize``)."""

from __future__ import annotations

from collections.abc import Sequence

from cachetools import TTLCache


class MemoryCache:
    """Per-process entries; nothing is shared between workers or replicas."""

    name = "memory"

    def __init__(self, *, maxsize: int, ttl_s: float) -> None:
        self._entries: TTLCache[bytes, bytes] = TTLCache(maxsize=maxsize, ttl=ttl_s)

    async def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        get = self._entries.get
        return [get(key) for key in keys]

    async def set_many(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        entries = self._entries
        for key, value in items:
            entries[key] = value

    async def close(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
