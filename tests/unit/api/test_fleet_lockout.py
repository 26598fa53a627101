"""FleetFailures against a real redis-server: one count for every server, values read back
parsed and bounded, and an unreachable or tampered Redis decided by ``fail_open``."""

from __future__ import annotations

import pytest
import redis

from modelserve.api.fleet_lockout import FleetFailures
from modelserve.api.lockout import FailedAuthLimiter
from modelserve.errors import RateLimitUnavailableError
from tests.conftest import free_port

PREFIX = "test:auth-failures:"
ADDRESS = "10.1.2.3"


def _fleet(url: str, server: FailedAuthLimiter, *, fail_open: bool = True) -> FleetFailures:
    return FleetFailures(url, PREFIX, server, timeout_s=2.0, fail_open=fail_open)


@pytest.mark.redis
async def test_fleet_failures_of_two_servers_add_up(redis_url: str) -> None:
    """Failures counted by two servers' limiters reach the limit together, and the lockout
    is written into each server's own count, with the window's expiry from Redis."""
    first_server, second_server = FailedAuthLimiter("3/hour"), FailedAuthLimiter("3/hour")
    first, second = _fleet(redis_url, first_server), _fleet(redis_url, second_server)
    try:
        for fleet in (first, second, first):
            assert await fleet.retry_after_s(ADDRESS) is None
            await fleet.failed(ADDRESS)
        retry_after_s = await second.retry_after_s(ADDRESS)
    finally:
        await first.close()
        await second.close()
    assert retry_after_s is not None
    assert 3500 < retry_after_s <= 3600
    assert second_server.retry_after_s(ADDRESS) == retry_after_s
    assert first_server.retry_after_s(ADDRESS) is None  # it has not asked since


@pytest.mark.redis
@pytest.mark.parametrize(
    ("value", "ttl_ms"),
    [(b"lots", 60_000), (b"-5", 60_000), (b"9" * 40, 60_000)],
    ids=["not-a-number", "negative", "too-long"],
)
async def test_fleet_failures_read_back_only_a_bounded_integer(
    redis_url: str, value: bytes, ttl_ms: int
) -> None:
    """A count that is not a small non-negative integer is Redis failing: refused (503)
    without fail_open, ignored with it."""
    client = redis.Redis.from_url(redis_url)
    client.set(PREFIX + ADDRESS, value, px=ttl_ms)
    client.close()
    closed = _fleet(redis_url, FailedAuthLimiter("3/hour"), fail_open=False)
    opened = _fleet(redis_url, FailedAuthLimiter("3/hour"), fail_open=True)
    try:
        with pytest.raises(RateLimitUnavailableError):
            await closed.retry_after_s(ADDRESS)
        assert await opened.retry_after_s(ADDRESS) is None
    finally:
        await closed.close()
        await opened.close()


@pytest.mark.redis
async def test_fleet_failures_window_is_never_longer_than_configured(redis_url: str) -> None:
    """A count written with a day-long expiry locks out for the configured minute at most."""
    client = redis.Redis.from_url(redis_url)
    client.set(PREFIX + ADDRESS, b"3", ex=86_400)
    client.close()
    fleet = _fleet(redis_url, FailedAuthLimiter("3/minute"))
    try:
        assert await fleet.retry_after_s(ADDRESS) == 60
    finally:
        await fleet.close()


@pytest.mark.parametrize("fail_open", [True, False], ids=["fail-open", "fail-closed"])
async def test_fleet_failures_unreachable_redis_is_decided_by_fail_open(fail_open: bool) -> None:
    """Nothing listening at the URL: allowed (the server's count decides alone) with
    fail_open, 503 rate_limit_unavailable without it, for checks and counts alike."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    fleet = _fleet(url, FailedAuthLimiter("3/hour"), fail_open=fail_open)
    try:
        if fail_open:
            assert await fleet.retry_after_s(ADDRESS) is None
            await fleet.failed(ADDRESS)
        else:
            with pytest.raises(RateLimitUnavailableError):
                await fleet.retry_after_s(ADDRESS)
            with pytest.raises(RateLimitUnavailableError):
                await fleet.failed(ADDRESS)
    finally:
        await fleet.close()
