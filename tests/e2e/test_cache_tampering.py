"""A real server and a real redis-server: nothing read back from the cache is trusted."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from modelserve.demo import LABELS
from tests.e2e.conftest import IRIS_ONNX, RunningServer, wait_for_log_events, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

SETOSA = [5.1, 3.5, 1.4, 0.2]
SECRET = "e2e cache key secret, at least 32 characters"  # noqa: S105 - a test fixture value


def _config(directory: Path, demo_models_dir: Path, redis_url: str, secret: str) -> Path:
    model = {"name": "iris", "path": str(demo_models_dir / IRIS_ONNX), "labels": LABELS}
    settings = {
        "models": [model],
        "redis_url": redis_url,
        # A loaded test machine must not turn a slow Redis write into a lost entry.
        "cache": {"backend": "redis", "key_secret": secret, "redis_timeout_ms": 5000},
    }
    return write_config(directory, settings, name=f"{len(secret)}.yaml")


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def _predict(server: RunningServer) -> httpx.Response:
    response = httpx.post(server.base_url + "/predict", json={"features": SETOSA}, timeout=10)
    assert response.status_code == 200, response.text
    return response


def _only_key(store: redis.Redis) -> bytes:
    (key,) = store.keys("modelserve:cache:*")
    assert isinstance(key, bytes)
    return key


def _sample(server: RunningServer, prefix: str) -> float:
    text = httpx.get(server.base_url + "/metrics", timeout=5).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


@pytest.mark.parametrize(
    "value",
    [
        b'["made-up", [0.98, 0.01, 0.01], null]',
        b'["setosa", [0.98, "x", 0.01], null]',
        b'{"prediction": "setosa"}',
    ],
    ids=["made-up-label", "malformed-probabilities", "not-a-cached-answer"],
)
def test_tampered_cache_value_is_a_miss_counted_and_logged(
    serve_modelserve: Callable[..., RunningServer],
    tmp_path: Path,
    demo_models_dir: Path,
    redis_url: str,
    store: redis.Redis,
    value: bytes,
) -> None:
    """An overwritten entry is never served: the row is recomputed (MISS), counted and logged."""
    server = serve_modelserve(_config(tmp_path, demo_models_dir, redis_url, SECRET))
    genuine = _predict(server).json()
    key = _only_key(store)
    store.set(key, value)
    for _ in range(3):
        answer = _predict(server)
        assert answer.headers["x-cache"] == "MISS"
        assert answer.json()["prediction"] == genuine["prediction"] == "setosa"
        store.set(key, value)  # the recomputed answer overwrote it; tamper again
    assert _sample(server, "modelserve_cache_rejected_total{") == 3
    (line,) = wait_for_log_events(server, 1, event="cache_value_rejected")
    assert line["model"] == "iris"
    labels = _sample(server, 'modelserve_predicted_class_total{label="made-up"')
    assert labels == 0


def test_cache_keys_need_the_secret(
    serve_modelserve: Callable[..., RunningServer],
    tmp_path: Path,
    demo_models_dir: Path,
    redis_url: str,
    store: redis.Redis,
) -> None:
    """The same config and row under another secret is another key: keys cannot be guessed."""
    first = serve_modelserve(_config(tmp_path, demo_models_dir, redis_url, SECRET))
    _predict(first)
    before = set(store.keys("modelserve:cache:*"))
    other = serve_modelserve(_config(tmp_path, demo_models_dir, redis_url, SECRET + " (other)"))
    assert _predict(other).headers["x-cache"] == "MISS"
    assert len(set(store.keys("modelserve:cache:*")) - before) == 1
