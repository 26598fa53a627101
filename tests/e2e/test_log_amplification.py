"""A real server logs one throttled line per request with out-of-range values, not one per value."""

from __future__ import annotations

import time

import httpx
import pytest

from modelserve.demo import FEATURES, LABELS
from modelserve.observability.monitor import RANGE_LOG_INTERVAL_S
from tests.e2e.conftest import IRIS_ONNX, ModuleServers, RunningServer, wait_for_log_events

pytestmark = pytest.mark.e2e

ROWS = 1000
OUTSIDE = [100.0, 100.0, 100.0, 100.0]  # every feature above its declared range


@pytest.fixture(scope="module")
def server(module_servers: ModuleServers) -> RunningServer:
    model = module_servers.iris(
        IRIS_ONNX,
        labels=LABELS,
        feature_names=FEATURES,
        feature_ranges={name: [0.0, 10.0] for name in FEATURES},
    )
    config = {"models": [model], "cache": {"backend": "none"}}
    return module_servers.serve(config)


def _lines(server: RunningServer, request_id: str) -> list[dict[str, object]]:
    """The request's lines, once its access line (logged last) is in the file."""
    wait_for_log_events(server, 1, timeout_s=10, event="request_completed", request_id=request_id)
    return [line for line in server.log_lines() if line.get("request_id") == request_id]


def _send(server: RunningServer, request_id: str) -> None:
    response = httpx.post(
        server.base_url + "/predict-batch",
        json={"batch": [OUTSIDE] * ROWS},
        headers={"X-Request-ID": request_id},
        timeout=30,
    )
    assert response.status_code == 200


def test_out_of_range_batch_writes_one_summary_line(server: RunningServer) -> None:
    """1000 rows with 4 values out of range each: one warning with counts, plus the access line."""
    _send(server, "range-first")
    lines = _lines(server, "range-first")
    assert sorted(str(line["event"]) for line in lines) == [
        "feature_out_of_range",
        "request_completed",
    ]
    (warning,) = [line for line in lines if line["event"] == "feature_out_of_range"]
    assert warning["counts"] == dict.fromkeys(FEATURES, ROWS)
    assert warning["rows"] == ROWS
    assert (warning["row"], warning["feature"], warning["value"]) == (0, FEATURES[0], 100.0)
    assert (warning["low"], warning["high"]) == (0.0, 10.0)  # numbers, not "np.float64(...)"


def test_out_of_range_lines_are_throttled(server: RunningServer) -> None:
    """Many such requests in a row log at most one line per interval; the metric counts all."""
    started = time.monotonic()
    for i in range(10):
        _send(server, f"range-burst-{i}")
    elapsed = time.monotonic() - started
    warnings = [
        line
        for line in server.log_lines()
        if line["event"] == "feature_out_of_range"
        and str(line.get("request_id", "")).startswith("range-burst-")
    ]
    assert len(warnings) <= 2 + int(elapsed / RANGE_LOG_INTERVAL_S)
    metric = httpx.get(server.base_url + "/metrics", timeout=5).text
    sample = (
        'modelserve_feature_out_of_range_total{feature="petal_width",model="iris",'
        'model_version="1"}'
    )
    (count,) = [line.split()[-1] for line in metric.splitlines() if line.startswith(sample)]
    assert float(count) == 11 * ROWS
