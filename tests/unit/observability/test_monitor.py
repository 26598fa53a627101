"""VersionMonitor and MonitorLoop: gauges, drift warnings and the periodic log lines."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from prometheus_client import REGISTRY
from sklearn.datasets import load_iris
from structlog.testing import capture_logs

from modelserve.observability.monitor import MonitorLoop, VersionMonitor
from modelserve.observability.profile import ReferenceProfile, build_profile
from modelserve.settings import DriftSettings

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS = np.asarray(load_iris().data, dtype=np.float64)


@pytest.fixture(scope="module")
def iris_profile() -> ReferenceProfile:
    return build_profile(IRIS, FEATURES, ["setosa"] * 150, [0.9] * 150)


def _monitor(name: str, profile: ReferenceProfile | None, **settings: float) -> VersionMonitor:
    return VersionMonitor(
        name,
        "1",
        n_features=4,
        is_classifier=True,
        profile=profile,
        settings=DriftSettings(**settings),
    )


def _feed(monitor: VersionMonitor, rows: np.ndarray, seconds: float = 0.001) -> None:
    monitor.observe(rows, seconds, ["setosa"] * len(rows), [0.9] * len(rows))


def _sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_monitor_observe_records_the_prediction_duration() -> None:
    """Each observed request adds one observation to the prediction duration histogram."""
    monitor = _monitor("mon-duration", None)
    labels = {"model": "mon-duration", "model_version": "1"}
    before = _sample("modelserve_prediction_duration_seconds_count", **labels) or 0.0

    _feed(monitor, IRIS[:5], 0.004)
    _feed(monitor, IRIS[:1], 0.004)

    assert _sample("modelserve_prediction_duration_seconds_count", **labels) == before + 2


def test_monitor_refresh_publishes_psi_gauges(iris_profile: ReferenceProfile) -> None:
    """refresh() sets one PSI gauge per feature and the window size gauge."""
    monitor = _monitor("mon-gauges", iris_profile)
    _feed(monitor, IRIS)

    report = monitor.refresh()

    for feature in FEATURES:
        value = _sample(
            "modelserve_drift_feature_psi", model="mon-gauges", model_version="1", feature=feature
        )
        assert value == pytest.approx(report.psi[feature])
    assert _sample("modelserve_drift_window_rows", model="mon-gauges", model_version="1") == 150


def test_monitor_warns_once_when_psi_crosses_the_threshold(
    iris_profile: ReferenceProfile,
) -> None:
    """Shifted traffic logs one drift_detected warning per feature, not one per refresh."""
    monitor = _monitor("mon-warn", iris_profile)
    _feed(monitor, IRIS + np.array([0.0, 0.0, 2.0, 0.0]))

    with capture_logs() as logs:
        monitor.refresh()
        monitor.refresh()

    warnings = [e for e in logs if e["event"] == "drift_detected"]
    assert [(e["feature"], e["log_level"]) for e in warnings] == [("petal_length", "warning")]
    assert warnings[0]["psi"] > 0.2
    assert warnings[0]["psi_threshold"] == 0.2


def test_monitor_logs_recovery_when_psi_falls_back(iris_profile: ReferenceProfile) -> None:
    """Once normal rows replace the shifted ones, drift_recovered is logged."""
    monitor = _monitor("mon-recover", iris_profile, window=150, min_rows=100)
    _feed(monitor, IRIS + np.array([0.0, 0.0, 2.0, 0.0]))
    monitor.refresh()
    _feed(monitor, IRIS)

    with capture_logs() as logs:
        monitor.refresh()

    assert [e["feature"] for e in logs if e["event"] == "drift_recovered"] == ["petal_length"]


def test_monitor_threshold_is_configurable(iris_profile: ReferenceProfile) -> None:
    """With psi_threshold 10, even a large shift is not reported."""
    monitor = _monitor("mon-threshold", iris_profile, psi_threshold=10.0)
    _feed(monitor, IRIS + np.array([0.0, 0.0, 2.0, 0.0]))

    with capture_logs() as logs:
        monitor.refresh()

    assert not [e for e in logs if e["event"] == "drift_detected"]


def test_monitor_log_period_writes_latency_stats() -> None:
    """log_period writes latency_stats with the period's count, errors and percentiles."""
    monitor = _monitor("mon-latency", None)
    for ms in range(1, 101):
        _feed(monitor, IRIS[:1], ms / 1000)
    monitor.observe_failure("prediction_failed", client_fault=False)

    with capture_logs() as logs:
        monitor.log_period(30.0)

    (line,) = [e for e in logs if e["event"] == "latency_stats"]
    assert (line["model"], line["model_version"], line["count"], line["errors"]) == (
        "mon-latency",
        "1",
        101,
        1,
    )
    assert line["p50_ms"] == pytest.approx(50.5)
    assert line["error_rate"] == pytest.approx(1 / 101, abs=1e-6)


def test_monitor_log_period_is_silent_without_traffic() -> None:
    """A version that served nothing in the period writes no latency_stats line."""
    monitor = _monitor("mon-idle", None)

    with capture_logs() as logs:
        monitor.log_period(30.0)

    assert not [e for e in logs if e["event"] == "latency_stats"]


def test_monitor_log_period_writes_drift_stats(iris_profile: ReferenceProfile) -> None:
    """drift_stats carries PSI per feature, the class mix and the mean confidence."""
    monitor = _monitor("mon-drift-line", iris_profile)
    _feed(monitor, IRIS)

    with capture_logs() as logs:
        monitor.log_period(30.0)

    (line,) = [e for e in logs if e["event"] == "drift_stats"]
    assert set(line["psi"]) == set(FEATURES)
    assert line["class_mix"] == {"setosa": 1.0}
    assert line["mean_confidence"] == pytest.approx(0.9)
    assert line["window_rows"] == 150


async def test_monitor_loop_logs_every_interval() -> None:
    """With interval_s 0.05 the loop writes latency_stats within a second of traffic."""
    monitor = _monitor("mon-loop", None)
    loop = MonitorLoop(lambda: [monitor], DriftSettings(interval_s=0.05))
    with capture_logs() as logs:
        loop.start()
        try:
            _feed(monitor, IRIS[:3])
            for _ in range(250):  # at most 5 s
                if any(e["event"] == "latency_stats" for e in logs):
                    break
                await asyncio.sleep(0.02)
        finally:
            await loop.stop()

    (line,) = [e for e in logs if e["event"] == "latency_stats"]
    assert line["count"] == 1
