"""ModelRegistry: every configured model version, its load state, and lookup by name/version."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np
import structlog

from modelserve.errors import (
    ModelLoadError,
    ModelNotFoundError,
    ModelNotReadyError,
    ShuttingDownError,
    VersionInUseError,
    VersionNotFoundError,
    VersionNotLoadedError,
)
from modelserve.inference.batcher import DynamicBatcher
from modelserve.inference.cache import artifact_fingerprint
from modelserve.inference.loader import declared_width, detect_format, load_runtime
from modelserve.inference.postprocess import OutputFormatter
from modelserve.inference.preprocess import FeatureSchema
from modelserve.inference.routing import VersionRouter
from modelserve.inference.runtimes.base import Runtime
from modelserve.inference.types import FloatArray, ModelInfo, ModelStatus, RawOutput
from modelserve.observability import metrics
from modelserve.observability.monitor import VersionMonitor
from modelserve.observability.profile import ReferenceProfile, load_profile
from modelserve.settings import ModelConfig, RoutingConfig, Settings, reread_pins

log = structlog.get_logger(__name__)
_STATUSES = tuple(s.value for s in ModelStatus)


@dataclass(eq=False)
class ModelVersion:
    """One served version: its config, state and, once loaded, everything to predict."""

    config: ModelConfig
    info: ModelInfo
    runtime: Runtime | None = None
    schema: FeatureSchema | None = None
    formatter: OutputFormatter | None = None
    batcher: DynamicBatcher | None = None
    fingerprint: str = ""
    """Identity of the loaded artifact and output config (prediction-cache keys use it)."""
    profile: ReferenceProfile | None = None
    """Reference profile for drift signals, when the config names one."""
    monitor: VersionMonitor | None = None
    """Latency and drift state of this version in this process, once it serves."""
    in_flight: int = 0
    """Requests using this version right now (see :meth:`acquire`)."""
    _drained: asyncio.Event | None = field(default=None, init=False, repr=False)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def version(self) -> str:
        return self.config.version

    @property
    def ready(self) -> bool:
        return self.info.status is ModelStatus.READY

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


def build_version(config: ModelConfig, *, require_sha256: bool) -> ModelVersion:
    """Load, check and warm up one version (blocking; call from a thread).

    ``require_sha256``: refuse unpinned files of formats that run code on load.
    """
    fmt = _format_name(config)
    info = ModelInfo(
        config.name, config.version, fmt, ModelStatus.LOADING, is_default=config.default
    )
    started = time.perf_counter()
    loaded = load_runtime(config, require_sha256=require_sha256)
    runtime = loaded.runtime
    load_s = time.perf_counter() - started
    meta = runtime.metadata
    n_features = config.n_features or meta.n_features or declared_width(config)
    if n_features is None:
        raise ModelLoadError("the model does not declare its input width; set n_features")
    if config.n_features and meta.n_features and config.n_features != meta.n_features:
        raise ModelLoadError(
            f"n_features is {config.n_features} but the model expects {meta.n_features}"
        )
    names = config.feature_names or meta.feature_names
    try:
        schema = FeatureSchema(n_features, names, config.feature_ranges)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from exc
    profile = None
    if config.profile is not None:
        try:
            profile = load_profile(config.profile)
            profile.check_fits(n_features, names)
        except ValueError as exc:
            raise ModelLoadError(str(exc)) from exc
    is_classifier = meta.is_classifier if config.task == "auto" else config.task == "classifier"
    labels = config.labels or meta.classes
    if config.labels and meta.classes and len(config.labels) != len(meta.classes):
        raise ModelLoadError(
            f"{len(config.labels)} labels configured for a model of {len(meta.classes)} classes"
        )
    formatter = OutputFormatter(
        is_classifier=is_classifier,
        labels=labels,
        classes=meta.classes,
        top_k=config.top_k,
        round_to=config.output_round,
        clip=config.output_clip,
    )
    started = time.perf_counter()
    _warm_up(runtime, formatter, _warmup_rows(config, schema), config.batching.max_batch_size)
    warmup_s = time.perf_counter() - started
    info.status = ModelStatus.READY
    info.task = "classifier" if is_classifier else "regressor"
    info.n_features, info.feature_names, info.labels = n_features, names, labels
    info.load_ms, info.warmup_ms = round(load_s * 1000, 3), round(warmup_s * 1000, 3)
    fingerprint = artifact_fingerprint(config, loaded.sha256)
    return ModelVersion(
        config, info, runtime, schema, formatter, fingerprint=fingerprint, profile=profile
    )


def _format_name(config: ModelConfig) -> str:
    try:
        return detect_format(config.path, config.format)
    except ModelLoadError:
        return config.format


def _warmup_rows(config: ModelConfig, schema: FeatureSchema) -> FloatArray:
    if config.warmup_input:
        try:
            return schema.to_array(config.warmup_input)
        except Exception as exc:
            raise ModelLoadError(f"warmup_input does not fit the model: {exc}") from exc
    row = np.zeros(schema.n_features)
    if config.feature_ranges and schema.feature_names:
        for name, (low, high) in config.feature_ranges.items():
            row[schema.feature_names.index(name)] = (low + high) / 2
    return row.reshape(1, -1)


def _warm_up(runtime: Runtime, formatter: OutputFormatter, rows: FloatArray, batch: int) -> None:
    """Run the model on one row and on a full batch, so the first real calls are not slow."""
    try:
        for sample in (rows[:1], np.resize(rows, (max(batch, 1), rows.shape[1]))):
            output = runtime.predict(sample)
            _check_label_count(output, formatter.labels)
            formatted = formatter.format(output)
            if len(formatted) != len(sample):
                raise ModelLoadError(f"model returned {len(formatted)} rows for {len(sample)}")
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"warm-up prediction failed: {type(exc).__name__}: {exc}") from exc


def _check_label_count(output: RawOutput, labels: list[str] | None) -> None:
    """Labels must match the probability columns, or some answers would fail or be misnamed."""
    width = None if output.probabilities is None else output.probabilities.shape[-1]
    if labels is not None and width is not None and width != len(labels):
        raise ModelLoadError(f"{len(labels)} labels configured for a model of {width} classes")


class ModelRegistry:
    """All configured versions, grouped by model name, in configuration order."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._models: dict[str, dict[str, ModelVersion]] = {}
        self._drift = settings.drift
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._closing = False
        for config in settings.models:
            info = ModelInfo(
                config.name,
                config.version,
                _format_name(config),
                ModelStatus.LOADING,
                is_default=config.default,
            )
            self._models.setdefault(config.name, {})[config.version] = ModelVersion(config, info)
        self.default_model = settings.default_model or next(iter(self._models), None)
        self.routers = {
            name: VersionRouter(
                _default_version(versions), settings.routing.get(name, RoutingConfig())
            )
            for name, versions in self._models.items()
        }
        for entry in self.versions():
            self._publish(entry)

    def versions(self) -> list[ModelVersion]:
        return [v for versions in self._models.values() for v in versions.values()]

    def names(self) -> list[str]:
        return list(self._models)

    def get(self, name: str | None, version: str | None = None) -> ModelVersion:
        """The named version, or the model's default; 404 for unknown names."""
        model = name or self.default_model
        if model is None or model not in self._models:
            raise ModelNotFoundError(model or "", self.names())
        versions = self._models[model]
        chosen = version or self.routers[model].default_version
        if chosen not in versions:
            raise VersionNotFoundError(model, chosen, list(versions))
        return versions[chosen]

    def route(self, name: str | None, version: str | None, caller: str | None) -> ModelVersion:
        """Pick the version for a request: explicit version, else the model's routing.

        A routed (not explicitly named) version that does not serve falls back to the default
        version, so a canary that failed to load never fails the requests routed to it.
        """
        model = name or self.default_model
        router = self.routers.get(model) if version is None and model is not None else None
        if router is None:
            entry = self.get(model, version)
        else:
            entry = self.get(model, router.choose(caller))
            if not entry.ready:
                entry = self.get(model, router.default_version)
        if not entry.ready:
            raise ModelNotReadyError(entry.name, entry.version, entry.info.reason or "loading")
        return entry

    def readiness(self) -> tuple[bool, list[str]]:
        """Ready when every required version is loaded and warmed; reasons otherwise."""
        reasons = [
            f"{v.name}:{v.version} is {v.info.status.value}"
            + (f" ({v.info.reason})" if v.info.reason else "")
            for v in self.versions()
            if v.config.required and not v.ready
        ]
        if not self._models:
            reasons.append("no models configured")
        return not reasons, reasons

    async def load_all(self, *, strict: bool) -> None:
        """Load every version in turn (off the event loop), then start its batcher.

        A failure is logged and leaves that version answering 503; with ``strict`` it raises.
        """
        for entry in self.versions():
            try:
                await self.load(entry.name, entry.version)
            except ModelLoadError:
                if strict:
                    raise

    async def load(self, name: str, version: str, *, reread: bool = False) -> ModelVersion:
        """(Re)load one version beside the current one and swap it in atomically on success.

        The artifact at the configured path loads and warms up in a thread while the current
        one keeps serving; one assignment then sends new requests to it, and the old one
        retires once the requests already using it have finished. On failure the previous
        artifact, if one was serving, keeps serving. ``reread`` first takes the sha256 pins
        from the configuration source again (:func:`~modelserve.settings.reread_pins`).
        """
        async with self._lock(name, version):
            current = self.get(name, version)
            return await self._swap_in(current, reread)

    async def _swap_in(self, current: ModelVersion, reread: bool) -> ModelVersion:
        name, version = current.name, current.version
        log.info("model_loading", model=name, model_version=version, path=str(current.config.path))
        try:
            # Re-read on the loop: load_settings is not thread-safe, and a YAML file is small.
            config = reread_pins(self._settings, current.config) if reread else current.config
            fresh = await asyncio.to_thread(
                build_version, config, require_sha256=self._settings.require_sha256
            )
        except Exception as exc:
            reason = (
                exc.detail if isinstance(exc, ModelLoadError) else f"{type(exc).__name__}: {exc}"
            )
            log.error("model_load_failed", model=name, model_version=version, reason=reason)
            if not current.ready:
                current.info.status, current.info.reason = ModelStatus.FAILED, reason
                self._publish(current)
            raise ModelLoadError(f"{name}:{version}: {reason}") from exc
        if self._closing:
            raise ShuttingDownError()
        fresh.batcher = DynamicBatcher(name, version, fresh.runtime.predict, fresh.config.batching)  # type: ignore[union-attr]
        fresh.batcher.start()
        fresh.monitor = VersionMonitor(
            name,
            version,
            n_features=fresh.info.n_features or 0,
            is_classifier=fresh.info.task == "classifier",
            profile=fresh.profile,
            settings=self._drift,
        )
        self._models[name][version] = fresh
        log.info(
            "model_loaded",
            model=name,
            model_version=version,
            format=fresh.info.format,
            n_features=fresh.info.n_features,
            load_ms=fresh.info.load_ms,
            warmup_ms=fresh.info.warmup_ms,
        )
        metrics.record_load(
            name, version, (fresh.info.load_ms or 0) / 1000, (fresh.info.warmup_ms or 0) / 1000
        )
        self._publish(fresh)
        await self._retire(current)
        return fresh

    async def unload(self, name: str, version: str) -> ModelVersion:
        """Stop serving a version (it answers 503 until loaded again).

        Refused while the model's routing names it (default, weighted or shadow version).
        """
        async with self._lock(name, version):
            current = self.get(name, version)
            role = self.routers[name].roles().get(version)
            if role is not None:
                raise VersionInUseError(name, version, role)
            unloaded = ModelVersion(
                current.config,
                ModelInfo(
                    name,
                    version,
                    current.info.format,
                    ModelStatus.UNLOADED,
                    "unloaded by admin",
                    is_default=current.config.default,
                ),
            )
            self._models[name][version] = unloaded
            self._publish(unloaded)
            log.info("model_unloaded", model=name, model_version=version)
            await self._retire(current)
            return unloaded

    def set_routing(
        self, name: str, config: RoutingConfig, default_version: str | None = None
    ) -> VersionRouter:
        """Replace a model's routing in one assignment, once every version it names serves."""
        if name not in self._models:
            raise ModelNotFoundError(name, self.names())
        versions = self._models[name]
        router = VersionRouter(default_version or self.routers[name].default_version, config)
        for version in router.roles():
            if version not in versions:
                raise VersionNotFoundError(name, version, list(versions))
            if not versions[version].ready:
                status = versions[version].info.status.value
                raise VersionNotLoadedError(name, version, status)
        self.routers[name] = router
        log.info(
            "routing_changed",
            model=name,
            default_version=router.default_version,
            weights=config.weights,
            sticky=config.sticky,
            shadow=config.shadow,
        )
        return router

    async def _retire(self, old: ModelVersion) -> None:
        """Stop ``old`` once the requests already using it finish (within its timeout)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + old.config.batching.timeout_ms / 1000
        if not await old.wait_released(old.config.batching.timeout_ms / 1000):
            log.warning(
                "retire_timed_out", model=old.name, model_version=old.version, left=old.in_flight
            )
        if old.batcher is not None:
            await old.batcher.close(max(deadline - loop.time(), 0.0))

    def _lock(self, name: str, version: str) -> asyncio.Lock:
        """One load/unload at a time per version (a routing change needs none: it never waits)."""
        return self._locks.setdefault((name, version), asyncio.Lock())

    async def close(self, timeout_s: float) -> None:
        """Drain every batcher (queued work finishes) within ``timeout_s`` in total."""
        self._closing = True
        batchers = [v.batcher for v in self.versions() if v.batcher is not None]
        await asyncio.gather(*(b.close(timeout_s) for b in batchers))

    def _publish(self, entry: ModelVersion) -> None:
        metrics.record_model_state(
            entry.name, entry.version, entry.info.format, entry.info.status.value, _STATUSES
        )


def _default_version(versions: dict[str, ModelVersion]) -> str:
    for version, entry in versions.items():
        if entry.config.default:
            return version
    return next(iter(versions))
