"""InferenceCore: the one entry point every transport calls (/predict, V2 REST, V2 gRPC).

Transports convert and nothing else; everything a request costs or counts happens here once:

* Health: :meth:`InferenceCore.server_live`, :meth:`~InferenceCore.liveness` (the /health
  body), :meth:`~InferenceCore.server_ready` (ready = every required version loaded and
  warmed, loading finished, not draining; with the reasons otherwise).
* Models: :meth:`~InferenceCore.model_ready` and :meth:`~InferenceCore.model_metadata`
  (platform, tensors, labels, task; see :mod:`modelserve.inference.metadata`).
* Inference: :meth:`~InferenceCore.infer` takes a *decode* function that builds the
  :data:`~modelserve.inference.types.Batch` for the version the request resolves to (it
  receives that version's :class:`~modelserve.inference.preprocess.FeatureSchema`: width,
  feature names; a float64 matrix, or typed rows for a typed version), checks the batch
  (width, finiteness, each typed value), then runs cache lookup → batch → predict → unbatch
  → postprocess, records metrics, drift and shadow copies, and returns an
  :class:`InferenceResult` whose :class:`~modelserve.inference.types.Outputs` are arrays
  (labels, probabilities, values).
  :func:`~modelserve.inference.formatting.format_predictions` turns them into the /predict
  answer; the V2 adapters encode them as tensors. :meth:`~InferenceCore.infer_large` does the
  same for a large body (:meth:`~InferenceCore.one_job`) as one job in the inference thread,
  from the transport's parse / decode / encode functions to the answer's bytes
  (:mod:`modelserve.inference.large`).
* Repository: :attr:`~InferenceCore.repository` (index, load, reload, unload, routing).

Errors are :class:`~modelserve.errors.ModelserveError` subclasses with a stable ``code``;
adapters map them to their protocol (:mod:`modelserve.api.errors` for HTTP).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import structlog

from modelserve.errors import ModelserveError, ShuttingDownError
from modelserve.inference.cache import PredictionCache
from modelserve.inference.coordination import Coordinator
from modelserve.inference.formatting import check_top_k
from modelserve.inference.large import (
    LARGE_BODY_BYTES,
    Pipeline,
    Progress,
    record_outputs,
    run_job,
)
from modelserve.inference.metadata import (
    VersionMetadata,
    feature_input_specs,
    input_specs,
    output_specs,
    platform_of,
)
from modelserve.inference.preprocess import FeatureSchema
from modelserve.inference.registry import ModelRegistry
from modelserve.inference.repository import ModelRepository
from modelserve.inference.result import InferenceResult
from modelserve.inference.row_queue import Reservation
from modelserve.inference.shadow import ShadowRunner
from modelserve.inference.types import Batch, Outputs
from modelserve.inference.version import LoadedVersion
from modelserve.observability import metrics
from modelserve.observability.health import HealthState

Decode = Callable[[FeatureSchema], Batch | Awaitable[Batch]]
"""Builds a request's batch for the resolved version's schema (raise InvalidInputError);
a transport may build a large one off the event loop and return an awaitable."""

_Parsed = TypeVar("_Parsed")
_Answer = TypeVar("_Answer")


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reasons: list[str]


@dataclass(frozen=True, slots=True)
class Liveness:
    """The process serves; what /health shows besides."""

    draining: bool
    uptime_s: float
    models: dict[str, str]
    """``name:version`` → status."""


class InferenceCore:
    """One per process: the registry, cache, shadow runner and health behind every transport."""

    def __init__(
        self,
        registry: ModelRegistry,
        health: HealthState,
        cache: PredictionCache | None = None,
        coordinator: Coordinator | None = None,
    ) -> None:
        self.registry = registry
        self.health = health
        self.cache = cache
        self.shadow = ShadowRunner(registry)
        self.repository = ModelRepository(registry, coordinator)

    def server_live(self) -> bool:
        """True while the process can answer at all (liveness never depends on models)."""
        return True

    def liveness(self) -> Liveness:
        return Liveness(
            self.health.draining,
            self.health.uptime_s,
            {f"{v.name}:{v.version}": v.info.status.value for v in self.registry.versions()},
        )

    def server_ready(self) -> Readiness:
        """Ready when every required version serves, loading is over, and not draining."""
        return Readiness(*self.health.readiness(*self.registry.readiness()))

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """Whether the version (default: the model's default) serves and the process is not
        draining (as for :meth:`server_ready`); 404 errors if unknown."""
        ready = self.registry.get(name, version).ready
        return ready and not self.health.draining

    def model_metadata(self, name: str, version: str | None = None) -> VersionMetadata:
        """The version (default: the model's default) as metadata endpoints describe it."""
        entry = self.registry.get(name, version)
        info = entry.info
        versions = [v.version for v in self.registry.versions() if v.name == entry.name]
        metadata = VersionMetadata(
            entry.name,
            entry.version,
            versions,
            info.platform or platform_of(info.format),
            info.status,
            info.task,
            feature_names=info.feature_names,
        )
        if not isinstance(entry, LoadedVersion):
            return metadata
        return VersionMetadata(
            metadata.name,
            metadata.version,
            metadata.versions,
            metadata.platform,
            metadata.status,
            metadata.task,
            input_specs(entry.schema.n_features)
            if info.features is None
            else feature_input_specs(info.features),
            output_specs(entry.spec),
            metadata.feature_names,
            entry.spec.class_labels,
        )

    async def infer(
        self,
        decode: Decode,
        *,
        model: str | None = None,
        version: str | None = None,
        caller: str | None = None,
        top_k: int | None = None,
        reservation: Reservation | None = None,
    ) -> InferenceResult:
        """Resolve the version, build and check the batch, and compute its outputs.

        ``model``/``version`` default to the default model and the model's routing; ``caller``
        makes sticky routing stick; a ``top_k`` the answer will be formatted with is checked
        against the version (classifier, class count). Raises domain errors only; an error
        raised once the version is chosen names it (``ModelserveError.answered_by``).
        """
        started = time.perf_counter()
        if not self.health.accepting:
            raise ShuttingDownError()
        with self.registry.route(model, version, caller) as entry:
            try:
                check_top_k(entry.spec, top_k)
                decoded = decode(entry.schema)
                if not isinstance(decoded, np.ndarray):
                    decoded = await decoded
                batch = entry.schema.check(decoded)
                if (report := entry.schema.out_of_range(batch)) is not None:
                    entry.monitor.observe_out_of_range(report)
                if self.cache is None:
                    outputs = await entry.compute(batch, reservation)
                    cache_status = None
                else:
                    outputs, cache_status = await _compute_cached(
                        self.cache, entry, batch, reservation
                    )
            except Exception as exc:
                self._failed(entry, exc)
                raise
        elapsed = time.perf_counter() - started
        record_outputs(entry, outputs)
        self._answered(entry, batch, outputs, elapsed)
        return InferenceResult(
            entry.name, entry.version, outputs, entry.spec, elapsed * 1000, cache_status
        )

    def one_job(self, body_bytes: int) -> bool:
        """Whether a request of ``body_bytes`` is computed as one job (:meth:`infer_large`):
        a large body, and no prediction cache or one in this process (a remote cache's calls
        need the event loop)."""
        return body_bytes >= LARGE_BODY_BYTES and (self.cache is None or self.cache.is_local)

    async def infer_large(
        self,
        pipeline: Pipeline[_Parsed, _Answer],
        *,
        model: str | None = None,
        version: str | None = None,
        caller: str | None = None,
        top_k: int | None = None,
        reservation: Reservation | None = None,
    ) -> tuple[InferenceResult, _Answer]:
        """:meth:`infer` for a large request (:meth:`one_job`), as one job in the routed
        version's inference thread (:mod:`modelserve.inference.large`): the result, and the
        answer ``pipeline.encode`` serialised. Same errors, metrics and cache as :meth:`infer`;
        a request whose body is bad and whose model is unknown fails on its body first, as
        when the body was parsed before routing."""
        started = time.perf_counter()
        if not self.health.accepting:
            raise ShuttingDownError()
        try:
            routed = self.registry.route(model, version, caller)
        except ModelserveError:
            await asyncio.to_thread(pipeline.parse)
            raise
        with routed as entry:
            progress = Progress()
            job = functools.partial(run_job, pipeline, entry, self.cache, top_k, started, progress)
            try:
                rows = pipeline.estimate_rows(entry.schema)
                outcome = await entry.batcher.run_job(job, rows, reservation)
            except Exception as exc:
                if not progress.parse_failed:  # the body's own fault is not the version's
                    self._failed(entry, exc)
                raise
        if outcome.range_report is not None:
            entry.monitor.observe_out_of_range(outcome.range_report)
        if outcome.cache_counts is not None:
            hits, misses = outcome.cache_counts
            structlog.contextvars.bind_contextvars(
                cache=outcome.result.cache_status, cache_hits=hits, cache_misses=misses
            )
        self._answered(entry, outcome.batch, outcome.result.outputs, outcome.seconds)
        return outcome.result, outcome.answer

    def _answered(
        self, entry: LoadedVersion, batch: Batch, outputs: Outputs, seconds: float
    ) -> None:
        """What an answered request adds on the loop: the drift and latency windows, a shadow
        copy, and the log context."""
        labels, ids, names = outputs.labels, outputs.label_ids, outputs.label_names
        confidences = outputs.confidence_values()
        entry.monitor.observe(entry.schema.numeric(batch), seconds, labels, confidences, ids, names)
        self.shadow.mirror(entry, batch, outputs)
        structlog.contextvars.bind_contextvars(
            model=entry.name, model_version=entry.version, batch_size=len(batch)
        )

    @staticmethod
    def _failed(entry: LoadedVersion, exc: Exception) -> None:
        if isinstance(exc, ModelserveError):
            exc.answered_by(entry.name, entry.version)
            code, client_fault = exc.code, exc.kind.is_client_error
        else:
            code, client_fault = "internal_error", False
        metrics.record_failure(entry.name, entry.version, code)
        entry.monitor.observe_failure(code, client_fault=client_fault)

    def admit(
        self,
        rows: int,
        *,
        model: str | None = None,
        version: str | None = None,
        caller: str | None = None,
    ) -> Reservation | None:
        """Reserve about ``rows`` rows (counted before the body is parsed) in the queue of the
        version the request routes to, or raise the refusal :meth:`infer` would raise there
        (:meth:`DynamicBatcher.reserve`). Pass the reservation to :meth:`infer` and release it
        in a ``finally``. None when the request fails anyway (unknown model, say): left to
        :meth:`infer`."""
        if not self.health.accepting:
            raise ShuttingDownError()
        try:
            entry = self.registry.route(model, version, caller)
        except ModelserveError:
            return None
        try:
            return entry.batcher.reserve(rows)
        except ModelserveError as refusal:
            refusal.answered_by(entry.name, entry.version)
            metrics.record_failure(entry.name, entry.version, refusal.code)
            entry.monitor.observe_failure(refusal.code, client_fault=False)
            raise

    async def close(self, timeout_s: float) -> None:
        """At shutdown: cancel shadow copies, then drain every batcher within ``timeout_s``."""
        await self.shadow.close()  # shadow copies never delay a drain
        await self.registry.close(timeout_s)
        if self.cache is not None:
            await self.cache.close()


async def _compute_cached(
    cache: PredictionCache,
    entry: LoadedVersion,
    batch: Batch,
    reservation: Reservation | None,
) -> tuple[Outputs, str]:
    """Answer cached rows from the cache; only the missing rows go to the batcher."""
    lookup = await cache.lookup(entry.name, entry.version, entry.fingerprint, entry.spec, batch)
    computed = Outputs()
    if lookup.missing:
        missing = batch if not lookup.hits else batch[lookup.missing]
        computed = await entry.compute(missing, reservation)
    merged = await cache.complete(lookup, computed)
    status = lookup.status
    metrics.record_cache(entry.name, entry.version, lookup.hits, len(lookup.missing))
    structlog.contextvars.bind_contextvars(
        cache=status.value, cache_hits=lookup.hits, cache_misses=len(lookup.missing)
    )
    return merged, status.value
