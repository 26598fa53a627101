"""In-process cost of recording one request's prediction metrics, per batch size.

``python -m benchmarks.metrics_recording`` prints the median time of ``record_predictions``
(a 3-class classifier) and ``record_regression`` for 1-row and 1000-row requests, in the
process's own (single-process) registry.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable

import numpy as np

from modelserve.observability import metrics

_LABELS = ("setosa", "versicolor", "virginica")
_REPEATS = 200


def _median_ms(record: Callable[[], None]) -> float:
    record()
    timings = []
    for _ in range(_REPEATS):
        started = time.perf_counter()
        record()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000


def main() -> None:
    rng = np.random.default_rng(0)
    for rows in (1, 1000):
        labels = [_LABELS[i] for i in rng.integers(0, len(_LABELS), rows)]
        confidences = rng.uniform(0.34, 1.0, rows).tolist()
        values = rng.normal(0, 50, rows).tolist()
        classifier = _median_ms(
            functools.partial(metrics.record_predictions, "bench", "1", labels, confidences)
        )
        regressor = _median_ms(functools.partial(metrics.record_regression, "bench", "1", values))
        print(
            f"{rows:>5} rows: record_predictions {classifier:.3f} ms, "
            f"record_regression {regressor:.3f} ms"
        )


if __name__ == "__main__":
    main()
