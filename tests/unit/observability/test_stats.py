"""The /stats arithmetic: windows between snapshots, rates and histogram quantiles."""

from __future__ import annotations

import asyncio
import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from modelserve.observability.stats import (
    MIN_SNAPSHOT_SPACING_S,
    Snapshot,
    StatsSampler,
    VersionFacts,
    Window,
    bucket_quantile,
    summarize,
    take_snapshot,
)

INF = math.inf


def test_bucket_quantile_interpolates_inside_a_bucket() -> None:
    """Half of 10 observations in (1, 2] puts the median at 1.5, as histogram_quantile does."""
    buckets = [(1.0, 0.0), (2.0, 10.0), (INF, 10.0)]

    assert bucket_quantile(buckets, 0.5) == pytest.approx(1.5)


def test_bucket_quantile_above_the_last_finite_bucket_is_its_bound() -> None:
    """Observations beyond the highest finite bound report that bound."""
    buckets = [(1.0, 1.0), (2.0, 2.0), (INF, 10.0)]

    assert bucket_quantile(buckets, 0.99) == 2.0


def test_bucket_quantile_of_nothing_is_none() -> None:
    """No observations, no quantile."""
    assert bucket_quantile([(1.0, 0.0), (INF, 0.0)], 0.5) is None


def test_bucket_quantile_of_counts_is_a_whole_number_in_the_bucket() -> None:
    """Batches that all hold one row have p95 1 (not 0.95, below their mean of 1)."""
    all_single = [(1.0, 40.0), (2.0, 40.0), (4.0, 40.0), (INF, 40.0)]
    three_or_four = [(1.0, 0.0), (2.0, 0.0), (4.0, 10.0), (INF, 10.0)]

    assert bucket_quantile(all_single, 0.95, counts=True) == 1.0
    assert bucket_quantile(three_or_four, 0.05, counts=True) == 3.0
    assert bucket_quantile(three_or_four, 0.95, counts=True) == 4.0


def test_window_delta_and_rate_between_snapshots() -> None:
    """30 more requests over 10 seconds is 3 per second."""
    before = Snapshot(100.0, {"c_total": [({"route": "/predict"}, 20.0)]})
    after = Snapshot(110.0, {"c_total": [({"route": "/predict"}, 50.0)]})

    window = Window(before, after)

    assert window.delta("c_total") == 30.0
    assert window.rate("c_total") == pytest.approx(3.0)


def test_window_counter_reset_counts_from_zero() -> None:
    """A counter lower than before (a restarted process) counts its current value."""
    window = Window(
        Snapshot(0.0, {"c_total": [({}, 50.0)]}), Snapshot(1.0, {"c_total": [({}, 7.0)]})
    )

    assert window.delta("c_total") == 7.0


def test_sampler_first_window_starts_at_creation() -> None:
    """The first summary covers the change since the sampler's start snapshot."""
    sampler = StatsSampler(window_s=60, start=Snapshot(10.0, {"c_total": [({}, 4.0)]}))

    window = sampler.window(Snapshot(15.0, {"c_total": [({}, 6.0)]}))

    assert (window.seconds, window.delta("c_total")) == (5.0, 2.0)


def test_sampler_keeps_the_start_as_base_for_the_first_window() -> None:
    """Until the app is a window old, every summary covers everything since the start."""
    sampler = StatsSampler(window_s=60, start=Snapshot(0.0, {}))
    sampler.window(Snapshot(10.0, {}))

    window = sampler.window(Snapshot(10.5, {}))

    assert window.base.taken_at == 0.0


def test_sampler_uses_the_newest_snapshot_at_least_a_window_old() -> None:
    """With snapshots every 20 s, a 60 s window starts at the one taken 60 s before."""
    sampler = StatsSampler(window_s=60, start=Snapshot(0.0, {}))
    for t in (0.0, 20.0, 40.0, 60.0, 80.0):
        sampler.window(Snapshot(t, {}))

    window = sampler.window(Snapshot(100.0, {}))

    assert window.base.taken_at == 40.0


def test_sampler_window_after_a_quiet_spell_is_one_window_long() -> None:
    """With timer snapshots every 5 s and /stats read only now and then, each window is
    60-65 s long, not the time since the previous read."""
    sampler = StatsSampler(window_s=60, start=Snapshot(0.0, {}))
    sampler.window(Snapshot(1.0, {}))  # a read at start, then none for minutes
    for tick in range(1, 41):
        sampler.keep(Snapshot(tick * 5.0, {}))

    window = sampler.window(Snapshot(202.0, {}))

    assert 60.0 <= window.seconds <= 65.0


async def test_sampler_run_takes_snapshots_without_any_read() -> None:
    """The timer keeps snapshots by itself (bounded wait, polling what it has kept)."""
    sampler = StatsSampler(window_s=60)
    task = asyncio.create_task(sampler.run(interval_s=MIN_SNAPSHOT_SPACING_S))
    try:
        async with asyncio.timeout(60):
            while sampler.kept < 3:  # noqa: ASYNC110 - polling what the sampler has kept
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
    assert sampler.kept >= 3


def test_sampler_history_stays_bounded() -> None:
    """Snapshots closer than a second apart are not kept, so polling cannot grow memory."""
    sampler = StatsSampler(window_s=60, start=Snapshot(0.0, {}))
    for i in range(10_000):
        sampler.window(Snapshot(i * 0.01, {}))

    assert sampler.kept <= 62


def test_take_snapshot_keeps_only_modelserve_samples() -> None:
    """Foreign metrics and _created timestamps are left out."""
    registry = CollectorRegistry()
    Counter("modelserve_x_total", "x", registry=registry).inc(3)
    Counter("other_total", "y", registry=registry).inc()

    snapshot = take_snapshot(registry.collect(), now=1.0)

    assert snapshot.samples == {"modelserve_x_total": [({}, 3.0)]}


def _traffic_snapshot(now: float, requests: int, errors: int) -> Snapshot:
    registry = CollectorRegistry()
    http = Counter(
        "modelserve_http_requests_total", "h", ("route", "method", "status"), registry=registry
    )
    http.labels("/predict", "POST", "200").inc(requests - errors)
    if errors:
        http.labels("/predict", "POST", "500").inc(errors)
    http.labels("/metrics", "GET", "200").inc(1000)  # scrapes are not traffic
    duration = Histogram(
        "modelserve_http_request_duration_seconds",
        "d",
        ("route", "method"),
        buckets=(0.001, 0.01),
        registry=registry,
    )
    for _ in range(requests):
        duration.labels("/predict", "POST").observe(0.005)
    classes = Counter(
        "modelserve_predicted_class_total",
        "c",
        ("model", "model_version", "label"),
        registry=registry,
    )
    classes.labels("m", "1", "a").inc(requests * 3 // 4)
    classes.labels("m", "1", "b").inc(requests // 4)
    return take_snapshot(registry.collect(), now=now)


def test_summarize_traffic_leaves_out_monitoring_routes() -> None:
    """Requests per second, error rate and latency count /predict, not /metrics."""
    window = Window(Snapshot(0.0, {}), _traffic_snapshot(10.0, requests=100, errors=5))

    traffic = summarize(window, [], 0.2, frozenset({"/metrics"}))["traffic"]

    assert traffic["requests"] == 100
    assert traffic["requests_per_s"] == pytest.approx(10.0)
    assert traffic["error_rate"] == pytest.approx(0.05)
    assert 1.0 < traffic["latency_ms"]["p50"] < 10.0


def test_summarize_model_class_mix_is_shares_of_the_window() -> None:
    """Per version, the class mix is each label's share of the window's predictions."""
    facts = VersionFacts("m", "1", "sklearn", "ready", "classifier", None)
    window = Window(Snapshot(0.0, {}), _traffic_snapshot(10.0, requests=100, errors=0))

    (model,) = summarize(window, [facts], 0.2, frozenset())["models"]

    assert model["class_mix"] == {"a": 0.75, "b": 0.25}
    assert model["drift"]["has_profile"] is False
