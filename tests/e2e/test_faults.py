"""Faults stay contained, in a real process: the affected requests get the documented error,
everything else keeps serving, and the log says what happened once, not once per request."""

from __future__ import annotations

import httpx
import joblib
import pytest

from tests import fakes
from tests.e2e.conftest import ModuleServers, RunningServer

pytestmark = pytest.mark.e2e

SETOSA = [5.1, 3.5, 1.4, 0.2]
REPEATS = 6


@pytest.fixture(scope="module")
def server(module_servers: ModuleServers) -> RunningServer:
    """iris beside a model that raises on some rows, one that hangs past its deadline, one that
    returns the wrong shape, and one whose load outlasts its load timeout (listed last)."""
    directory = module_servers.directory
    joblib.dump(fakes.StallingClassifier(delay_s=30).fit(None, None), directory / "stall.joblib")
    joblib.dump(fakes.WrongShapeClassifier().fit(None, None), directory / "shape.joblib")
    joblib.dump(fakes.SlowLoadingClassifier(30).fit(None, None), directory / "heavy.joblib")
    models = [
        module_servers.iris(),
        {"name": "failing", "path": str(module_servers.fake_models / "failing.joblib")},
        {
            "name": "stalling",
            "path": str(directory / "stall.joblib"),
            "batching": {"timeout_ms": 500, "inference_threads": 2},
        },
        {"name": "shape", "path": str(directory / "shape.joblib")},
        {
            "name": "heavy",
            "path": str(directory / "heavy.joblib"),
            "load_timeout_s": 1,
            "required": False,
        },
    ]
    config = {"models": models, "default_model": "iris", "cache": {"backend": "none"}}
    return module_servers.serve(config)


def predict(server: RunningServer, model: str, first: float) -> httpx.Response:
    row = [first, 1.0, 1.0, 1.0]
    return httpx.post(
        f"{server.base_url}/predict?model={model}", json={"features": row}, timeout=30
    )


def iris_serves(server: RunningServer) -> bool:
    response = httpx.post(server.base_url + "/predict", json={"features": SETOSA}, timeout=30)
    return response.status_code == 200


def events(server: RunningServer, event: str, model: str) -> list[dict[str, object]]:
    return [
        line
        for line in server.log_lines()
        if line.get("event") == event and line.get("model") == model
    ]


def test_fault_model_raising_on_some_rows_fails_only_those(server: RunningServer) -> None:
    """Poisoned rows get 500 prediction_failed every time, other rows of the same model and
    other models 200, and batch_failed is logged once for the repeated failures."""
    for _ in range(REPEATS):
        failed = predict(server, "failing", 666.0)
        assert (failed.status_code, failed.json()["code"]) == (500, "prediction_failed")
        assert "secret internal detail" not in failed.text
        assert predict(server, "failing", 1.0).status_code == 200
        assert iris_serves(server)
    lines = events(server, "batch_failed", "failing")
    assert 1 <= len(lines) < REPEATS
    assert "poisoned row" in str(lines[0]["exception"])


def test_fault_model_hanging_past_its_deadline_is_504_and_others_serve(
    server: RunningServer,
) -> None:
    """A call stuck past timeout_ms answers 504 inference_timeout; the other models serve."""
    hung = predict(server, "stalling", 99.0)
    assert (hung.status_code, hung.json()["code"]) == (504, "inference_timeout")
    assert iris_serves(server)
    assert predict(server, "stalling", 1.0).status_code == 200  # its second thread is free
    assert events(server, "request_failed", "stalling") == []


def test_fault_model_returning_the_wrong_shape_is_500_prediction_failed(
    server: RunningServer,
) -> None:
    """An output with one row too few is refused (500 prediction_failed), logged once with
    the shape, and never scattered into wrong answers."""
    for _ in range(REPEATS):
        wrong = predict(server, "shape", 77.0)
        assert (wrong.status_code, wrong.json()["code"]) == (500, "prediction_failed")
    assert predict(server, "shape", 1.0).status_code == 200
    assert iris_serves(server)
    lines = events(server, "batch_failed", "shape")
    assert 1 <= len(lines) < REPEATS
    assert "shape (0, 3) for a batch of 1 rows" in str(lines[0]["reason"])
    assert [line for line in server.log_lines() if line.get("event") == "request_failed"] == []


def test_fault_model_loading_past_its_load_timeout_fails_alone(server: RunningServer) -> None:
    """A load outlasting load_timeout_s marks that version failed with the reason, once in
    the log; the other models loaded after it and serve."""
    refused = predict(server, "heavy", 1.0)
    assert (refused.status_code, refused.json()["code"]) == (503, "model_not_ready")
    assert "load_timeout_s (1 s)" in refused.json()["detail"]
    assert httpx.get(server.base_url + "/ready", timeout=5).status_code == 200
    assert iris_serves(server)
    (line,) = events(server, "model_load_failed", "heavy")
    assert "load_timeout_s" in str(line["reason"])
