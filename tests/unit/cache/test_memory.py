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


async def test_memory_cache_rewrite_renews_an_entry() -> None:
    """Writing a stored key again stores the new value, makes it the most recently used and
    restarts its lifetime."""
    now = [0.0]
    cache = MemoryCache(maxsize=2, ttl_s=10, clock=lambda: now[0])
    await cache.set_many([(b"a", b"1"), (b"b", b"2")])
    now[0] = 9.0
    await cache.set_many([(b"a", b"new")])
    await cache.set_many([(b"c", b"3")])  # evicts b, the least recently used
    now[0] = 15.0
    assert await cache.get_many([b"a", b"b", b"c"]) == [b"new", None, b"3"]
    assert len(cache) == 2


async def test_memory_cache_holds_at_most_maxsize_entries() -> None:
    """One write of more keys than maxsize keeps only the newest maxsize of them."""
    cache = MemoryCache(maxsize=3, ttl_s=60)
    await cache.set_many([(bytes([i]), b"v") for i in range(10)])
    assert len(cache) == 3
    assert await cache.get_many([bytes([i]) for i in (6, 7, 8, 9)]) == [None, b"v", b"v", b"v"]
