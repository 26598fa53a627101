"""The prediction cache in real server processes sharing a real redis-server."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import start_redis
from tests.e2e.conftest import IRIS_ONNX, RunningServer, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

SETOSA = [5.1, 3.5, 1.4, 0.2]
KEY_SECRET = "a shared secret of this test run, 32+ chars"  # noqa: S105 - a test fixture value
REDIS_TIMEOUT_MS = 5000
"""Far above any Redis reply on a loaded machine: the default 50 ms turned HITs into MISSes."""


def _config(tmp_path: Path, demo_models_dir: Path, redis_url: str) -> Path:
    """A config serving the demo classifier with the Redis prediction cache."""
    model = {
        "name": "iris",
        "path": str(demo_models_dir / IRIS_ONNX),
        "labels": ["setosa", "versicolor", "virginica"],
    }
    path = tmp_path / "modelserve.yaml"
    settings = {
        "models": [model],
        "redis_url": redis_url,
        "cache": {
            "backend": "redis",
            "key_secret": KEY_SECRET,
            "redis_timeout_ms": REDIS_TIMEOUT_MS,
        },
    }
    path.write_text(yaml.safe_dump(settings))
    return path


def _predict(server: RunningServer) -> httpx.Response:
    response = httpx.post(server.base_url + "/predict", json={"features": SETOSA}, timeout=10)
    assert response.status_code == 200, response.text
    return response


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server of this test alone (it may be killed), with its URL."""
    url, proc = start_redis(tmp_path)
    yield url, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def test_cache_redis_shared_between_two_servers(
    serve_modelserve: Callable[..., RunningServer],
    tmp_path: Path,
    demo_models_dir: Path,
    redis_url: str,
) -> None:
    """A row computed by one server process is a HIT, with the same answer, on another."""
    config = _config(tmp_path, demo_models_dir, redis_url)
    first, second = serve_modelserve(config, wait=None), serve_modelserve(config, wait=None)
    wait_ready(first)
    wait_ready(second)
    computed = _predict(first)
    shared = _predict(second)
    assert [computed.headers["x-cache"], shared.headers["x-cache"]] == ["MISS", "HIT"]
    keys = ("prediction", "confidence", "probabilities")
    assert {k: shared.json()[k] for k in keys} == {k: computed.json()[k] for k in keys}


def test_cache_redis_killed_mid_test_predictions_keep_succeeding(
    serve_modelserve: Callable[..., RunningServer],
    tmp_path: Path,
    demo_models_dir: Path,
    own_redis: tuple[str, subprocess.Popen[bytes]],
) -> None:
    """With Redis killed, every prediction still succeeds (as a MISS) and one warning is logged."""
    url, redis_proc = own_redis
    server = serve_modelserve(_config(tmp_path, demo_models_dir, url))
    _predict(server)
    assert _predict(server).headers["x-cache"] == "HIT"
    redis_proc.send_signal(signal.SIGKILL)
    redis_proc.wait(timeout=10)
    after = [_predict(server) for _ in range(5)]
    assert [r.headers["x-cache"] for r in after] == ["MISS"] * 5
    assert after[-1].json()["prediction"] == "setosa"
    warnings = [e for e in server.log_lines() if e["event"] == "backend_unavailable"]
    assert len(warnings) == 1
