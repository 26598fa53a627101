"""A bounded window of recent request latencies, for the periodic ``latency_stats`` log line.

Counts (requests, errors) are exact since the last report; percentiles come from the latencies
of successful requests since then, of which at most ``capacity`` (the newest) are kept. Failures
are split as ``/stats`` splits them: server errors (``errors``, the error rate), the client's
own (``client_errors``: 4xx such as bad input) and requests shed by a full queue (``shed``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """One reporting period of one model version."""

    count: int
    """Requests answered or failed in the period."""
    errors: int
    """Server errors (5xx other than shedding)."""
    client_errors: int
    """The client's fault (4xx: bad input, for instance)."""
    shed: int
    """Refused at once because the queue was full (503 overloaded)."""
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.count if self.count else 0.0

    @property
    def client_error_rate(self) -> float:
        return self.client_errors / self.count if self.count else 0.0


class LatencyWindow:
    """Latencies of the newest ``capacity`` successful requests and counts since the last take."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._latencies = np.zeros(capacity)
        self._next = 0
        self._kept = 0
        self._successes = 0
        self._errors = 0
        self._client_errors = 0
        self._shed = 0

    def add(self, seconds: float) -> None:
        """A successful request that took ``seconds``."""
        self._latencies[self._next] = seconds
        self._next = (self._next + 1) % self.capacity
        self._kept = min(self.capacity, self._kept + 1)
        self._successes += 1

    def add_error(self, code: str = "internal_error", *, client_fault: bool = False) -> None:
        """A request that failed with ``code`` (not part of the percentiles); ``client_fault``
        when the request was at fault (4xx), not the server."""
        if code == "overloaded":
            self._shed += 1
        elif client_fault:
            self._client_errors += 1
        else:
            self._errors += 1

    def take(self) -> LatencySummary:
        """Summarize the period since the last ``take`` and start a new one."""
        count = self._successes + self._errors + self._client_errors + self._shed
        p50 = p95 = p99 = None
        if self._kept:
            values = (
                self._latencies[: self._kept] if self._kept < self.capacity else self._latencies
            )
            p50, p95, p99 = (round(float(v) * 1000, 3) for v in np.percentile(values, (50, 95, 99)))
        summary = LatencySummary(
            count, self._errors, self._client_errors, self._shed, p50, p95, p99
        )
        self._next = self._kept = self._successes = 0
        self._errors = self._client_errors = self._shed = 0
        return summary
