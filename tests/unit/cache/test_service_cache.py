"""The prediction cache inside the served app (in-process): X-Cache, misses-only batching."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import pytest
from prometheus_client import REGISTRY

from modelserve.settings import Settings
from tests import fakes
from tests.conftest import free_port

ADMIN_KEY = "cache-test-admin-key-4f1a9c3e7b2d"
SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.7, 3.0, 5.2, 2.3]
VERSICOLOR = [5.9, 3.0, 4.2, 1.5]
KEY_SECRET = "k" * 32


@pytest.fixture
def iris_settings(
    settings_factory: Callable[..., Settings], demo_models_dir: Path
) -> Callable[..., Settings]:
    """Settings serving only iris.joblib (fast to load), with extra overrides."""

    def make(**overrides: Any) -> Settings:
        model = {
            "name": "iris",
            "path": str(demo_models_dir / "iris.joblib"),
            "labels": ["setosa", "versicolor", "virginica"],
        }
        return settings_factory(models=[model], **overrides)

    return make


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_service_cache_serves_repeat_request_as_hit(
    app_client: Callable[..., Any], iris_settings: Callable[..., Settings]
) -> None:
    """The second identical /predict says X-Cache HIT and returns the same prediction."""
    async with app_client(iris_settings()) as client:
        first = await client.post("/predict", json={"features": SETOSA})
        second = await client.post("/predict", json={"features": SETOSA})
    assert [first.headers["x-cache"], second.headers["x-cache"]] == ["MISS", "HIT"]
    keys = ("prediction", "confidence", "probabilities")
    assert {k: second.json()[k] for k in keys} == {k: first.json()[k] for k in keys}


async def test_service_cache_sends_only_missing_rows_to_the_model(
    app_client: Callable[..., Any], iris_settings: Callable[..., Settings]
) -> None:
    """A batch with one cached row computes only the other rows and says PARTIAL."""
    async with app_client(iris_settings()) as client:
        await client.post("/predict", json={"features": SETOSA})
        before = _sample("modelserve_batch_rows_sum", model="iris", model_version="1")
        response = await client.post(
            "/predict-batch", json={"batch": [SETOSA, VIRGINICA, VERSICOLOR]}
        )
        after = _sample("modelserve_batch_rows_sum", model="iris", model_version="1")
    assert response.headers["x-cache"] == "PARTIAL"
    assert after - before == 2
    assert response.json()["predictions"] == ["setosa", "virginica", "versicolor"]


async def test_service_cache_counts_hits_and_misses_in_metrics(
    app_client: Callable[..., Any], iris_settings: Callable[..., Settings]
) -> None:
    """Hits and misses are counted per model version in modelserve_cache_requests_total."""
    labels = {"model": "iris", "model_version": "1"}
    name = "modelserve_cache_requests_total"
    async with app_client(iris_settings()) as client:
        hits, misses = _sample(name, **labels, result="hit"), _sample(name, **labels, result="miss")
        await client.post("/predict-batch", json={"batch": [SETOSA, VIRGINICA]})
        await client.post("/predict-batch", json={"batch": [SETOSA, VERSICOLOR]})
    assert _sample(name, **labels, result="hit") - hits == 1
    assert _sample(name, **labels, result="miss") - misses == 3


async def test_service_cache_serves_another_top_k_from_the_same_entry(
    app_client: Callable[..., Any], iris_settings: Callable[..., Settings]
) -> None:
    """The cache holds full outputs: another top_k is a hit, trimmed when formatted."""
    async with app_client(iris_settings()) as client:
        full = await client.post("/predict", json={"features": SETOSA})
        response = await client.post("/predict?top_k=1", json={"features": SETOSA})
    assert response.headers["x-cache"] == "HIT"
    assert response.json()["probabilities"] == {"setosa": full.json()["probabilities"]["setosa"]}


async def test_service_cache_explicit_top_k_equal_to_the_default_is_a_hit(
    app_client: Callable[..., Any], iris_settings: Callable[..., Settings]
) -> None:
    """?top_k= that asks what the request without it gets shares its cache entry."""
    async with app_client(iris_settings()) as client:
        await client.post("/predict", json={"features": SETOSA})
        response = await client.post("/predict?top_k=3", json={"features": SETOSA})
    assert response.headers["x-cache"] == "HIT"


@pytest.mark.redis
async def test_service_cache_configured_top_k_is_part_of_the_key(
    app_client: Callable[..., Any], iris_settings: Callable[..., Settings], redis_url: str
) -> None:
    """Two deployments sharing Redis, one with top_k 1 configured, never swap answers."""
    # A slow reply must not turn the hit into a miss.
    cache = {"backend": "redis", "key_secret": KEY_SECRET, "redis_timeout_ms": 10_000}
    truncated = iris_settings(cache=cache, redis_url=redis_url)
    truncated.models[0].top_k = 1
    async with app_client(truncated) as client:
        first = await client.post("/predict", json={"features": SETOSA})
        repeat = await client.post("/predict", json={"features": SETOSA})
    full = iris_settings(cache=cache, redis_url=redis_url)
    async with app_client(full) as client:
        second = await client.post("/predict", json={"features": SETOSA})
    assert list(first.json()["probabilities"]) == ["setosa"]
    assert repeat.headers["x-cache"] == "HIT"  # the entry is in the shared Redis
    assert len(second.json()["probabilities"]) == 3  # a hit or not, never the truncated answer


async def test_service_cache_disabled_sends_no_header(
    app_client: Callable[..., Any], iris_settings: Callable[..., Settings]
) -> None:
    """With cache.backend none, responses carry no X-Cache header."""
    async with app_client(iris_settings(cache={"backend": "none"})) as client:
        response = await client.post("/predict", json={"features": SETOSA})
    assert response.status_code == 200
    assert "x-cache" not in response.headers


@pytest.mark.redis
async def test_service_cache_redis_serves_repeat_request_as_hit(
    app_client: Callable[..., Any], iris_settings: Callable[..., Settings], redis_url: str
) -> None:
    """With the Redis back-end the second identical request is a HIT."""
    settings = iris_settings(
        cache={"backend": "redis", "key_secret": KEY_SECRET, "redis_timeout_ms": 5000},
        redis_url=redis_url,
    )
    async with app_client(settings) as client:
        await client.post("/predict", json={"features": SETOSA})
        response = await client.post("/predict", json={"features": SETOSA})
    assert response.headers["x-cache"] == "HIT"


async def test_service_cache_redis_unreachable_still_predicts(
    app_client: Callable[..., Any], iris_settings: Callable[..., Settings]
) -> None:
    """With Redis unreachable every request is answered, as a MISS."""
    settings = iris_settings(
        cache={"backend": "redis", "redis_timeout_ms": 100, "key_secret": KEY_SECRET},
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
    )
    async with app_client(settings) as client:
        responses = [await client.post("/predict", json={"features": SETOSA}) for _ in range(3)]
    assert [(r.status_code, r.headers["x-cache"]) for r in responses] == [(200, "MISS")] * 3


@pytest.mark.redis
async def test_service_cache_misses_for_another_version(
    app_client: Callable[..., Any], iris_settings: Callable[..., Settings], redis_url: str
) -> None:
    """A row cached for version 1 is a MISS for version 2 of the same artifact."""
    settings = iris_settings(
        cache={"backend": "redis", "key_secret": KEY_SECRET, "redis_timeout_ms": 5000},
        redis_url=redis_url,
    )
    second = settings.models[0].model_copy(update={"version": "2"})
    settings.models.append(second)
    async with app_client(settings) as client:
        await client.post("/predict?model_version=1", json={"features": SETOSA})
        statuses = [
            (await client.post(f"/predict?model_version={v}", json={"features": SETOSA})).headers[
                "x-cache"
            ]
            for v in ("1", "2", "2")
        ]
    assert statuses == ["HIT", "MISS", "HIT"]


@pytest.mark.redis
async def test_service_cache_misses_after_reload_of_changed_artifact(
    app_client: Callable[..., Any],
    iris_settings: Callable[..., Settings],
    redis_url: str,
    tmp_path: Path,
    demo_models_dir: Path,
) -> None:
    """After iris:1 is reloaded from a changed file, the old cached answer is never served."""
    artifact = tmp_path / "iris.joblib"
    shutil.copy(demo_models_dir / "iris.joblib", artifact)
    ops = {"name": "ops", "key": ADMIN_KEY, "scopes": ["predict", "admin"]}
    settings = iris_settings(
        cache={"backend": "redis", "key_secret": KEY_SECRET, "redis_timeout_ms": 5000},
        redis_url=redis_url,
        auth={"enabled": True, "keys": [ops]},
    )
    settings.models[0].path = artifact
    async with app_client(settings) as client:
        client.headers["X-API-Key"] = ADMIN_KEY
        await client.post("/predict", json={"features": SETOSA})
        joblib.dump(fakes.SlowClassifier(0.0).fit(None, None), artifact)
        reload = await client.post("/admin/models/iris/versions/1/reload", json={})
        response = await client.post("/predict", json={"features": SETOSA})
    assert reload.status_code == 200, reload.text
    assert response.headers["x-cache"] == "MISS"
    assert response.json()["probabilities"] == {"setosa": 1.0, "versicolor": 0.0, "virginica": 0.0}


@pytest.mark.redis
async def test_service_cache_redis_entries_expire_after_ttl(
    app_client: Callable[..., Any], iris_settings: Callable[..., Settings], redis_url: str
) -> None:
    """With the Redis back-end an entry is a HIT until ttl_s has passed, then computed again.

    The TTL is long enough that the repeat request is a HIT even on a loaded machine; the
    expiry is then polled for (bounded) rather than slept on.
    """
    ttl_s = 2.0
    settings = iris_settings(
        cache={
            "backend": "redis",
            "ttl_s": ttl_s,
            "key_secret": KEY_SECRET,
            "redis_timeout_ms": 5000,
        },
        redis_url=redis_url,
    )
    async with app_client(settings) as client:
        stored_by = time.monotonic()
        await client.post("/predict", json={"features": SETOSA})
        fresh = await client.post("/predict", json={"features": SETOSA})
        for _ in range(300):  # 30 s at most
            again = await client.post("/predict", json={"features": SETOSA})
            if again.headers["x-cache"] == "MISS":
                break
            await asyncio.sleep(0.1)
        expired_after_s = time.monotonic() - stored_by
    assert [fresh.headers["x-cache"], again.headers["x-cache"]] == ["HIT", "MISS"]
    assert expired_after_s >= ttl_s  # a MISS before the TTL would be a lost entry
