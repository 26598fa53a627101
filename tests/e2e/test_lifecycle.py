"""Startup of a real process: failed loads answer 503, --strict exits, ready after warm-up."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ModuleServers, RunningServer, write_config

pytestmark = pytest.mark.e2e

SETOSA = [5.1, 3.5, 1.4, 0.2]
# model name → the reason its load fails
BROKEN = {
    "missing": "model file not found",
    "corrupt": "could not load corrupt.joblib",
    "mismatch": "configuration pins " + "0" * 64,
}
BROKEN_IDS = list(BROKEN)


def broken_models(demo_models_dir: Path, fake_models_dir: Path) -> dict[str, dict[str, Any]]:
    return {
        "missing": {"name": "missing", "path": str(fake_models_dir / "absent.joblib")},
        "corrupt": {"name": "corrupt", "path": str(fake_models_dir / "corrupt.joblib")},
        "mismatch": {
            "name": "mismatch",
            "path": str(demo_models_dir / "iris.joblib"),
            "sha256": "0" * 64,
        },
    }


def wait_until(predicate: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)


def ready_detail(server: RunningServer) -> str:
    response = httpx.get(server.base_url + "/ready", timeout=5)
    return "" if response.status_code == 200 else str(response.json()["detail"])


@pytest.fixture(scope="module")
def server(module_servers: ModuleServers) -> RunningServer:
    """A good model beside a missing, a corrupt and a mis-pinned one, all required."""
    broken = broken_models(module_servers.demo_models, module_servers.fake_models)
    models = [module_servers.iris(), *broken.values()]
    config = {"models": models, "default_model": "iris", "cache": {"backend": "none"}}
    running = module_servers.serve(config, wait="/health")
    wait_until(lambda: "loading" not in ready_detail(running))
    return running


@pytest.mark.parametrize("model", BROKEN_IDS)
def test_ready_is_503_naming_each_failed_model(server: RunningServer, model: str) -> None:
    """/ready is 503 and its detail names every failed model; the reason is in /models."""
    response = httpx.get(server.base_url + "/ready", timeout=5)
    models = httpx.get(server.base_url + "/models", timeout=5).json()["models"]
    assert response.status_code == 503
    assert response.json()["code"] == "not_ready"
    assert f"{model}:1 is failed" in response.json()["detail"].split("; ")
    (entry,) = [m for m in models if m["name"] == model]
    assert BROKEN[model] in entry["reason"]


@pytest.mark.parametrize("model", BROKEN_IDS)
def test_predict_on_failed_model_is_503_with_reason(server: RunningServer, model: str) -> None:
    """Predictions for a model that failed to load answer 503 with the reason."""
    response = httpx.post(
        server.base_url + "/predict", params={"model": model}, json={"features": SETOSA}
    )
    assert response.status_code == 503
    assert response.json()["code"] == "model_not_ready"
    assert BROKEN[model] in response.json()["detail"]


def test_failed_loads_leave_the_process_serving(server: RunningServer) -> None:
    """The process stays up: liveness is 200 and the good model answers."""
    assert httpx.get(server.base_url + "/health", timeout=5).status_code == 200
    response = httpx.post(server.base_url + "/predict", json={"features": SETOSA})
    assert response.status_code == 200
    assert server.proc.poll() is None


@pytest.mark.parametrize("model", BROKEN_IDS)
def test_failed_load_is_logged_with_reason(server: RunningServer, model: str) -> None:
    """Each failed load writes one structured error line with the model and the reason."""
    lines = [
        line
        for line in server.log_lines()
        if line["event"] == "model_load_failed" and line["model"] == model
    ]
    assert len(lines) == 1
    assert lines[0]["level"] == "error"
    assert BROKEN[model] in str(lines[0]["reason"])


@pytest.mark.parametrize("model", BROKEN_IDS)
def test_models_endpoint_shows_failure_reason(server: RunningServer, model: str) -> None:
    """GET /models shows the failed status and reason of each broken model."""
    versions = httpx.get(server.base_url + "/models", timeout=5).json()["models"]
    (entry,) = [v for v in versions if v["name"] == model]
    assert entry["status"] == "failed"
    assert BROKEN[model] in entry["reason"]


@pytest.mark.parametrize("model", BROKEN_IDS)
def test_strict_exits_non_zero_on_a_failed_load(
    serve_modelserve: Callable[..., RunningServer],
    demo_models_dir: Path,
    fake_models_dir: Path,
    tmp_path: Path,
    model: str,
) -> None:
    """With --strict a model that fails to load makes the process exit non-zero, saying why."""
    entry = broken_models(demo_models_dir, fake_models_dir)[model]
    server = serve_modelserve(write_config(tmp_path, {"models": [entry]}), "--strict", wait=None)
    assert server.proc.wait(timeout=60) != 0
    reasons = [str(line.get("reason")) for line in server.log_lines()]
    assert any(BROKEN[model] in reason for reason in reasons)


def test_ready_only_after_warm_up(
    serve_modelserve: Callable[..., RunningServer], fake_models_dir: Path, tmp_path: Path
) -> None:
    """While a slow warm-up runs /ready is 503 "loading" and /health 200; then /ready is 200."""
    config = {
        "models": [
            {
                "name": "slow",
                "path": str(fake_models_dir / "slow.joblib"),
                "warmup_input": [[5.1, 3.5, 1.4, 0.2]],
                "batching": {"max_batch_size": 1},
            }
        ]
    }
    server = serve_modelserve(write_config(tmp_path, config), wait="/health")
    ready = httpx.get(server.base_url + "/ready", timeout=5)
    health = httpx.get(server.base_url + "/health", timeout=5)
    assert ready.status_code == 503
    assert "slow:1 is loading" in ready.json()["detail"]
    assert (health.status_code, health.json()["models"]) == (200, {"slow:1": "loading"})
    wait_until(lambda: httpx.get(server.base_url + "/ready", timeout=5).status_code == 200)
    (loaded,) = [line for line in server.log_lines() if line["event"] == "model_loaded"]
    assert float(str(loaded["warmup_ms"])) >= 1000
