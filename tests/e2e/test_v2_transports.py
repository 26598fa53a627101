"""One inference core behind three transports, real processes: the same request through
``/predict``, V2 REST and V2 gRPC gives the same answer, counts once in the same metrics, hits
the same cache entry and spends the same rate-limit budget; gRPC drains on SIGTERM and serves
from every worker."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import yaml
from tritonclient.utils import InferenceServerException

from tests import prometheus
from tests.conftest import free_port
from tests.e2e.conftest import RunningServer, wait_for_log_events, write_config
from tests.label_models import build_label_models

pytestmark = pytest.mark.e2e

ROW = [5.9, 3.0, 4.2, 1.5]
ACCESS_ROW = [6.1, 2.8, 4.0, 1.3]
"""The access-line test's own row: the shared server's cache never holds it for another test."""


def _metric(server: RunningServer, name: str, **labels: str) -> float:
    return prometheus.total(
        httpx.get(server.base_url + "/metrics", timeout=10).text, name, **labels
    )


def _via_predict(server: RunningServer, model: str) -> tuple[str, dict[str, float]]:
    body = httpx.post(
        f"{server.base_url}/predict?model={model}", json={"features": ROW}, timeout=30
    ).json()
    return body["prediction"], body["probabilities"]


def _via_v2_rest(server: RunningServer, model: str) -> httpx.Response:
    tensor = {"name": "input", "shape": [1, 4], "datatype": "FP64", "data": ROW}
    return httpx.post(
        f"{server.base_url}/v2/models/{model}/infer", json={"inputs": [tensor]}, timeout=30
    )


def _rest_answer(response: httpx.Response, classes: list[str]) -> tuple[str, dict[str, float]]:
    label, probabilities = response.json()["outputs"]
    return label["data"][0], dict(zip(classes, probabilities["data"], strict=True))


def _via_grpc(port: int, model: str) -> Any:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    tensor = grpcclient.InferInput("input", [1, 4], "FP64")
    tensor.set_data_from_numpy(np.array([ROW]))
    try:
        return client.infer(model, [tensor], client_timeout=30)
    finally:
        client.close()


def _grpc_answer(result: Any, classes: list[str]) -> tuple[str, dict[str, float]]:
    label = result.as_numpy("label")[0].decode()
    return label, dict(zip(classes, result.as_numpy("probabilities")[0].tolist(), strict=True))


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The label models, built once for the module (read only)."""
    out = tmp_path_factory.mktemp("label-models")
    build_label_models(out)
    return out


@pytest.fixture(scope="module")
def grpc_server(
    serve_modelserve_module: Callable[..., RunningServer], models_dir: Path
) -> tuple[RunningServer, int]:
    """One server of the label models with gRPC, shared by the tests that compare metric
    deltas and send rows of their own; returns it and its gRPC port."""
    grpc_port = free_port()
    server = serve_modelserve_module(models_dir / "modelserve.yaml", "--grpc-port", str(grpc_port))
    return server, grpc_port


def test_transports_same_answer_metrics_once_and_one_cache_entry(
    grpc_server: tuple[RunningServer, int],
) -> None:
    """/predict, V2 REST and gRPC: one answer, one prediction counted each, one cache entry."""
    server, grpc_port = grpc_server
    classes = ["10", "20", "30"]
    labels = {"model": "ints", "model_version": "1"}
    predicted = _metric(server, "modelserve_predictions_total", **labels)
    hits = _metric(server, "modelserve_cache_requests_total", result="hit", **labels)
    misses = _metric(server, "modelserve_cache_requests_total", result="miss", **labels)

    by_predict = _via_predict(server, "ints")
    rest = _via_v2_rest(server, "ints")
    by_grpc = _grpc_answer(_via_grpc(grpc_port, "ints"), classes)

    assert by_predict == _rest_answer(rest, classes) == by_grpc
    assert _metric(server, "modelserve_predictions_total", **labels) - predicted == 3
    # The first computed the row; the other two found it under the same cache key.
    assert _metric(server, "modelserve_cache_requests_total", result="miss", **labels) - misses == 1
    assert _metric(server, "modelserve_cache_requests_total", result="hit", **labels) - hits == 2


ACCESS_FIELDS = {"request_id", "method", "path", "status", "latency_ms", "model", "model_version"}
INFER = "/inference.GRPCInferenceService/ModelInfer"


def test_transports_grpc_call_writes_the_access_line_and_request_metrics_of_http(
    grpc_server: tuple[RunningServer, int],
) -> None:
    """A tritonclient.grpc ModelInfer writes the same request_completed line as /predict (its
    request id, the method's path, the REST status, the model that answered) and counts in
    modelserve_http_requests_total with the method as route; a refusal counts as its 404."""
    server, grpc_port = grpc_server
    requests = "modelserve_http_requests_total"
    duration_count = "modelserve_http_request_duration_seconds_count"
    before = (
        _metric(server, requests, route=INFER, method="GRPC", status="200"),
        _metric(server, requests, route=INFER, method="GRPC", status="404"),
        _metric(server, requests, route="/predict", method="POST", status="200"),
        _metric(server, duration_count, route=INFER),
    )
    httpx.post(
        f"{server.base_url}/predict?model=ints",
        json={"features": ACCESS_ROW},
        headers={"X-Request-ID": "via-http"},
        timeout=30,
    ).raise_for_status()
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    tensor = grpcclient.InferInput("input", [1, 4], "FP64")
    tensor.set_data_from_numpy(np.array([ACCESS_ROW]))
    try:
        client.infer("ints", [tensor], headers={"x-request-id": "via-grpc"}, client_timeout=30)
        with pytest.raises(InferenceServerException, match="unknown model"):
            client.infer("nope", [tensor], headers={"x-request-id": "grpc-404"})
    finally:
        client.close()

    (by_http,) = wait_for_log_events(server, 1, event="request_completed", request_id="via-http")
    (by_grpc,) = wait_for_log_events(server, 1, event="request_completed", request_id="via-grpc")
    (refused,) = wait_for_log_events(server, 1, event="request_completed", request_id="grpc-404")
    assert by_http.keys() & by_grpc.keys() >= ACCESS_FIELDS
    assert (by_http["method"], by_http["path"], by_http["status"]) == ("POST", "/predict", 200)
    assert {k: by_grpc[k] for k in ("method", "path", "status", "grpc_code", "model")} == {
        "method": "GRPC",
        "path": INFER,
        "status": 200,
        "grpc_code": "OK",
        "model": "ints",
    }
    assert (refused["status"], refused["grpc_code"]) == (404, "NOT_FOUND")
    after = (
        _metric(server, requests, route=INFER, method="GRPC", status="200"),
        _metric(server, requests, route=INFER, method="GRPC", status="404"),
        _metric(server, requests, route="/predict", method="POST", status="200"),
        _metric(server, duration_count, route=INFER),
    )
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1, 2]


def test_transports_share_one_rate_limit_budget(
    serve_modelserve: Callable[..., RunningServer], models_dir: Path, tmp_path: Path
) -> None:
    """Three single-row requests, one per transport, spend a budget of three for all of them."""
    grpc_port = free_port()
    data = yaml.safe_load((models_dir / "modelserve.yaml").read_text())
    data["server"] = {"grpc_port": grpc_port}
    data["rate_limit"] = {"enabled": True, "predict": "3/minute", "predict_batch": "3/minute"}
    server = serve_modelserve(write_config(tmp_path, data))

    assert httpx.post(server.base_url + "/predict?model=ints", json={"features": ROW}).is_success
    assert _via_v2_rest(server, "ints").is_success
    _via_grpc(grpc_port, "ints")

    refused = _via_v2_rest(server, "ints")
    assert refused.status_code == 429
    assert "rate limit exceeded" in refused.json()["error"]
    assert (
        httpx.post(server.base_url + "/predict?model=ints", json={"features": ROW}).status_code
        == 429
    )
    with pytest.raises(InferenceServerException) as caught:
        _via_grpc(grpc_port, "ints")
    assert caught.value.status() == "StatusCode.RESOURCE_EXHAUSTED"


def test_transports_grpc_call_in_flight_finishes_on_sigterm(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path, fake_models_dir: Path
) -> None:
    """SIGTERM while a gRPC call is computing: the call gets its answer and the server exits 0."""
    grpc_port = free_port()
    config = write_config(
        tmp_path,
        {
            "models": [{"name": "slow", "path": str(fake_models_dir / "slow.joblib")}],
            "server": {"grpc_port": grpc_port, "grace_period_s": 20},
        },
    )
    server = serve_modelserve(config)
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["result"] = _via_grpc(grpc_port, "slow")
        except InferenceServerException as exc:
            outcome["error"] = exc

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 30
    # The scrape counts itself in flight; the gRPC call makes a second.
    while _metric(server, "modelserve_http_requests_in_flight") < 2:
        assert time.monotonic() < deadline, "the gRPC call never arrived"
        time.sleep(0.02)
    assert server.stop(timeout_s=60) == 0
    caller.join(timeout=30)
    assert "error" not in outcome
    assert outcome["result"].as_numpy("label").tolist() == [b"0"]
    assert wait_for_log_events(server, 1, event="grpc_server_stopped")


def test_transports_grpc_on_every_worker(
    serve_modelserve: Callable[..., RunningServer], models_dir: Path
) -> None:
    """With --workers 2 each worker serves gRPC on the shared port; calls on new connections
    all succeed."""
    grpc_port = free_port()
    server = serve_modelserve(
        models_dir / "modelserve.yaml", "--grpc-port", str(grpc_port), "--workers", "2"
    )
    started = wait_for_log_events(server, 2, event="grpc_server_started")
    assert {line["port"] for line in started} == {grpc_port}
    wait_for_log_events(server, 2, event="models_loaded", ready=True)
    for _ in range(10):
        assert _via_grpc(grpc_port, "strings").as_numpy("label").tolist() == [b"versicolor"]


@pytest.mark.slow  # two workers each load and warm the 1 s model
def test_transports_grpc_calls_in_flight_finish_on_sigterm_with_workers(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path, fake_models_dir: Path
) -> None:
    """With --workers 2, SIGTERM to the server while gRPC calls compute on its workers: every
    call gets its answer, both workers stop their gRPC servers, and the server exits 0."""
    grpc_port = free_port()
    config = write_config(
        tmp_path,
        {
            "models": [{"name": "slow", "path": str(fake_models_dir / "slow.joblib")}],
            "server": {"grpc_port": grpc_port, "grace_period_s": 20},
        },
    )
    server = serve_modelserve(config, "--workers", "2", wait=None)
    # Each worker loads and warms the slow model before it accepts (a few seconds each).
    wait_for_log_events(server, 2, timeout_s=180, event="models_loaded", ready=True)
    calls = 4
    outcomes: list[Any] = [None] * calls

    def call(i: int) -> None:
        try:
            outcomes[i] = _via_grpc(grpc_port, "slow").as_numpy("label").tolist()
        except InferenceServerException as exc:
            outcomes[i] = exc

    callers = [threading.Thread(target=call, args=(i,)) for i in range(calls)]
    for caller in callers:
        caller.start()
    deadline = time.monotonic() + 30
    # The scrape counts itself in flight; every call (one connection each) adds one.
    while _metric(server, "modelserve_http_requests_in_flight") < calls + 1:
        assert time.monotonic() < deadline, "the gRPC calls never all arrived"
        time.sleep(0.02)
    assert server.stop(timeout_s=60) == 0
    for caller in callers:
        caller.join(timeout=30)
    assert outcomes == [[b"0"]] * calls
    assert len(wait_for_log_events(server, 2, event="grpc_server_stopped")) == 2
