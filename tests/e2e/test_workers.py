"""``--workers 2``: gunicorn with uvicorn workers, each loading its own models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import IRIS_ONNX, RunningServer, wait_for_log_events

pytestmark = pytest.mark.e2e

WORKERS = 2


@pytest.fixture(scope="module")
def server(
    serve_modelserve_module: Callable[..., RunningServer], demo_models_dir: Path
) -> RunningServer:
    """One gunicorn server with two workers, every worker's model loaded."""
    running = serve_modelserve_module(demo_models_dir / IRIS_ONNX, "--workers", str(WORKERS))
    wait_for_log_events(running, WORKERS, event="models_loaded", ready=True)
    return running


def test_workers_each_worker_loads_the_model(server: RunningServer) -> None:
    """Every worker loads the configured model itself at startup."""
    loaded = [line for line in server.log_lines() if line["event"] == "model_loaded"]

    assert len(loaded) == WORKERS
    assert {line["model"] for line in loaded} == {"iris"}


def test_workers_answer_predictions(server: RunningServer) -> None:
    """Requests spread over fresh connections are all answered."""
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=server.base_url, limits=limits, timeout=10) as client:
        statuses = [
            client.post("/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}).status_code
            for _ in range(20)
        ]

    assert statuses == [200] * 20


def test_workers_gunicorn_log_lines_are_json(server: RunningServer) -> None:
    """gunicorn's own lines are JSON like the rest (log_lines fails on any other line)."""
    lines = server.log_lines()

    booted = [line for line in lines if "Booting worker" in str(line.get("message", ""))]
    assert len(booted) == WORKERS
    assert all(line["logger"] == "gunicorn.error" for line in booted)
    assert all(line["level"] == "info" for line in booted)
