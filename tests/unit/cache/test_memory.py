"""MemoryCache: the in-process TTL/LRU back-end."""

from __future__ import annotations

import asyncio

from modelserve.cache.memory import MemoryCache


async def test_memory_cache_returns_stored_values_and_none_for_misses() -> None:
    """A lookup returns each stored value in key order and None for unknown keys."""
    cache = MemoryCache(maxsize=10, ttl_s=60)
    await cache.set_many([(b"a", b"1"), (b"b", b"2")])
    assert await cache.get_many([b"b", b"x", b"a"]) == [b"2", None, b"1"]


async def test_memory_cache_forgets_entries_after_ttl() -> None:
    """An entry older than ttl_s is a miss."""
    cache = MemoryCache(maxsize=10, ttl_s=0.05)
    await cache.set_many([(b"a", b"1")])
    await asyncio.sleep(0.1)
    assert await cache.get_many([b"a"]) == [None]


async def test_memory_cache_evicts_least_recently_used_beyond_maxsize() -> None:
    """With maxsize entries stored, a new one evicts the least recently used."""
    cache = MemoryCache(maxsize=2, ttl_s=60)
    await cache.set_many([(b"a", b"1"), (b"b", b"2")])
    await cache.get_many([b"a"])
    await cache.set_many([(b"c", b"3")])
    assert await cache.get_many([b"a", b"b", b"c"]) == [b"1", None, b"3"]
