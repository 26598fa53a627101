"""A configured model version, and what loading it produces.

:class:`ModelVersion` is any configured version: its config and public state. A version that
serves is a :class:`LoadedVersion`, whose parts (runtime, schema, postprocessor, batcher,
monitor) always exist: code holding one never checks for ``None``. :func:`build_version`
loads, checks and warms up an artifact (blocking; ``modelserve check`` and ``profile`` use it
too) into a :class:`PreparedVersion`; the registry then gives it a batcher and a monitor.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

import numpy as np

from modelserve.errors import InvalidInputError, ModelLoadError
from modelserve.inference.batcher import DynamicBatcher
from modelserve.inference.cache import artifact_fingerprint
from modelserve.inference.formatting import check_top_k
from modelserve.inference.loader import (
    LoadedRuntime,
    declared_width,
    detect_format,
    load_runtime,
)
from modelserve.inference.model_process import ProcessRuntime
from modelserve.inference.postprocess import Postprocessor
from modelserve.inference.preprocess import FeatureSchema, integer_columns
from modelserve.inference.row_queue import Reservation
from modelserve.inference.runtimes.base import Runtime
from modelserve.inference.typed import FrameRuntime, TypedFeatureSchema, model_call, typed_features
from modelserve.inference.types import Batch, ModelInfo, ModelStatus, Outputs, OutputSpec, RawOutput
from modelserve.observability import metrics
from modelserve.observability.monitor import VersionMonitor
from modelserve.observability.profile import ReferenceProfile, load_profile
from modelserve.settings import DriftSettings, ModelConfig

MODEL_STATUSES = tuple(s.value for s in ModelStatus)
"""Every status, for the model-state metric (one series per status)."""


@dataclass(eq=False)
class ModelVersion:
    """One configured version and its public state; loading it gives a :class:`LoadedVersion`."""

    config: ModelConfig
    info: ModelInfo

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def version(self) -> str:
        return self.config.version

    @property
    def ready(self) -> bool:
        return self.info.status is ModelStatus.READY


@dataclass(frozen=True, eq=False)
class PreparedVersion:
    """A loaded, checked and warmed-up model: everything to predict except its batcher."""

    config: ModelConfig
    info: ModelInfo
    runtime: Runtime
    schema: FeatureSchema
    postprocessor: Postprocessor
    spec: OutputSpec
    fingerprint: str
    """Identity of the loaded artifact and output config (prediction-cache keys use it)."""
    profile: ReferenceProfile | None
    """Reference profile for drift signals, when the config names one."""

    @property
    def model_call(self) -> Callable[[Batch], RawOutput]:
        """The batch → raw output call (see :func:`~modelserve.inference.typed.model_call`)."""
        return model_call(self.runtime)

    def close(self) -> None:
        """Release what the runtime holds outside this process (its model processes)."""
        if isinstance(self.runtime, ProcessRuntime):
            self.runtime.close()


@dataclass(eq=False)
class LoadedVersion(ModelVersion):
    """A version that serves. Use it as a context manager around a request (see acquire)."""

    prepared: PreparedVersion
    batcher: DynamicBatcher
    monitor: VersionMonitor
    """Latency and drift state of this version in this process."""
    in_flight: int = 0
    """Requests using this version right now (see :meth:`acquire`)."""
    _drained: asyncio.Event | None = field(default=None, init=False, repr=False)

    @classmethod
    def serve(cls, prepared: PreparedVersion, drift: DriftSettings) -> LoadedVersion:
        """Give ``prepared`` its batcher and monitor (on the event loop)."""
        name, version = prepared.config.name, prepared.config.version
        batcher = DynamicBatcher(name, version, prepared.model_call, prepared.config.batching)
        monitor = VersionMonitor(
            name,
            version,
            n_features=prepared.schema.n_features,
            is_classifier=prepared.spec.is_classifier,
            profile=prepared.profile,
            settings=drift,
        )
        if isinstance(prepared.runtime, ProcessRuntime):
            prepared.runtime.set_listener(functools.partial(_on_availability, prepared.info))
        return cls(prepared.config, prepared.info, prepared, batcher, monitor)

    @property
    def schema(self) -> FeatureSchema:
        return self.prepared.schema

    @property
    def spec(self) -> OutputSpec:
        return self.prepared.spec

    @property
    def fingerprint(self) -> str:
        return self.prepared.fingerprint

    @property
    def profile(self) -> ReferenceProfile | None:
        return self.prepared.profile

    async def compute(self, batch: Batch, reservation: Reservation | None = None) -> Outputs:
        """batch → predict → unbatch → postprocess for a validated batch (no cache, no metrics);
        ``reservation``: the rows were admitted before they were parsed."""
        return self.prepared.postprocessor.apply(await self.batcher.submit(batch, reservation))

    def acquire(self) -> None:
        """A request starts using this version; pair with :meth:`release` in a ``finally``.

        A reload or unload retires the replaced version only once every holder has released
        it, so requests routed before the swap finish on the artifact they started with.
        """
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self._drained is not None:
            self._drained.set()

    def __enter__(self) -> LoadedVersion:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    async def wait_released(self, timeout_s: float) -> bool:
        """Wait until no request holds this version; False if some still do at the timeout."""
        if self.in_flight == 0:
            return True
        self._drained = asyncio.Event()
        try:
            await asyncio.wait_for(self._drained.wait(), timeout_s)
        except TimeoutError:
            return False
        return True


def _on_availability(info: ModelInfo, reason: str | None) -> None:
    """A served version's model processes stopped answering (``reason``) or are back."""
    info.status, info.reason = (
        (ModelStatus.READY, None)
        if reason is None
        else (
            ModelStatus.LOADING,
            reason,
        )
    )
    metrics.record_model_state(
        info.name, info.version, info.format, info.status.value, MODEL_STATUSES
    )


def format_name(config: ModelConfig) -> str:
    """The version's format: configured, or detected from the file name."""
    try:
        return detect_format(config.path, config.format)
    except ModelLoadError:
        return config.format


def build_version(config: ModelConfig, *, require_sha256: bool) -> PreparedVersion:
    """Load, check and warm up one version (blocking; call from a thread).

    ``require_sha256``: refuse unpinned files of formats that run code on load.
    """
    info = ModelInfo(
        config.name,
        config.version,
        format_name(config),
        ModelStatus.LOADING,
        is_default=config.default,
    )
    started = time.perf_counter()
    loaded = load_runtime(config, require_sha256=require_sha256)
    load_s = time.perf_counter() - started
    try:
        return _prepare(config, info, loaded, load_s)
    except BaseException:
        if isinstance(loaded.runtime, ProcessRuntime):
            loaded.runtime.close()
        raise


def _prepare(
    config: ModelConfig, info: ModelInfo, loaded: LoadedRuntime, load_s: float
) -> PreparedVersion:
    """Check and warm up a loaded runtime (see :func:`build_version`)."""
    runtime = loaded.runtime
    meta = runtime.metadata
    n_features = config.n_features or meta.n_features or declared_width(config)
    if n_features is None:
        raise ModelLoadError("the model does not declare its input width; set n_features")
    if config.n_features and meta.n_features and config.n_features != meta.n_features:
        raise ModelLoadError(
            f"n_features is {config.n_features} but the model expects {meta.n_features}"
        )
    names = config.feature_names or meta.feature_names
    features = typed_features(config, meta)
    if features is not None:
        n_features, names = len(features), [f.name for f in features]
    profile = None
    if config.profile is not None:
        try:
            profile = load_profile(config.profile)
            profile.check_fits(n_features, names)
        except ValueError as exc:
            raise ModelLoadError(str(exc)) from exc
    schema: FeatureSchema
    try:
        if features is not None:
            # Chosen once here: versions without typed features keep the float path as is.
            schema = TypedFeatureSchema(features, profile)
            runtime = FrameRuntime(runtime, schema)
        else:
            schema = FeatureSchema(
                n_features,
                names,
                config.feature_ranges,
                integer_columns=integer_columns(meta.feature_types),
            )
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from exc
    is_classifier = meta.is_classifier if config.task == "auto" else config.task == "classifier"
    labels = config.labels or meta.classes
    if config.labels and meta.classes and len(config.labels) != len(meta.classes):
        raise ModelLoadError(
            f"{len(config.labels)} labels configured for a model of {len(meta.classes)} classes"
        )
    postprocessor = Postprocessor(
        is_classifier=is_classifier,
        labels=labels,
        classes=meta.classes,
        round_to=config.output_round,
        clip=config.output_clip,
    )
    started = time.perf_counter()
    outputs = _warm_up(
        runtime, postprocessor, _warmup_rows(config, schema), config.batching.max_batch_size
    )
    warmup_s = time.perf_counter() - started
    spec = _output_spec(outputs, postprocessor, config.top_k)
    try:
        check_top_k(spec, config.top_k)
    except InvalidInputError as exc:
        raise ModelLoadError(f"top_k: {exc.detail}") from exc
    info.status = ModelStatus.READY
    info.task = "classifier" if spec.is_classifier else "regressor"
    info.n_features, info.feature_names, info.labels = n_features, names, labels
    info.platform, info.feature_types = meta.platform, meta.feature_types
    info.features = features
    info.load_ms, info.warmup_ms = round(load_s * 1000, 3), round(warmup_s * 1000, 3)
    return PreparedVersion(
        config,
        info,
        runtime,
        schema,
        postprocessor,
        spec,
        fingerprint=artifact_fingerprint(config, loaded.sha256),
        profile=profile,
    )


def _output_spec(outputs: Outputs, postprocessor: Postprocessor, top_k: int | None) -> OutputSpec:
    probabilities = outputs.probabilities
    class_labels = (
        None if probabilities is None else postprocessor.column_labels(probabilities.shape[1])
    )
    values = outputs.values
    width = values.shape[1] if values is not None and values.ndim > 1 else None
    n_classes = None if probabilities is None else probabilities.shape[1]
    return OutputSpec(
        is_classifier=postprocessor.is_classifier,
        class_labels=class_labels,
        value_width=width,
        default_top_k=top_k,
        answer_labels=postprocessor.answer_labels(n_classes)
        if postprocessor.is_classifier
        else None,
    )


def _warmup_rows(config: ModelConfig, schema: FeatureSchema) -> Batch:
    if config.warmup_input:
        try:
            return schema.to_array(config.warmup_input)
        except Exception as exc:
            raise ModelLoadError(f"warmup_input does not fit the model: {exc}") from exc
    if isinstance(schema, TypedFeatureSchema):
        return schema.to_array(schema.example_rows())
    row = np.zeros(schema.n_features)
    if config.feature_ranges and schema.feature_names:
        for name, (low, high) in config.feature_ranges.items():
            row[schema.feature_names.index(name)] = (low + high) / 2
    return row.reshape(1, -1)


def _warm_up(runtime: Runtime, postprocessor: Postprocessor, rows: Batch, batch: int) -> Outputs:
    """Run the model on one row and on a full batch, so the first real calls are not slow.

    Returns the full batch's outputs, from which the version's output spec is learnt.
    """
    # Every model process answers the warm-up, not only the one this thread calls.
    predict = runtime.warm_up if isinstance(runtime, ProcessRuntime) else model_call(runtime)
    try:
        outputs = Outputs()
        full = rows[np.arange(max(batch, 1)) % len(rows)]  # the rows repeated, in order
        for sample in (rows[:1], full):
            raw = predict(sample)
            width = None if raw.probabilities is None else raw.probabilities.shape[-1]
            labels = postprocessor.labels
            if labels is not None and width is not None and width != len(labels):
                # Labels must match the probability columns, or answers would be misnamed.
                raise ModelLoadError(
                    f"{len(labels)} labels configured for a model of {width} classes"
                )
            outputs = postprocessor.apply(raw)
            if len(outputs) != len(sample):
                raise ModelLoadError(f"model returned {len(outputs)} rows for {len(sample)}")
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"warm-up prediction failed: {type(exc).__name__}: {exc}") from exc
    return outputs
