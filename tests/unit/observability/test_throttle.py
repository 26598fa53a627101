"""LogThrottle: one line per interval, and a count of what it held back."""

from __future__ import annotations

from modelserve.observability.throttle import LogThrottle


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_log_throttle_allows_one_line_per_interval_and_counts_the_rest() -> None:
    """Within an interval only the first call may log; the next allowed one says how many waited."""
    clock = _Clock()
    throttle = LogThrottle(1.0, clock)
    assert throttle.allow() == 0
    assert [throttle.allow() for _ in range(5)] == [None] * 5
    clock.now += 1.0
    assert throttle.allow() == 5
    assert throttle.allow() is None
