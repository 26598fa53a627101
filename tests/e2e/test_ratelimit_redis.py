"""Rate limits in real server processes: shared through Redis, proxies, per-key budgets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.conftest import IRIS_ONNX, RunningServer, wait_ready

pytestmark = pytest.mark.e2e

SETOSA = [5.1, 3.5, 1.4, 0.2]
KEY_A = "e2e-rl-key-a-1c2d3e4f5a6b7c8d9e0f1a2b"
KEY_B = "e2e-rl-key-b-9f8e7d6c5b4a39281706f5e4"
REDIS_LIMITS = {"storage": "redis", "redis_timeout_ms": 5000}
"""A generous timeout: with the default 100 ms a slow reply fails open and a 429 becomes 200."""


def _config(tmp_path: Path, demo_models_dir: Path, **settings: Any) -> Path:
    """A config serving the demo classifier with /predict limited to 3 per minute."""
    limits = {"enabled": True, "predict": "3/minute", **settings.pop("rate_limit", {})}
    model = {"name": "iris", "path": str(demo_models_dir / IRIS_ONNX)}
    path = tmp_path / "modelserve.yaml"
    path.write_text(yaml.safe_dump({"models": [model], "rate_limit": limits, **settings}))
    return path


def _predict(server: RunningServer, **headers: str) -> httpx.Response:
    return httpx.post(
        server.base_url + "/predict", json={"features": SETOSA}, headers=headers, timeout=10
    )


@pytest.mark.redis
def test_ratelimit_redis_shared_between_two_servers(
    serve_modelserve: Callable[..., RunningServer],
    tmp_path: Path,
    demo_models_dir: Path,
    redis_url: str,
) -> None:
    """One client's budget is spent across both processes: the 4th request is 429 on either."""
    config = _config(tmp_path, demo_models_dir, redis_url=redis_url, rate_limit=REDIS_LIMITS)
    first, second = serve_modelserve(config, wait=None), serve_modelserve(config, wait=None)
    wait_ready(first)
    wait_ready(second)
    spent = [_predict(s).status_code for s in (first, second, first)]
    refused = [_predict(s) for s in (second, first)]
    assert spent == [200, 200, 200]
    assert [r.status_code for r in refused] == [429, 429]
    assert refused[0].headers["x-ratelimit-remaining"] == "0"
    assert int(refused[0].headers["retry-after"]) >= 1


@pytest.mark.redis
def test_ratelimit_redis_separates_api_keys(
    serve_modelserve: Callable[..., RunningServer],
    tmp_path: Path,
    demo_models_dir: Path,
    redis_url: str,
) -> None:
    """A key over its limit does not spend another key's budget."""
    keys = [{"name": "a", "key": KEY_A}, {"name": "b", "key": KEY_B}]
    config = _config(
        tmp_path,
        demo_models_dir,
        redis_url=redis_url,
        rate_limit=REDIS_LIMITS,
        auth={"enabled": True, "keys": keys},
    )
    server = serve_modelserve(config)
    statuses_a = [_predict(server, **{"X-API-Key": KEY_A}).status_code for _ in range(4)]
    response_b = _predict(server, **{"X-API-Key": KEY_B})
    assert statuses_a == [200, 200, 200, 429]
    assert (response_b.status_code, response_b.headers["x-ratelimit-remaining"]) == (200, "2")


@pytest.mark.parametrize(
    ("trusted", "expected"),
    [(["127.0.0.1/32"], [200, 200, 200, 200]), ([], [200, 200, 200, 429])],
    ids=["trusted-proxy", "untrusted-peer"],
)
def test_ratelimit_forwarded_for_honoured_only_from_trusted_proxy(
    serve_modelserve: Callable[..., RunningServer],
    tmp_path: Path,
    demo_models_dir: Path,
    trusted: list[str],
    expected: list[int],
) -> None:
    """Behind a trusted proxy forwarded clients have their own budgets; else the peer has one."""
    config = _config(tmp_path, demo_models_dir, rate_limit={"trusted_proxies": trusted})
    server = serve_modelserve(config)
    forwarded = ["198.51.100.1"] * 3 + ["198.51.100.2"]
    statuses = [_predict(server, **{"X-Forwarded-For": f}).status_code for f in forwarded]
    assert statuses == expected
