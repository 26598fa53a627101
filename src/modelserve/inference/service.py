"""The transport-agnostic prediction pipeline: preprocess → batch → predict → postprocess.

HTTP routes (and later the Open Inference Protocol) call :class:`PredictionService`; nothing
here knows about requests or responses.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from modelserve.errors import ShuttingDownError
from modelserve.inference.cache import PredictionCache
from modelserve.inference.preprocess import RangeReport, Row
from modelserve.inference.registry import ModelRegistry, ModelVersion
from modelserve.inference.shadow import ShadowRunner
from modelserve.inference.types import FloatArray, Prediction
from modelserve.observability import metrics
from modelserve.observability.health import HealthState
from modelserve.observability.throttle import LogThrottle

log = structlog.get_logger(__name__)
RANGE_LOG_INTERVAL_S = 1.0
"""Per version, at most one `feature_out_of_range` line this often (the metric counts all)."""


@dataclass(frozen=True, slots=True)
class PredictionResult:
    """Predictions for the rows of one request, and who made them."""

    model: str
    model_version: str
    predictions: list[Prediction]
    latency_ms: float
    cache_status: str | None = None
    """HIT, MISS or PARTIAL when a prediction cache is configured."""


class PredictionService:
    """Runs requests through a model version. One instance per process."""

    def __init__(
        self, registry: ModelRegistry, health: HealthState, cache: PredictionCache | None = None
    ) -> None:
        self.registry = registry
        self.health = health
        self.cache = cache
        self.shadow = ShadowRunner(registry)
        self._range_logs: dict[tuple[str, str], LogThrottle] = {}

    async def predict(
        self,
        rows: Sequence[Row],
        *,
        model: str | None = None,
        version: str | None = None,
        caller: str | None = None,
        top_k: int | None = None,
    ) -> PredictionResult:
        """Predict ``rows`` (lists of numbers, or name → number mappings)."""
        started = time.perf_counter()
        if not self.health.accepting:
            raise ShuttingDownError()
        entry = self.registry.route(model, version, caller)
        schema, formatter, batcher = entry.schema, entry.formatter, entry.batcher
        assert schema is not None  # noqa: S101 - a routed version is ready
        assert formatter is not None  # noqa: S101
        assert batcher is not None  # noqa: S101
        entry.acquire()  # a reload retires this artifact only after we are done with it
        try:
            matrix = schema.to_array(rows)
            if (report := schema.out_of_range(matrix)) is not None:
                self._report_out_of_range(entry, report)
            if self.cache is None:
                predictions = formatter.format(await batcher.submit(matrix), top_k)
                cache_status = None
            else:
                predictions, cache_status = await self._predict_cached(entry, matrix, top_k)
        except Exception as exc:
            metrics.record_failure(
                entry.name, entry.version, getattr(exc, "code", "internal_error")
            )
            if entry.monitor is not None:
                entry.monitor.observe_failure()
            raise
        finally:
            entry.release()
        self._record(entry, predictions)
        if entry.monitor is not None:  # drift and latency windows: cheap ring-buffer copies
            entry.monitor.observe(matrix, predictions, time.perf_counter() - started)
        self.shadow.mirror(entry, rows, predictions)
        return PredictionResult(
            entry.name,
            entry.version,
            predictions,
            (time.perf_counter() - started) * 1000,
            cache_status,
        )

    async def _predict_cached(
        self, entry: ModelVersion, matrix: FloatArray, top_k: int | None
    ) -> tuple[list[Prediction], str]:
        """Answer cached rows from the cache; only the missing rows go to the batcher."""
        cache, formatter, batcher = self.cache, entry.formatter, entry.batcher
        assert cache is not None  # noqa: S101 - called only with a cache
        assert formatter is not None  # noqa: S101 - a routed version is ready
        assert batcher is not None  # noqa: S101
        lookup = await cache.lookup(entry.name, entry.version, entry.fingerprint, top_k, matrix)
        computed: list[Prediction] = []
        if lookup.missing:
            todo = matrix if not lookup.hits else matrix[lookup.missing]
            computed = formatter.format(await batcher.submit(todo), top_k)
            await cache.fill(lookup, computed)
        status = lookup.status
        metrics.record_cache(entry.name, entry.version, lookup.hits, len(lookup.missing))
        structlog.contextvars.bind_contextvars(
            cache=status.value, cache_hits=lookup.hits, cache_misses=len(lookup.missing)
        )
        return lookup.merge(computed), status.value

    def _report_out_of_range(self, entry: ModelVersion, report: RangeReport) -> None:
        """Count every value; log one line per request, at most one per interval."""
        for feature, count in report.counts.items():
            metrics.record_out_of_range(entry.name, entry.version, feature, count)
        key = (entry.name, entry.version)
        throttle = self._range_logs.get(key)
        if throttle is None:
            throttle = self._range_logs[key] = LogThrottle(RANGE_LOG_INTERVAL_S)
        held_back = throttle.allow()
        if held_back is None:
            return
        example = report.example
        log.warning(
            "feature_out_of_range",
            model=entry.name,
            model_version=entry.version,
            rows=report.rows,
            counts=report.counts,
            row=example.row,
            feature=example.feature,
            value=example.value,
            low=example.low,
            high=example.high,
            requests_not_logged=held_back,
        )

    @staticmethod
    def _record(entry: ModelVersion, predictions: list[Prediction]) -> None:
        if entry.formatter is not None and entry.formatter.is_classifier:
            metrics.record_predictions(
                entry.name,
                entry.version,
                [str(p.prediction) for p in predictions],
                [p.confidence for p in predictions if p.confidence is not None],
            )
        else:
            metrics.record_regression(
                entry.name,
                entry.version,
                [p.prediction for p in predictions if isinstance(p.prediction, float)],
            )
