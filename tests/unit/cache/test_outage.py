"""OutageTracker: throttled warnings and the back-off after a back-end failure."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from structlog.testing import capture_logs

from modelserve.cache.base import OutageTracker


class _Clock:
    """A settable monotonic clock, so intervals can be crossed without sleeping."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _warnings(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == "backend_unavailable"]


def test_outage_tracker_warns_once_per_interval() -> None:
    """Repeated failures inside one interval produce a single warning."""
    tracker = OutageTracker("redis cache", warn_interval_s=30, clock=_Clock())
    with capture_logs() as logs:
        for _ in range(5):
            tracker.failed(ConnectionError("refused"), "get")
    assert len(_warnings(logs)) == 1


def test_outage_tracker_warns_again_after_interval_with_suppressed_count() -> None:
    """After the interval the next failure is logged with the number left unlogged."""
    clock = _Clock()
    tracker = OutageTracker("redis cache", warn_interval_s=30, clock=clock)
    with capture_logs() as logs:
        for _ in range(3):
            tracker.failed(ConnectionError("refused"), "get")
        clock.now += 31
        tracker.failed(ConnectionError("refused"), "get")
    assert [w["failures_not_logged"] for w in _warnings(logs)] == [0, 2]


def test_outage_tracker_skips_backend_during_backoff() -> None:
    """Right after a failure the back-end is unavailable, and available after the back-off."""
    clock = _Clock()
    tracker = OutageTracker("redis cache", backoff_s=1.0, clock=clock)
    tracker.failed(TimeoutError(), "get")
    during = tracker.available()
    clock.now += 1.5
    assert (during, tracker.available()) == (False, True)


def test_outage_tracker_logs_recovery_once() -> None:
    """The first success after a failure logs backend_recovered; later successes do not."""
    tracker = OutageTracker("redis cache", clock=_Clock())
    tracker.failed(ConnectionError("refused"), "set")
    with capture_logs() as logs:
        tracker.succeeded()
        tracker.succeeded()
    assert [e["event"] for e in logs] == ["backend_recovered"]


def test_outage_tracker_flapping_logs_one_outage_per_interval() -> None:
    """Outages and recoveries alternating inside one interval log one warning and one
    recovery; the next warning, after the interval, counts the outages in between."""
    clock = _Clock()
    tracker = OutageTracker("redis cache", warn_interval_s=30, clock=clock)
    with capture_logs() as logs:
        for _ in range(4):
            tracker.failed(ConnectionError("refused"), "get")
            clock.now += 2
            tracker.succeeded()
        clock.now += 30
        tracker.failed(ConnectionError("refused"), "get")
    assert [(e["event"], e["failures_not_logged"]) for e in logs] == [
        ("backend_unavailable", 0),
        ("backend_recovered", 0),
        ("backend_unavailable", 3),
    ]
