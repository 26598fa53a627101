"""In-process cost of one runtime call at a batch size: what a server pays per model call."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np

from modelserve.inference.runtimes.base import Runtime
from modelserve.inference.types import FloatArray

BATCH_SIZES = (1, 64)
_REPEATS = 5
_MIN_SECONDS = 0.05
"""Each repeat runs calls for at least this long; the median repeat is kept."""


@dataclass(frozen=True, slots=True)
class Timing:
    batch: int
    original_us: float
    optimized_us: float

    @property
    def speedup(self) -> float:
        return self.original_us / self.optimized_us if self.optimized_us else float("inf")

    def describe(self) -> str:
        return (
            f"batch {self.batch:>3}: {self.original_us:9.1f} us -> {self.optimized_us:9.1f} us"
            f" per call ({self.speedup:.1f}x)"
        )


def compare(original: Runtime, optimized: Runtime, sample: FloatArray) -> list[Timing]:
    """Per-call microseconds of both runtimes at every size in :data:`BATCH_SIZES`."""
    timings = []
    for batch in BATCH_SIZES:
        rows = np.ascontiguousarray(np.resize(sample, (batch, sample.shape[1])))
        timings.append(Timing(batch, _per_call_us(original, rows), _per_call_us(optimized, rows)))
    return timings


def _per_call_us(runtime: Runtime, rows: FloatArray) -> float:
    runtime.predict(rows)  # first call pays one-off costs
    repeats = []
    for _ in range(_REPEATS):
        calls, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < _MIN_SECONDS:
            runtime.predict(rows)
            calls += 1
        repeats.append(elapsed / calls * 1e6)
    return statistics.median(repeats)
