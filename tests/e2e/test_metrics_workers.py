"""/metrics under gunicorn: two workers' counts add up exactly, whichever worker answers."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from tests.e2e.conftest import RunningServer
from tests.e2e.test_metrics import iris_config, scrape
from tests.prometheus import value

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SETOSA = [5.1, 3.5, 1.4, 0.2]
IRIS = {"model": "iris", "model_version": "1"}
WAVE = 16
MAX_WAVES = 12


def _metrics_dir(tmp: Path) -> Path:
    """The per-run multiprocess directory the server made (under our TMPDIR)."""
    (found,) = list(tmp.glob("modelserve-metrics-*"))
    return found


def _worker_pids(metrics_dir: Path) -> set[int]:
    return {int(p.stem.rsplit("_", 1)[1]) for p in metrics_dir.glob("gauge_livesum_*.db")}


def _per_worker(metrics_dir: Path, sample: str, **labels: str) -> dict[int, float]:
    """One worker's own count of ``sample``, read from its files alone."""
    counts: dict[int, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        with tempfile.TemporaryDirectory() as alone:
            shutil.copy(path, alone)
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=alone)  # type: ignore[no-untyped-call]
            counts[pid] = sum(
                s.value
                for family in registry.collect()
                for s in family.samples
                if s.name == sample and labels.items() <= s.labels.items()
            )
    return counts


def _wait_all_workers_ready(server: RunningServer, workers: int) -> None:
    for _ in range(300):  # at most 30 s
        samples = scrape(server.base_url)
        ready = ("modelserve_model_ready", frozenset(IRIS.items()))
        if samples.get(("modelserve_workers", frozenset())) == workers and samples.get(ready) == 1:
            return
        time.sleep(0.1)
    raise TimeoutError("the workers did not all become ready")


def _predict(base_url: str) -> int:
    # A new connection per request, so the kernel spreads them over the workers.
    return httpx.post(base_url + "/predict", json={"features": SETOSA}, timeout=10).status_code


def _drive_until_both_served(server: RunningServer, metrics_dir: Path) -> int:
    """Send waves of concurrent requests until both workers served some; return how many."""
    sent = 0
    with ThreadPoolExecutor(8) as pool:
        for _ in range(MAX_WAVES):
            statuses = list(pool.map(_predict, [server.base_url] * WAVE))
            assert statuses == [200] * WAVE
            sent += WAVE
            served = _per_worker(metrics_dir, "modelserve_predictions_total", **IRIS)
            if len([n for n in served.values() if n > 0]) == 2:
                return sent
    raise AssertionError(f"one worker served all {sent} requests")


@pytest.fixture
def two_workers(
    serve_modelserve: Callable[..., RunningServer], demo_models_dir: Path, tmp_path: Path
) -> tuple[RunningServer, Path]:
    """A 2-worker server whose multiprocess directory lands in a temp dir we can see."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    server = serve_modelserve(
        iris_config(demo_models_dir, tmp_path), "--workers", "2", env={"TMPDIR": str(tmp)}
    )
    _wait_all_workers_ready(server, 2)
    return server, tmp


def test_workers_counts_add_up_exactly(two_workers: tuple[RunningServer, Path]) -> None:
    """After N requests spread over 2 workers, every scrape and /stats read reports exactly N."""
    server, tmp = two_workers
    metrics_dir = _metrics_dir(tmp)
    sent = _drive_until_both_served(server, metrics_dir)

    per_worker = _per_worker(metrics_dir, "modelserve_predictions_total", **IRIS)
    assert sum(per_worker.values()) == sent
    ok = {"route": "/predict", "method": "POST", "status": "200"}
    for _ in range(4):  # each scrape may be answered by either worker
        samples = scrape(server.base_url)
        assert value(samples, "modelserve_predictions_total", **IRIS) == sent
        assert value(samples, "modelserve_rows_predicted_total", **IRIS) == sent
        assert value(samples, "modelserve_http_requests_total", **ok) == sent
        assert value(samples, "modelserve_prediction_duration_seconds_count", **IRIS) == sent
        assert value(samples, "modelserve_predicted_class_total", label="setosa", **IRIS) == sent
        assert value(samples, "modelserve_workers") == 2
        stats = httpx.get(server.base_url + "/stats", timeout=10).json()
        (iris,) = [m for m in stats["models"] if m["model"] == "iris"]
        assert (iris["predictions_total"], stats["workers"]) == (sent, 2)
    assert server.stop() == 0
    assert not metrics_dir.exists()  # the per-run directory is removed at exit


def test_workers_dead_worker_keeps_its_counts_but_not_its_gauges(
    two_workers: tuple[RunningServer, Path],
) -> None:
    """A killed worker's requests still count; its live gauges go; its replacement is counted."""
    server, tmp = two_workers
    metrics_dir = _metrics_dir(tmp)
    sent = _drive_until_both_served(server, metrics_dir)
    victim = max(_worker_pids(metrics_dir))

    os.kill(victim, signal.SIGKILL)
    for _ in range(300):  # at most 30 s for gunicorn to replace it
        if victim not in _worker_pids(metrics_dir) and len(_worker_pids(metrics_dir)) == 2:
            break
        time.sleep(0.1)
    _wait_all_workers_ready(server, 2)

    samples = scrape(server.base_url)
    assert victim not in _worker_pids(metrics_dir)
    assert value(samples, "modelserve_predictions_total", **IRIS) == sent
    assert value(samples, "modelserve_workers") == 2
    assert server.stop() == 0
