"""Storage back-ends shared by the prediction cache and the rate limiter (no web imports)."""

from __future__ import annotations

import secrets

from modelserve.cache.base import Cache, OutageTracker
from modelserve.cache.memory import MemoryCache
from modelserve.settings import Settings

__all__ = ["Cache", "MemoryCache", "OutageTracker", "build_cache", "key_secret"]


def build_cache(settings: Settings) -> Cache | None:
    """The back-end ``settings.cache`` asks for, or ``None`` when caching is off."""
    config = settings.cache
    if config.backend == "memory":
        return MemoryCache(maxsize=config.maxsize, ttl_s=config.ttl_s)
    if config.backend == "redis":
        # Imported here: redis-py costs every start-up a fraction of a second.
        from modelserve.cache.redis import RedisCache

        assert settings.redis_url is not None  # noqa: S101 - the settings validator ensures it
        return RedisCache(
            settings.redis_url.get_secret_value(),
            ttl_s=config.ttl_s,
            timeout_ms=config.redis_timeout_ms,
            prefix=config.redis_prefix,
        )
    return None


def key_secret(settings: Settings) -> bytes:
    """The secret cache keys derive from: ``cache.key_secret``, else random for this process
    (enough for the per-process memory back-end; Redis requires the setting)."""
    configured = settings.cache.key_secret
    if configured is not None:
        return configured.get_secret_value().encode()
    return secrets.token_bytes(32)
