"""Shared cache in Redis (redis.asyncio): one MGET per lookup, one pipeline per fill.

Every call is bounded by ``timeout_ms``. A slow or unreachable Redis turns reads into misses
and drops writes; :class:`~modelserve.cache.base.OutageTracker` logs it at most once per
interval and skips Redis for a short back-off, so requests keep being served without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast

from redis.asyncio import Redis

from modelserve.cache.base import OutageTracker


class RedisCache:
    """Entries under ``prefix`` + hex key, each with its own TTL (``SET ... PX``)."""

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float,
        timeout_ms: float,
        prefix: str = "modelserve:cache:",
        tracker: OutageTracker | None = None,
    ) -> None:
        timeout_s = timeout_ms / 1000
        self._client: Redis = Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._ttl_ms = max(1, round(ttl_s * 1000))
        self._timeout_s = timeout_s
        self._prefix = prefix.encode()
        self.tracker = tracker or OutageTracker("redis cache")

    def _key(self, key: bytes) -> bytes:
        return self._prefix + key.hex().encode()

    async def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        misses: list[bytes | None] = [None] * len(keys)
        if not keys or not self.tracker.available():
            return misses
        try:
            async with asyncio.timeout(self._timeout_s):
                values = await self._client.mget([self._key(k) for k in keys])
        except Exception as exc:  # any failure is a miss: the cache never fails a request
            self.tracker.failed(exc, "get")
            return misses
        self.tracker.succeeded()
        # decode_responses is off, so the client's bytes | str union is always bytes here.
        return cast(list[bytes | None], values)

    async def set_many(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        if not items or not self.tracker.available():
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                pipe = self._client.pipeline(transaction=False)
                for key, value in items:
                    pipe.set(self._key(key), value, px=self._ttl_ms)
                await pipe.execute()
        except Exception as exc:  # a lost write only costs a later miss
            self.tracker.failed(exc, "set")
            return
        self.tracker.succeeded()

    async def close(self) -> None:
        await self._client.aclose()
