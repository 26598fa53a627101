"""Metrics, drift warnings and latency_stats from a real `modelserve serve` process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from sklearn.datasets import load_iris

from tests.e2e.conftest import IRIS_ONNX, RunningServer
from tests.prometheus import Samples, parse, value

pytestmark = pytest.mark.e2e

SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [7.7, 3.0, 6.1, 2.3]
IRIS = {"model": "iris", "model_version": "1"}


def iris_config(
    demo_models_dir: Path, out: Path, model_file: str = "iris.joblib", **sections: Any
) -> Path:
    """A config serving one demo file of the iris pipeline as model ``iris`` (fast to
    start), with its pin and profile."""
    demo = yaml.safe_load((demo_models_dir / "modelserve.yaml").read_text())
    (entry,) = [m for m in demo["models"] if m["path"] == model_file]
    entry["name"] = "iris"
    entry["path"] = str(demo_models_dir / entry["path"])
    entry["profile"] = str(demo_models_dir / entry["profile"])
    path = out / "iris.yaml"
    path.write_text(yaml.safe_dump({"models": [entry], **sections}))
    return path


def scrape(base_url: str) -> Samples:
    """GET /metrics, parsed by prometheus-client's parser."""
    response = httpx.get(base_url + "/metrics", timeout=10)
    assert response.status_code == 200
    return parse(response.text)


def test_real_server_metrics_count_known_traffic(
    serve_modelserve: Callable[..., RunningServer], demo_models_dir: Path, tmp_path: Path
) -> None:
    """15 setosa and 5 virginica requests show as exactly those counts in /metrics."""
    server = serve_modelserve(iris_config(demo_models_dir, tmp_path))
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        for row in [SETOSA] * 15 + [VIRGINICA] * 5:
            assert client.post("/predict", json={"features": row}).status_code == 200

    samples = scrape(server.base_url)

    ok = {"route": "/predict", "method": "POST", "status": "200"}
    assert value(samples, "modelserve_http_requests_total", **ok) == 20
    assert value(samples, "modelserve_predictions_total", **IRIS) == 20
    assert value(samples, "modelserve_prediction_duration_seconds_count", **IRIS) == 20
    assert value(samples, "modelserve_predicted_class_total", label="setosa", **IRIS) == 15
    assert value(samples, "modelserve_predicted_class_total", label="virginica", **IRIS) == 5
    assert value(samples, "modelserve_prediction_confidence_count", **IRIS) == 20
    assert value(samples, "modelserve_model_info", format="sklearn", status="ready", **IRIS) == 1
    assert value(samples, "modelserve_workers") == 1
    assert server.stop() == 0


def test_real_server_logs_drift_warning_and_latency_stats(
    serve_modelserve: Callable[..., RunningServer], demo_models_dir: Path, tmp_path: Path
) -> None:
    """Shifted traffic gets a drift_detected warning; the period's latency_stats line follows."""
    server = serve_modelserve(
        iris_config(demo_models_dir, tmp_path, IRIS_ONNX),
        env={"MODELSERVE_DRIFT__INTERVAL_S": "0.5"},
    )
    shifted = (load_iris().data + np.array([0.0, 0.0, 2.0, 0.0])).tolist()  # longer petals
    response = httpx.post(server.base_url + "/predict-batch", json={"batch": shifted}, timeout=10)
    assert response.status_code == 200

    lines: list[dict[str, object]] = []
    for _ in range(100):  # at most 10 s
        lines = server.log_lines()
        events = {line["event"] for line in lines}
        if {"drift_detected", "latency_stats"} <= events:
            break
        time.sleep(0.1)
    assert server.stop() == 0

    (warning,) = [line for line in lines if line["event"] == "drift_detected"]
    assert (warning["level"], warning["feature"], warning["model"]) == (
        "warning",
        "petal_length",
        "iris",
    )
    assert float(str(warning["psi"])) > 0.2
    stats = [line for line in lines if line["event"] == "latency_stats"]
    assert stats[0]["count"] == 1
    assert stats[0]["error_rate"] == 0.0
    assert float(str(stats[0]["p50_ms"])) > 0


def test_real_server_ignores_stale_multiprocess_files(
    serve_modelserve: Callable[..., RunningServer], demo_models_dir: Path, tmp_path: Path
) -> None:
    """A single process started with an old PROMETHEUS_MULTIPROC_DIR does not add its counts."""
    stale = tmp_path / "stale-metrics"
    stale.mkdir()
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from prometheus_client import Counter\n"
            "Counter('modelserve_predictions_total', '', ['model', 'model_version'])"
            ".labels('iris', '1').inc(1000)",
        ],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(stale)},
        check=True,
    )
    assert list(stale.glob("counter_*.db"))
    server = serve_modelserve(
        iris_config(demo_models_dir, tmp_path, IRIS_ONNX),
        env={"PROMETHEUS_MULTIPROC_DIR": str(stale)},
    )
    httpx.post(server.base_url + "/predict", json={"features": SETOSA}, timeout=10)

    assert value(scrape(server.base_url), "modelserve_predictions_total", **IRIS) == 1
    assert server.stop() == 0
