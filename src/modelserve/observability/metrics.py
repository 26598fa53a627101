"""Every Prometheus metric modelserve exports, defined once, and the helpers that record them.

Under gunicorn the process runs in prometheus-client's multiprocess mode (serving.py sets
PROMETHEUS_MULTIPROC_DIR before workers start, workers.py marks dead workers). Counters and
histograms then add up over every worker that ever ran; each gauge says how its per-worker
values combine with a ``live*`` mode, so a dead worker's last value never lingers.
"""

from __future__ import annotations

import collections
import functools
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client.metrics_core import Metric

# Fine below 10 ms, where a batched model server lives, so interpolated quantiles stay honest.
_LATENCY_BUCKETS = (
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
)
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
_MODEL = ("model", "model_version")
# Up to this many values, a loop of Histogram.observe is cheaper than counting with numpy.
_OBSERVE_ONE_BY_ONE = 8

HTTP_REQUESTS = Counter(
    "modelserve_http_requests_total",
    "Requests answered, over HTTP and gRPC (route: the gRPC method, method: GRPC).",
    ("route", "method", "status"),
)
HTTP_DURATION = Histogram(
    "modelserve_http_request_duration_seconds",
    "Time from request start to response end.",
    ("route", "method"),
    buckets=_LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge(
    "modelserve_http_requests_in_flight", "Requests being handled.", multiprocess_mode="livesum"
)
PREDICTIONS = Counter("modelserve_predictions_total", "Requests predicted.", _MODEL)
ROWS = Counter("modelserve_rows_predicted_total", "Rows predicted.", _MODEL)
PREDICTION_DURATION = Histogram(
    "modelserve_prediction_duration_seconds",
    "Server time of a successful prediction request: preprocess, queue, model, postprocess.",
    _MODEL,
    buckets=_LATENCY_BUCKETS,
)
INFERENCE_DURATION = Histogram(
    "modelserve_inference_duration_seconds",
    "Duration of one model call (one batch).",
    _MODEL,
    buckets=_LATENCY_BUCKETS,
)
QUEUE_WAIT = Histogram(
    "modelserve_queue_wait_seconds",
    "Time a request waited in the batch queue.",
    _MODEL,
    buckets=_LATENCY_BUCKETS,
)
BATCH_ROWS = Histogram(
    "modelserve_batch_rows", "Rows per model call.", _MODEL, buckets=_ROW_BUCKETS
)
QUEUE_ROWS = Gauge(
    "modelserve_queue_rows", "Rows waiting in the batch queue.", _MODEL, multiprocess_mode="livesum"
)
INFERENCE_ERRORS = Counter(
    "modelserve_inference_errors_total", "Failed predictions by error code.", (*_MODEL, "code")
)
SHED = Counter(
    "modelserve_requests_shed_total", "Requests refused because the queue was full.", _MODEL
)
BUSY = Counter(
    "modelserve_requests_busy_total",
    "Requests refused before their body was read: request bytes in flight, connections or "
    "event-loop lag past their bounds.",
)
LOG_LINES_DROPPED = Counter(
    "modelserve_log_lines_dropped_total",
    "Log lines dropped because the log writer's queue was full (its reader too slow).",
)
TIMEOUTS = Counter(
    "modelserve_timeouts_total", "Requests past their deadline, by where.", (*_MODEL, "stage")
)
CANCELLED = Counter(
    "modelserve_requests_cancelled_total",
    "Queued requests dropped because the client went away.",
    _MODEL,
)
CANCELLED_ROWS = Counter(
    "modelserve_cancelled_rows_total",
    "Queued rows dropped before computing because their client went away.",
    _MODEL,
)
MODEL_PROCESS_EXITS = Counter(
    "modelserve_model_process_exits_total",
    "Model processes (isolation: process) that exited while their version served; each is "
    "restarted, the version unready until it answers.",
    _MODEL,
)
PREDICTED_CLASS = Counter(
    "modelserve_predicted_class_total", "Predicted labels.", (*_MODEL, "label")
)
CONFIDENCE = Histogram(
    "modelserve_prediction_confidence", "Top-1 probability.", _MODEL, buckets=_CONFIDENCE_BUCKETS
)
REGRESSION_OUTPUT = Histogram(
    "modelserve_regression_output",
    "Regression outputs.",
    _MODEL,
    buckets=(-1000, -100, -10, -1, 0, 1, 10, 100, 1000, 10000),
)
OUT_OF_RANGE = Counter(
    "modelserve_feature_out_of_range_total",
    "Feature values outside the declared range.",
    (*_MODEL, "feature"),
)
CACHE = Counter("modelserve_cache_requests_total", "Cache look-ups by result.", (*_MODEL, "result"))
CACHE_REJECTED = Counter(
    "modelserve_cache_rejected_total",
    "Cached values refused as not an answer of this version (tampered or foreign).",
    _MODEL,
)
RATE_LIMITED = Counter("modelserve_rate_limited_total", "Requests refused with 429.", ("route",))
STICKY_WITHOUT_CALLER = Counter(
    "modelserve_sticky_without_caller_total",
    "Sticky canary requests naming no caller (no API key or X-Client-ID): routed at random.",
    ("model",),
)
SHADOW = Counter(
    "modelserve_shadow_comparisons_total",
    "Rows mirrored to a shadow version, by result: agree, disagree, error or dropped.",
    ("model", "live_version", "shadow_version", "result"),
)
MODEL_INFO = Gauge(
    "modelserve_model_info",
    "1 for each configured model version, labelled with its format and status.",
    (*_MODEL, "format", "status"),
    multiprocess_mode="livemax",
)
MODEL_READY = Gauge(
    "modelserve_model_ready",
    "1 when the version is loaded and warmed (in every live worker).",
    _MODEL,
    multiprocess_mode="livemin",
)
LOAD_DURATION = Gauge(
    "modelserve_model_load_seconds",
    "Time to load the artifact.",
    _MODEL,
    multiprocess_mode="livemax",
)
WARMUP_DURATION = Gauge(
    "modelserve_model_warmup_seconds",
    "Time of the warm-up calls.",
    _MODEL,
    multiprocess_mode="livemax",
)
# Drift: each worker compares its own rolling window (a random share of the traffic) with the
# reference profile; across workers the worst value is reported, which is what alerts want.
DRIFT_PSI = Gauge(
    "modelserve_drift_feature_psi",
    "Population stability index of a feature's recent values against the reference profile.",
    (*_MODEL, "feature"),
    multiprocess_mode="livemax",
)
DRIFT_CLASS_SHIFT = Gauge(
    "modelserve_drift_class_mix_shift",
    "Total variation distance between the recent and the reference predicted-class mix (0-1).",
    _MODEL,
    multiprocess_mode="livemax",
)
DRIFT_CONFIDENCE = Gauge(
    "modelserve_drift_mean_confidence",
    "Mean top-1 probability over the recent window.",
    _MODEL,
    multiprocess_mode="livemin",
)
DRIFT_WINDOW_ROWS = Gauge(
    "modelserve_drift_window_rows",
    "Rows in the rolling drift window.",
    _MODEL,
    multiprocess_mode="livesum",
)
# Process metrics that stay right under gunicorn (prometheus-client's own process_* collector
# is not available in multiprocess mode). Per-worker series carry a ``pid`` label there.
WORKERS = Gauge("modelserve_workers", "Serving processes alive.", multiprocess_mode="livesum")
RESIDENT_MEMORY = Gauge(
    "modelserve_process_resident_memory_bytes",
    "Resident memory of a serving process.",
    multiprocess_mode="liveall",
)
OPEN_FDS = Gauge(
    "modelserve_process_open_fds",
    "Open file descriptors of a serving process.",
    multiprocess_mode="liveall",
)
CPU_SECONDS = Counter(
    "modelserve_process_cpu_seconds", "CPU time (user + system) of the serving processes."
)


def record_batch(model: str, version: str, rows: int, seconds: float) -> None:
    """One model call of ``rows`` rows that took ``seconds``."""
    BATCH_ROWS.labels(model, version).observe(rows)
    INFERENCE_DURATION.labels(model, version).observe(seconds)


def record_queue(model: str, version: str, queued_rows: int) -> None:
    QUEUE_ROWS.labels(model, version).set(queued_rows)


def record_queue_wait(model: str, version: str, seconds: float) -> None:
    QUEUE_WAIT.labels(model, version).observe(seconds)


def record_failure(model: str, version: str, code: str) -> None:
    """A prediction that failed with error ``code`` (shed and timeouts also counted apart)."""
    INFERENCE_ERRORS.labels(model, version, code).inc()
    if code == "overloaded":
        SHED.labels(model, version).inc()
    elif code in ("queue_timeout", "inference_timeout"):
        TIMEOUTS.labels(model, version, code.removesuffix("_timeout")).inc()


def record_sticky_without_caller(model: str) -> None:
    STICKY_WITHOUT_CALLER.labels(model).inc()


def record_busy() -> None:
    BUSY.inc()


def record_log_lines_dropped(count: int) -> None:
    LOG_LINES_DROPPED.inc(count)


def record_cancelled(model: str, version: str, rows: int) -> None:
    """A request whose client went away, and its ``rows`` dropped before computing."""
    CANCELLED.labels(model, version).inc()
    CANCELLED_ROWS.labels(model, version).inc(rows)


def record_predictions(
    model: str,
    version: str,
    labels: Sequence[str],
    confidences: Sequence[float] | npt.NDArray[np.float64],
    label_ids: npt.NDArray[np.intp] | None = None,
    label_names: Sequence[str] = (),
) -> None:
    """Requests and rows answered by a classifier: one counter update per distinct label and
    one histogram update per bucket, whatever the number of rows. With ``label_ids`` (each
    row's label as an index into ``label_names``) the labels are counted with one
    ``bincount`` instead of per row."""
    _request_counters(model, version)(len(labels))
    if len(labels) == 1:  # a single row: building a Counter cost more than the counting
        _child(PREDICTED_CLASS, model, version, labels[0]).inc()
    elif label_ids is not None:
        counts = np.bincount(label_ids, minlength=len(label_names)).tolist()
        for label, count in zip(label_names, counts, strict=True):
            if count:
                _child(PREDICTED_CLASS, model, version, label).inc(count)
    else:
        for label, count in collections.Counter(labels).items():
            _child(PREDICTED_CLASS, model, version, label).inc(count)
    _observe_all(_child(CONFIDENCE, model, version), confidences)


def record_regression(model: str, version: str, values: list[float]) -> None:
    _request_counters(model, version)(len(values))
    _observe_all(_child(REGRESSION_OUTPUT, model, version), values)


def _observe_all(histogram: Histogram, amounts: Sequence[float] | npt.NDArray[np.float64]) -> None:
    """``histogram.observe(a)`` for every ``a``, as one update per bucket and one to the sum.

    prometheus-client has no bulk observation, so this writes the child's own bucket and sum
    values (``_upper_bounds``, ``_buckets``, ``_sum``, what ``observe`` writes): they are the
    per-process storage in both modes (memory, or the worker's mmap file under gunicorn), so
    scrapes and the multiprocess aggregation see exactly what single observations give.
    A unit test pins that equality. Few amounts go through ``observe``: numpy costs more there.
    """
    if len(amounts) <= _OBSERVE_ONE_BY_ONE:
        for amount in amounts:
            histogram.observe(amount)
        return
    values = np.asarray(amounts, dtype=np.float64)
    bounds = np.asarray(histogram._upper_bounds, dtype=np.float64)
    # observe() puts a value in the first bucket whose bound is >= it, and a NaN in none.
    per_bucket = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    for bucket, count in zip(histogram._buckets, per_bucket[: len(bounds)].tolist(), strict=True):
        if count:
            bucket.inc(count)
    # cumsum adds in order, as sum() and one observe() after another do (np.sum pairs).
    histogram._sum.inc(float(np.cumsum(values)[-1]))


@functools.cache
def _child(metric: Counter | Histogram, *labels: str) -> Any:
    """A labelled child, looked up once: ``labels()`` takes a lock and costs more than the
    observation, and these helpers run per request. Children are never removed, so the cache
    holds exactly what the registry holds."""
    return metric.labels(*labels)


@functools.cache
def _request_counters(model: str, version: str) -> Callable[[int], None]:
    predictions, rows = PREDICTIONS.labels(model, version), ROWS.labels(model, version)

    def count(n_rows: int) -> None:
        predictions.inc()
        rows.inc(n_rows)

    return count


def record_out_of_range(model: str, version: str, feature: str, count: int) -> None:
    """``count`` values of ``feature`` outside its declared range (feature names are config)."""
    OUT_OF_RANGE.labels(model, version, feature).inc(count)


def record_cache(model: str, version: str, hits: int, misses: int) -> None:
    if hits:
        CACHE.labels(model, version, "hit").inc(hits)
    if misses:
        CACHE.labels(model, version, "miss").inc(misses)


def record_cache_rejected(model: str, version: str) -> None:
    CACHE_REJECTED.labels(model, version).inc()


def record_rate_limited(route: str) -> None:
    RATE_LIMITED.labels(route).inc()


def record_shadow(model: str, live: str, shadow: str, result: str, rows: int = 1) -> None:
    SHADOW.labels(model, live, shadow, result).inc(rows)


def record_model_state(
    model: str, version: str, fmt: str, status: str, all_statuses: tuple[str, ...]
) -> None:
    """Set the info gauge to 1 for the current status and 0 for the others."""
    for other in all_statuses:
        MODEL_INFO.labels(model, version, fmt, other).set(1 if other == status else 0)
    MODEL_READY.labels(model, version).set(1 if status == "ready" else 0)


def record_model_process_exit(model: str, version: str) -> None:
    MODEL_PROCESS_EXITS.labels(model, version).inc()


def record_load(model: str, version: str, load_s: float, warmup_s: float) -> None:
    LOAD_DURATION.labels(model, version).set(load_s)
    WARMUP_DURATION.labels(model, version).set(warmup_s)


def record_http(route: str, method: str, status: int, seconds: float) -> None:
    """One request answered (HTTP, or gRPC with the status the same answer has over REST)."""
    _child(HTTP_REQUESTS, route, method, str(status)).inc()
    _child(HTTP_DURATION, route, method).observe(seconds)


def prediction_duration_recorder(model: str, version: str) -> Callable[[float], None]:
    """Records one version's prediction durations; keep it (``labels()`` costs more than
    an observation, and this runs once per request)."""
    return PREDICTION_DURATION.labels(model, version).observe


@dataclass(frozen=True, slots=True)
class BatcherRecorder:
    """One version's batcher metrics, labelled once: the batcher records them per request,
    and ``labels()`` costs more than the observation itself."""

    queue_rows: Callable[[float], None]
    queue_wait_seconds: Callable[[float], None]
    batch_rows: Callable[[float], None]
    inference_seconds: Callable[[float], None]


def batcher_recorder(model: str, version: str) -> BatcherRecorder:
    return BatcherRecorder(
        queue_rows=QUEUE_ROWS.labels(model, version).set,
        queue_wait_seconds=QUEUE_WAIT.labels(model, version).observe,
        batch_rows=BATCH_ROWS.labels(model, version).observe,
        inference_seconds=INFERENCE_DURATION.labels(model, version).observe,
    )


def record_drift(
    model: str,
    version: str,
    window_rows: int,
    psi: dict[str, float],
    class_mix_shift: float | None,
    mean_confidence: float | None,
) -> None:
    """Publish the latest drift figures of one version (``None``: not measured yet)."""
    DRIFT_WINDOW_ROWS.labels(model, version).set(window_rows)
    for feature, value in psi.items():
        DRIFT_PSI.labels(model, version, feature).set(value)
    if class_mix_shift is not None:
        DRIFT_CLASS_SHIFT.labels(model, version).set(class_mix_shift)
    if mean_confidence is not None:
        DRIFT_CONFIDENCE.labels(model, version).set(mean_confidence)


class _ProcessSampler:
    """Reads this process's memory, descriptors and CPU time (Linux /proc; CPU everywhere)."""

    def __init__(self) -> None:
        self._cpu_seen = 0.0
        self._page_size = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def sample(self) -> None:
        WORKERS.set(1)
        times = os.times()
        cpu = times.user + times.system
        if cpu > self._cpu_seen:
            CPU_SECONDS.inc(cpu - self._cpu_seen)
            self._cpu_seen = cpu
        try:
            pages = int(Path("/proc/self/statm").read_text().split()[1])
            RESIDENT_MEMORY.set(pages * self._page_size)
            OPEN_FDS.set(len(os.listdir("/proc/self/fd")))
        except OSError:
            pass  # not Linux: memory and descriptors stay unexported


_process = _ProcessSampler()


def record_process() -> None:
    """Refresh this process's own metrics (called periodically and before each scrape)."""
    _process.sample()


def _multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def _registry() -> CollectorRegistry:
    if _multiprocess():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return DEFAULT_REGISTRY


def collect() -> Iterable[Metric]:
    """Every metric family, aggregated over the workers in multiprocess mode."""
    record_process()
    return list(_registry().collect())


def render_latest() -> tuple[bytes, str]:
    """The exposition text (aggregated over workers in multiprocess mode) and its type."""
    record_process()
    return generate_latest(_registry()), CONTENT_TYPE_LATEST
