"""FailedAuthLimiter and RefusalLog with a hand-moved clock: windows, addresses, bounds, and
one count shared by processes forked after the limiter was built."""

from __future__ import annotations

import os

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
    monkeypatch.setattr(lockout, "BUCKETS", 16)
    monkeypatch.setattr(lockout, "WAYS", 4)
    limiter = FailedAuthLimiter("5/minute", clock=clock)
    for i in range(1000):
        limiter.failed(f"addr-{i}")
    assert limiter.tracked() <= 64


def test_lockout_evicts_the_oldest_window_of_a_full_bucket(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one bucket of two entries, a third address replaces the one that failed first."""
    monkeypatch.setattr(lockout, "BUCKETS", 1)
    monkeypatch.setattr(lockout, "WAYS", 2)
    limiter = FailedAuthLimiter("1/minute", clock=clock)
    for address in ("first", "second", "third"):
        limiter.failed(address)
        clock.now += 1
    assert [limiter.retry_after_s(a) is not None for a in ("first", "second", "third")] == [
        False,
        True,
        True,
    ]


def test_lockout_lock_out_refuses_for_the_given_time(clock: Clock) -> None:
    """A lockout decided elsewhere (the fleet's count) holds for the seconds it was given."""
    limiter = FailedAuthLimiter("3/minute", clock=clock)
    limiter.lock_out("10.0.0.1", 12)
    assert limiter.retry_after_s("10.0.0.1") == 12
    clock.now += 12
    assert limiter.retry_after_s("10.0.0.1") is None


def test_lockout_counts_failures_of_forked_processes_once() -> None:
    """Failures counted in two forked children and the parent add up in one count."""
    limiter = FailedAuthLimiter("3/hour")
    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            limiter.failed("10.0.0.9")
            os._exit(0)
        children.append(pid)
    for pid in children:
        assert os.waitpid(pid, 0)[1] == 0
    assert limiter.retry_after_s("10.0.0.9") is None
    limiter.failed("10.0.0.9")
    assert limiter.retry_after_s("10.0.0.9") is not None


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
