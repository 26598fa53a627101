"""Rate limits: who is counted, 429 with headers, what is never limited, storage outages."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client import REGISTRY
from pydantic import ValidationError
from structlog.testing import capture_logs

from modelserve.api.ratelimit import RouteLimiter
from modelserve.cache.base import OutageTracker
from modelserve.settings import RateLimitSettings, Settings
from tests.conftest import free_port, start_redis

SETOSA = [5.1, 3.5, 1.4, 0.2]
PREDICT_KEY_A = "rl-unit-key-a-6f0e9d8c7b6a5948372615"
PREDICT_KEY_B = "rl-unit-key-b-0a1b2c3d4e5f6a7b8c9d0e"
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


@pytest.fixture
def limited_settings(
    settings_factory: Callable[..., Settings], demo_models_dir: Path
) -> Callable[..., Settings]:
    """Settings serving only iris.joblib with rate limits on (2/minute by default)."""

    def make(rate_limit: dict[str, Any] | None = None, **overrides: Any) -> Settings:
        model = {"name": "iris", "path": str(demo_models_dir / "iris.joblib")}
        limits = {"enabled": True, "predict": "2/minute", "predict_batch": "2/minute"}
        return settings_factory(
            models=[model], rate_limit={**limits, **(rate_limit or {})}, **overrides
        )

    return make


def _scope(peer: str, forwarded: list[str] | None = None, caller: str | None = None) -> Any:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded or []]
    return {
        "type": "http",
        "method": "POST",
        "path": "/predict",
        "client": (peer, 50000),
        "headers": headers,
        "state": {"caller": caller} if caller else {},
    }


async def _predict(client: httpx.AsyncClient, **headers: str) -> httpx.Response:
    return await client.post("/predict", json={"features": SETOSA}, headers=headers)


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),
        ("10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
        ("10.0.0.2", ["198.51.100.1, 198.51.100.7, 10.0.0.3"], "198.51.100.7"),
        ("10.0.0.2", ["198.51.100.1", "198.51.100.7"], "198.51.100.7"),
        ("10.0.0.2", ["10.0.0.9, 10.0.0.3"], "10.0.0.9"),
        ("10.0.0.2", None, "10.0.0.2"),
        ("10.0.0.2", ["not-an-ip"], "10.0.0.2"),
        ("10.0.0.2", ["198.51.100.1, " + "x" * 100], "10.0.0.2"),
        ("10.0.0.2", ["2001:DB8::0:1"], "2001:db8::1"),
    ],
    ids=[
        "untrusted-peer-ignores-header",
        "trusted-peer-uses-header",
        "rightmost-untrusted-hop",
        "several-headers-joined",
        "all-trusted-uses-leftmost",
        "no-header-uses-peer",
        "garbage-hop-means-the-peer",
        "any-garbage-hop-means-the-peer",
        "canonical-form",
    ],
)
def test_route_limiter_client_ip_honours_only_trusted_proxies(
    peer: str, forwarded: list[str] | None, expected: str
) -> None:
    """X-Forwarded-For is read only from trusted peers, and trusted hops are skipped."""
    limiter = RouteLimiter(RateLimitSettings(enabled=True, trusted_proxies=["10.0.0.0/8"]))
    assert limiter.client_ip(_scope(peer, forwarded)) == expected


def test_route_limiter_identity_prefers_api_key_name() -> None:
    """An authenticated caller is counted by key name, not by address."""
    limiter = RouteLimiter(RateLimitSettings(enabled=True))
    assert limiter.identity(_scope("203.0.113.9", caller="alice")) == "key:alice"


@pytest.mark.parametrize(
    ("field", "value"),
    [("predict", "lots per minute"), ("trusted_proxies", ["10.0.0.0/33"])],
    ids=["limit", "cidr"],
)
def test_rate_limit_settings_refuse_invalid_values(field: str, value: object) -> None:
    """A malformed limit string or proxy CIDR is a configuration error."""
    with pytest.raises(ValidationError):
        RateLimitSettings(**{field: value})


@pytest.mark.parametrize("strategy", ["moving-window", "fixed-window"])
async def test_ratelimit_refuses_request_over_limit(
    app_client: Callable[..., Any], limited_settings: Callable[..., Settings], strategy: str
) -> None:
    """The request after the limit is answered 429 rate_limited.

    Two per hour, not per minute: a fixed window that ended between two of these requests
    would refill the budget, and an hour-long window cannot end during a test (limits opens
    it at the first hit; even one aligned on the clock would have to straddle an hour).
    """
    limits = {"strategy": strategy, "predict": "2/hour"}
    async with app_client(limited_settings(limits)) as client:
        statuses = [(await _predict(client)).status_code for _ in range(3)]
        refused = await _predict(client)
    assert statuses == [200, 200, 429]
    assert refused.json()["code"] == "rate_limited"


async def test_ratelimit_refusal_carries_retry_after_and_rate_headers(
    app_client: Callable[..., Any], limited_settings: Callable[..., Settings]
) -> None:
    """A 429 has Retry-After and X-RateLimit-Limit/Remaining/Reset."""
    async with app_client(limited_settings()) as client:
        for _ in range(2):
            await _predict(client)
        refused = await _predict(client)
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-limit"] == "2"
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert int(refused.headers["x-ratelimit-reset"]) > 1_700_000_000


async def test_ratelimit_success_carries_rate_headers(
    app_client: Callable[..., Any], limited_settings: Callable[..., Settings]
) -> None:
    """Counted successful responses say the limit and how much of it is left."""
    async with app_client(limited_settings()) as client:
        first, second = await _predict(client), await _predict(client)
    assert [r.headers["x-ratelimit-remaining"] for r in (first, second)] == ["1", "0"]
    assert all(h in first.headers for h in RATE_HEADERS)


@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics", "/models"])
async def test_ratelimit_never_limits_probes_metrics_or_models(
    app_client: Callable[..., Any], limited_settings: Callable[..., Settings], path: str
) -> None:
    """With the caller over its limit, probes, /metrics and /models still answer 200."""
    async with app_client(limited_settings()) as client:
        for _ in range(3):
            await _predict(client)
        responses = [await client.get(path) for _ in range(3)]
    assert [r.status_code for r in responses] == [200] * 3
    assert "x-ratelimit-limit" not in responses[0].headers


async def test_ratelimit_counts_operations_separately(
    app_client: Callable[..., Any], limited_settings: Callable[..., Settings]
) -> None:
    """Exhausting the predict operation leaves predict_rows (/predict-batch) its own limit."""
    async with app_client(limited_settings()) as client:
        for _ in range(3):
            await _predict(client)
        response = await client.post("/predict-batch", json={"batch": [SETOSA]})
    assert response.status_code == 200


async def test_ratelimit_count_rows_charges_each_row(
    app_client: Callable[..., Any], limited_settings: Callable[..., Settings]
) -> None:
    """With count_rows, a batch costs its rows: 3 rows of a 5-row budget leave 2."""
    settings = limited_settings({"predict_batch": "5/minute", "count_rows": True})
    async with app_client(settings) as client:
        first = await client.post("/predict-batch", json={"batch": [SETOSA] * 3})
        second = await client.post("/predict-batch", json={"batch": [SETOSA] * 3})
    assert first.headers["x-ratelimit-remaining"] == "2"
    assert (second.status_code, second.json()["code"]) == (429, "rate_limited")


async def test_ratelimit_separates_api_keys(
    app_client: Callable[..., Any], limited_settings: Callable[..., Settings]
) -> None:
    """Two keys from the same address have separate budgets."""
    keys = [{"name": "a", "key": PREDICT_KEY_A}, {"name": "b", "key": PREDICT_KEY_B}]
    settings = limited_settings(auth={"enabled": True, "keys": keys})
    async with app_client(settings) as client:
        for _ in range(3):
            await _predict(client, **{"X-API-Key": PREDICT_KEY_A})
        other = await _predict(client, **{"X-API-Key": PREDICT_KEY_B})
    assert other.status_code == 200


@pytest.mark.parametrize(
    ("trusted", "expected"),
    [(["10.0.0.0/8"], [200, 200, 200]), ([], [200, 200, 429])],
    ids=["trusted-proxy", "untrusted-peer"],
)
async def test_ratelimit_forwarded_clients_count_separately_only_behind_trusted_proxy(
    app_client: Callable[..., Any],
    limited_settings: Callable[..., Settings],
    trusted: list[str],
    expected: list[int],
) -> None:
    """Behind a trusted proxy each forwarded client has its budget; otherwise the peer's."""
    wrapper = app_client(limited_settings({"trusted_proxies": trusted}))
    async with wrapper:
        transport = httpx.ASGITransport(app=wrapper.app, client=("10.0.0.2", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            forwarded = ["198.51.100.1", "198.51.100.1", "198.51.100.2"]
            statuses = [
                (await _predict(client, **{"X-Forwarded-For": f})).status_code for f in forwarded
            ]
    assert statuses == expected


async def test_ratelimit_counts_refusals_in_metrics(
    app_client: Callable[..., Any], limited_settings: Callable[..., Settings]
) -> None:
    """Each 429 increments modelserve_rate_limited_total for its route."""
    labels = {"route": "/predict"}
    before = REGISTRY.get_sample_value("modelserve_rate_limited_total", labels) or 0.0
    async with app_client(limited_settings()) as client:
        for _ in range(4):
            await _predict(client)
    assert REGISTRY.get_sample_value("modelserve_rate_limited_total", labels) == before + 2


async def test_ratelimit_fail_open_serves_when_redis_unreachable(
    app_client: Callable[..., Any], limited_settings: Callable[..., Settings]
) -> None:
    """With Redis storage down and fail_open, requests are served without rate headers."""
    settings = limited_settings(
        {"storage": "redis", "redis_timeout_ms": 200},
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
    )
    async with app_client(settings) as client:
        responses = [await _predict(client) for _ in range(3)]
    assert [r.status_code for r in responses] == [200] * 3
    assert "x-ratelimit-limit" not in responses[0].headers


async def test_ratelimit_fail_closed_refuses_when_redis_unreachable(
    app_client: Callable[..., Any], limited_settings: Callable[..., Settings]
) -> None:
    """With Redis storage down and fail_open false, requests get 503 rate_limit_unavailable."""
    settings = limited_settings(
        {"storage": "redis", "redis_timeout_ms": 200, "fail_open": False},
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
    )
    async with app_client(settings) as client:
        response = await _predict(client)
    assert (response.status_code, response.json()["code"]) == (503, "rate_limit_unavailable")
    assert response.headers["retry-after"] == "1"


@pytest.mark.redis
async def test_ratelimit_redis_storage_refuses_over_limit(
    app_client: Callable[..., Any], limited_settings: Callable[..., Settings], redis_url: str
) -> None:
    """With Redis storage the request after the limit is answered 429."""
    settings = limited_settings({"storage": "redis", "redis_timeout_ms": 5000}, redis_url=redis_url)
    async with app_client(settings) as client:
        statuses = [(await _predict(client)).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


class _Clock:
    """A settable monotonic clock: the outage tracker's intervals pass without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.redis
async def test_ratelimit_slow_redis_serves_and_warns_once_per_interval(
    app_client: Callable[..., Any], limited_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """A real Redis that stops answering writes (CLIENT PAUSE): each request waits at most
    redis_timeout_ms (1 s: long enough for a loaded machine's replies before and after the
    pause) and is served without rate headers; four failures within 30 s log one
    backend_unavailable warning, the next after 30 s says how many were not logged, and the
    first answer after the pause logs backend_recovered and carries the headers again."""
    url, proc = start_redis(tmp_path)
    admin = redis.Redis.from_url(url)
    settings = limited_settings(
        {"storage": "redis", "redis_timeout_ms": 1000, "predict": "100/minute"}, redis_url=url
    )
    wrapper = app_client(settings)
    clock = _Clock()
    try:
        async with wrapper as client:
            limiter: RouteLimiter = wrapper.app.state.rate_limiter
            limiter.tracker = OutageTracker(limiter.tracker.backend, clock=clock)
            before = await _predict(client)
            admin.client_pause(60_000, all=False)  # WRITE mode: the limiter's hits wait
            with capture_logs() as logs:
                during = []
                for _ in range(4):
                    clock.now += 2  # past the 1 s back-off: each request tries Redis again
                    during.append(await _predict(client))
                clock.now += 31
                during.append(await _predict(client))
                admin.client_unpause()
                clock.now += 2
                after = await _predict(client)
    finally:
        admin.close()
        proc.kill()
        proc.wait(timeout=10)

    assert before.headers["x-ratelimit-limit"] == "100"
    assert [r.status_code for r in during] == [200] * 5
    assert not any("x-ratelimit-limit" in r.headers for r in during)
    warnings = [e for e in logs if e["event"] == "backend_unavailable"]
    assert [w["failures_not_logged"] for w in warnings] == [0, 3]
    assert {w["backend"] for w in warnings} == {"redis rate limits"}
    assert [e["event"] for e in logs].count("backend_recovered") == 1
    assert after.headers["x-ratelimit-limit"] == "100"  # paused writes may still count later
