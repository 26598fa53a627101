"""The bounded latency window behind the latency_stats log line."""

from __future__ import annotations

import pytest

from modelserve.observability.latency import LatencyWindow


def test_latency_window_percentiles_of_known_latencies() -> None:
    """1..100 ms give p50 50.5 ms, p95 95.05 ms and p99 99.01 ms (linear interpolation)."""
    window = LatencyWindow(capacity=1000)
    for ms in range(1, 101):
        window.add(ms / 1000)

    summary = window.take()

    assert summary.count == 100
    assert summary.p50_ms == pytest.approx(50.5)
    assert summary.p95_ms == pytest.approx(95.05)
    assert summary.p99_ms == pytest.approx(99.01)


def test_latency_window_counts_stay_exact_beyond_capacity() -> None:
    """The count covers every request even when only the newest latencies are kept."""
    window = LatencyWindow(capacity=10)
    for _ in range(95):
        window.add(0.5)
    for _ in range(10):
        window.add(0.002)

    summary = window.take()

    assert summary.count == 105
    assert summary.p99_ms == pytest.approx(2.0)  # only the newest ten are kept


def test_latency_window_error_rate() -> None:
    """Three failures among twelve requests give an error rate of 0.25."""
    window = LatencyWindow(capacity=100)
    for _ in range(9):
        window.add(0.001)
    for _ in range(3):
        window.add_error()

    summary = window.take()

    assert (summary.count, summary.errors) == (12, 3)
    assert summary.error_rate == pytest.approx(0.25)


def test_latency_window_take_starts_a_new_period() -> None:
    """After take() the next summary holds only what came later."""
    window = LatencyWindow(capacity=100)
    window.add(1.0)
    window.take()
    window.add(0.003)

    summary = window.take()

    assert summary.count == 1
    assert summary.p50_ms == pytest.approx(3.0)


def test_latency_window_empty_period_has_no_percentiles() -> None:
    """A period with only failures (or nothing) has a count but no percentiles."""
    window = LatencyWindow(capacity=100)
    window.add_error()

    summary = window.take()

    assert (summary.count, summary.p50_ms, summary.p99_ms) == (1, None, None)


def test_latency_window_splits_failures_as_stats_does() -> None:
    """Client faults count as client errors, shedding apart; only server errors make the
    error rate."""
    window = LatencyWindow(capacity=100)
    for _ in range(6):
        window.add(0.001)
    window.add_error("wrong_feature_count", client_fault=True)
    window.add_error("empty_batch", client_fault=True)
    window.add_error("overloaded")
    window.add_error("prediction_failed")

    summary = window.take()

    assert (summary.count, summary.errors, summary.client_errors, summary.shed) == (10, 1, 2, 1)
    assert summary.error_rate == pytest.approx(0.1)
    assert summary.client_error_rate == pytest.approx(0.2)
