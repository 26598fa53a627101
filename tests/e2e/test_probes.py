"""Probes of a real process answer while every inference thread is inside the model."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import joblib
import pytest

from tests.e2e.conftest import RunningServer, write_config
from tests.fakes import FileGate, FileGatedClassifier

pytestmark = pytest.mark.e2e

IN_FLIGHT = 8
PROBES = 5


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> FileGate:
    return FileGate(tmp_path_factory.mktemp("probes-gate"))


@pytest.fixture(scope="module")
def server(
    serve_modelserve_module: Callable[..., RunningServer],
    gate: FileGate,
    tmp_path_factory: pytest.TempPathFactory,
) -> RunningServer:
    """A model whose calls the test holds, eight calls at once (no coalescing into one batch)."""
    directory = tmp_path_factory.mktemp("probes")
    joblib.dump(FileGatedClassifier(str(gate.directory)).fit(None, None), directory / "held.joblib")
    model = {
        "name": "slow",
        "path": str(directory / "held.joblib"),
        "batching": {"enabled": False, "inference_threads": IN_FLIGHT, "max_batch_size": 1},
    }
    config = {"models": [model], "cache": {"backend": "none"}}
    return serve_modelserve_module(write_config(directory, config))


def start_predictions(server: RunningServer, pool: ThreadPoolExecutor) -> list[Future[int]]:
    """Send IN_FLIGHT predictions; return futures of their statuses."""

    def predict(row: int) -> int:
        response = httpx.post(
            server.base_url + "/predict", json={"features": [row, 0, 0, 0]}, timeout=60
        )
        return response.status_code

    return [pool.submit(predict, row) for row in range(IN_FLIGHT)]


@pytest.mark.parametrize("probe", ["/health", "/ready"], ids=["health", "ready"])
def test_probe_answers_while_every_inference_thread_is_inside_the_model(
    server: RunningServer, gate: FileGate, probe: str
) -> None:
    """With eight predictions held inside the model, the probe still answers 200 each time.

    The calls cannot finish until the test opens the gate, so a probe that queued behind the
    model would never answer; how fast probes answer under load is measured by
    ``benchmarks/probes.py`` (load ``slow-model-x8``).
    """
    gate.hold()
    with ThreadPoolExecutor(IN_FLIGHT) as pool, httpx.Client(timeout=30) as client:
        predictions = start_predictions(server, pool)
        try:
            gate.wait_entered(IN_FLIGHT)
            statuses = [client.get(server.base_url + probe).status_code for _ in range(PROBES)]
            still_held = sum(not f.done() for f in predictions)
        finally:
            gate.open()
        answered = [f.result(timeout=60) for f in predictions]
    assert statuses == [200] * PROBES
    assert still_held == IN_FLIGHT
    assert answered == [200] * IN_FLIGHT


def test_health_body_names_model_status(server: RunningServer) -> None:
    """/health says the process is ok, not draining, and which versions are ready."""
    body = httpx.get(server.base_url + "/health", timeout=5).json()
    assert (body["status"], body["draining"], body["models"]) == ("ok", False, {"slow:1": "ready"})
    assert body["uptime_s"] > 0


def test_ready_body_when_ready(server: RunningServer) -> None:
    """/ready answers 200 with no reasons once every model is warmed."""
    response = httpx.get(server.base_url + "/ready", timeout=5)
    assert (response.status_code, response.json()) == (200, {"ready": True, "reasons": []})
