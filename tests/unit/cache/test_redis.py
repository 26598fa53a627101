"""RedisCache against a real redis-server: round trips, TTLs, and outages that never raise."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import redis
from structlog.testing import capture_logs

from modelserve.cache.redis import RedisCache
from tests.conftest import free_port

pytestmark = pytest.mark.redis


@pytest.fixture
def silent_redis_url() -> Iterator[str]:
    """A loopback port that accepts connections and never answers: a Redis that hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


def _command_calls(url: str, command: str) -> int:
    client = redis.Redis.from_url(url)
    stats = client.info("commandstats").get(f"cmdstat_{command}", {"calls": 0})
    client.close()
    return int(stats["calls"])


async def test_redis_cache_round_trips_values(redis_url: str) -> None:
    """Stored values come back byte for byte; unknown keys are None."""
    cache = RedisCache(redis_url, ttl_s=60, timeout_ms=5000)
    await cache.set_many([(b"\x00k1", b"v1"), (b"k2", b"\xffv2")])
    got = await cache.get_many([b"\x00k1", b"nope", b"k2"])
    await cache.close()
    assert got == [b"v1", None, b"\xffv2"]


async def test_redis_cache_looks_up_many_keys_in_one_mget(redis_url: str) -> None:
    """A lookup of several keys is a single MGET command."""
    cache = RedisCache(redis_url, ttl_s=60, timeout_ms=5000)
    redis.Redis.from_url(redis_url).config_resetstat()
    await cache.get_many([b"a", b"b", b"c", b"d"])
    await cache.close()
    assert _command_calls(redis_url, "mget") == 1


async def test_redis_cache_gives_every_entry_its_ttl(redis_url: str) -> None:
    """Every written key carries the configured time-to-live."""
    cache = RedisCache(redis_url, ttl_s=30, timeout_ms=5000, prefix="t:")
    await cache.set_many([(b"a", b"1"), (b"b", b"2")])
    await cache.close()
    client = redis.Redis.from_url(redis_url)
    ttls = [client.pttl(key) for key in client.keys("t:*")]
    client.close()
    assert len(ttls) == 2
    assert all(25_000 < ttl <= 30_000 for ttl in ttls)


async def test_redis_cache_unreachable_reads_as_misses() -> None:
    """With nothing listening, a lookup returns misses instead of raising."""
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", ttl_s=60, timeout_ms=200)
    with capture_logs():
        got = await cache.get_many([b"a", b"b"])
    await cache.close()
    assert got == [None, None]


async def test_redis_cache_unreachable_drops_writes_without_raising() -> None:
    """With nothing listening, a fill completes and logs one warning."""
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", ttl_s=60, timeout_ms=200)
    with capture_logs() as logs:
        await cache.set_many([(b"a", b"1")])
    await cache.close()
    assert [e["event"] for e in logs] == ["backend_unavailable"]


async def test_redis_cache_slow_server_reads_as_misses(silent_redis_url: str) -> None:
    """A Redis that does not answer within timeout_ms yields misses."""
    cache = RedisCache(silent_redis_url, ttl_s=60, timeout_ms=100)
    with capture_logs() as logs:
        got = await cache.get_many([b"a"])
    await cache.close()
    assert got == [None]
    assert logs[0]["error"] == "TimeoutError"
