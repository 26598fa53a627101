"""FailedAuthLimiter and RefusalLog with a hand-moved clock: windows, addresses, bounds."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from modelserve.api import lockout
from modelserve.api.lockout import FailedAuthLimiter, RefusalLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_lockout_starts_after_the_limit_and_ends_with_the_window(clock: Clock) -> None:
    """Three failures of "3/minute" lock the address out for the rest of that minute."""
    limiter = FailedAuthLimiter("3/minute", clock=clock)
    for _ in range(2):
        limiter.failed("10.0.0.1")
    assert limiter.retry_after_s("10.0.0.1") is None
    limiter.failed("10.0.0.1")
    clock.now += 20
    assert limiter.retry_after_s("10.0.0.1") == 40
    clock.now += 40
    assert limiter.retry_after_s("10.0.0.1") is None


def test_lockout_counts_each_address_alone(clock: Clock) -> None:
    """Failures of one address never lock out another."""
    limiter = FailedAuthLimiter("1/minute", clock=clock)
    limiter.failed("10.0.0.1")
    assert limiter.retry_after_s("10.0.0.1") == 60
    assert limiter.retry_after_s("10.0.0.2") is None


def test_lockout_failures_of_an_ended_window_start_a_new_one(clock: Clock) -> None:
    """A failure after the window ended counts from one again."""
    limiter = FailedAuthLimiter("2/minute", clock=clock)
    limiter.failed("a")
    clock.now += 61
    limiter.failed("a")
    assert limiter.retry_after_s("a") is None


def test_lockout_tracks_a_bounded_number_of_addresses(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood of addresses keeps the table within its bound."""
    monkeypatch.setattr(lockout, "MAX_TRACKED_ADDRESSES", 100)
    limiter = FailedAuthLimiter("5/minute", clock=clock)
    for i in range(1000):
        limiter.failed(f"addr-{i}")
    assert len(limiter._windows) <= 100


def test_refusal_log_writes_one_line_per_interval_with_the_count(clock: Clock) -> None:
    """Refusals inside an interval are counted into the next line, not logged each."""
    refusals = RefusalLog(interval_s=10, clock=clock)
    with capture_logs() as logs:
        for _ in range(5):
            refusals.refused(path="/predict", code="unauthorized")
        clock.now += 10
        refusals.refused(path="/predict", code="unauthorized")
    assert [(e["event"], e["refused_since_last"]) for e in logs] == [
        ("auth_refused", 1),
        ("auth_refused", 5),
    ]
