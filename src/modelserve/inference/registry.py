"""ModelRegistry: every configured model version, its load state, lookup, and the swap protocol.

A version is a :class:`~modelserve.inference.version.ModelVersion` until it serves, then a
:class:`~modelserve.inference.version.LoadedVersion`; :meth:`ModelRegistry.route` only ever
returns the latter.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar, cast

import structlog

from modelserve.errors import (
    ModelLoadError,
    ModelNotFoundError,
    ModelNotReadyError,
    ShuttingDownError,
    StartupFailedError,
    VersionInUseError,
    VersionNotFoundError,
    VersionNotLoadedError,
)
from modelserve.inference.routing import VersionRouter
from modelserve.inference.types import ModelInfo, ModelStatus
from modelserve.inference.version import (
    MODEL_STATUSES,
    LoadedVersion,
    ModelVersion,
    build_version,
    format_name,
)
from modelserve.observability import metrics
from modelserve.settings import ModelConfig, RoutingConfig, Settings, reread_pins

if TYPE_CHECKING:
    from modelserve.inference.reconfigure import StagedConfig

log = structlog.get_logger(__name__)
T = TypeVar("T")


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
                format_name(config),
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

    @property
    def settings(self) -> Settings:
        """The settings served now (a configuration reload replaces them)."""
        return self._settings

    def versions(self) -> list[ModelVersion]:
        return [v for versions in self._models.values() for v in versions.values()]

    def loaded(self) -> list[LoadedVersion]:
        """The versions that serve now."""
        return [v for v in self.versions() if isinstance(v, LoadedVersion)]

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

    def route(self, name: str | None, version: str | None, caller: str | None) -> LoadedVersion:
        """Pick the version for a request: explicit version, else the model's routing.

        A routed (not explicitly named) version that does not serve falls back to the default
        version, so a canary that failed to load never fails the requests routed to it.
        """
        model = name or self.default_model
        router = self.routers.get(model) if version is None and model is not None else None
        if router is None:
            entry = self.get(model, version)
        else:
            if caller is None and router.needs_caller:
                metrics.record_sticky_without_caller(str(model))
            entry = self.get(model, router.choose(caller))
            if not entry.ready:
                entry = self.get(model, router.default_version)
        if not isinstance(entry, LoadedVersion):
            raise ModelNotReadyError(entry.name, entry.version, entry.info.reason or "loading")
        return entry

    def readiness(self) -> tuple[bool, list[str]]:
        """Ready when every required version is loaded and warmed; which are not otherwise.

        Only names and statuses: the open probes show these, while a failure's reason (which
        can name files) stays in the log and in ``ModelInfo.reason``.
        """
        reasons = [
            f"{v.name}:{v.version} is {v.info.status.value}"
            for v in self.versions()
            if v.config.required and not v.ready
        ]
        if not self._models:
            reasons.append("no models configured")
        return not reasons, reasons

    async def load_all(self, *, strict: bool) -> None:
        """Load every version in turn (off the event loop), then start its batcher.

        A failure is logged and leaves that version answering 503; with ``strict`` every
        version is still tried, then one StartupFailedError lists each failure.
        """
        failures = []
        for entry in self.versions():
            try:
                await self.load(entry.name, entry.version)
            except ModelLoadError as exc:
                failures.append(exc.detail)
        if strict and failures:
            raise StartupFailedError(failures)

    async def load(self, name: str, version: str, *, reread: bool = False) -> LoadedVersion:
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

    async def _swap_in(self, current: ModelVersion, reread: bool) -> LoadedVersion:
        name, version = current.name, current.version
        log.info("model_loading", model=name, model_version=version, path=str(current.config.path))
        try:
            # Re-read on the loop: load_settings is not thread-safe, and a YAML file is small.
            config = reread_pins(self._settings, current.config) if reread else current.config
            build = functools.partial(
                build_version, config, require_sha256=self._settings.require_sha256
            )
            prepared = await asyncio.wait_for(in_daemon_thread(build), config.load_timeout_s)
        except Exception as exc:
            reason = load_failure(exc, config)
            log.error("model_load_failed", model=name, model_version=version, reason=reason)
            log.debug("model_load_traceback", model=name, model_version=version, exc_info=exc)
            if not current.ready:
                current.info.status, current.info.reason = ModelStatus.FAILED, reason
                self._publish(current)
            raise ModelLoadError(f"{name}:{version}: {reason}") from exc
        if self._closing:
            raise ShuttingDownError()
        fresh = LoadedVersion.serve(prepared, self._drift)
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

    def configured_routing(self, name: str) -> tuple[str, RoutingConfig]:
        """The default version and routing the configuration gives ``name``."""
        return (
            _default_version(self._models[name]),
            self._settings.routing.get(name, RoutingConfig()),
        )

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

    async def commit(self, staged: StagedConfig) -> None:
        """Serve ``staged`` (see :mod:`~modelserve.inference.reconfigure`): its built versions
        swap in, every model's routing is replaced, and the versions it drops drain."""
        new = staged.settings
        replaced: list[ModelVersion] = []
        models: dict[str, dict[str, ModelVersion]] = {}
        for config in new.models:
            key = (config.name, config.version)
            prepared = staged.built.get(key)
            current = self._models.get(config.name, {}).get(config.version)
            entry: ModelVersion
            if prepared is None:  # unchanged: what serves now (an admin reload may be newer)
                entry = current if current is not None else staged.kept[key]
            else:
                if current is not None:
                    replaced.append(current)
                entry = LoadedVersion.serve(prepared, new.drift)
                metrics.record_load(
                    *key, (entry.info.load_ms or 0) / 1000, (entry.info.warmup_ms or 0) / 1000
                )
                self._publish(entry)
            models.setdefault(config.name, {})[config.version] = entry
        dropped = [self._models[name][version] for name, version in staged.removed]
        self._settings, self._drift = new, new.drift
        self._models = models
        self.default_model = new.default_model or next(iter(models), None)
        self.routers = {
            name: VersionRouter(_default_version(versions), new.routing.get(name, RoutingConfig()))
            for name, versions in models.items()
        }
        for old in replaced + dropped:
            await self._retire(old)
        for old in dropped:
            self._locks.pop((old.name, old.version), None)

    async def _retire(self, old: ModelVersion) -> None:
        """Stop ``old`` once the requests already using it finish (within its timeout)."""
        if not isinstance(old, LoadedVersion):
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + old.config.batching.timeout_ms / 1000
        if not await old.wait_released(old.config.batching.timeout_ms / 1000):
            log.warning(
                "retire_timed_out", model=old.name, model_version=old.version, left=old.in_flight
            )
        await old.batcher.close(max(deadline - loop.time(), 0.0))
        old.prepared.close()

    def _lock(self, name: str, version: str) -> asyncio.Lock:
        """One load/unload at a time per version (a routing change needs none: it never waits)."""
        self.get(name, version)  # unknown names raise here, before they get a lock entry
        return self._locks.setdefault((name, version), asyncio.Lock())

    async def close(self, timeout_s: float) -> None:
        """Drain every batcher (queued work finishes) within ``timeout_s`` in total."""
        self._closing = True
        loaded = self.loaded()
        await asyncio.gather(*(v.batcher.close(timeout_s) for v in loaded))
        for version in loaded:
            version.prepared.close()  # after the drain: queued batches were computed

    def _publish(self, entry: ModelVersion) -> None:
        metrics.record_model_state(
            entry.name, entry.version, entry.info.format, entry.info.status.value, MODEL_STATUSES
        )


def _default_version(versions: dict[str, ModelVersion]) -> str:
    for version, entry in versions.items():
        if entry.config.default:
            return version
    return next(iter(versions))


def load_failure(exc: Exception, config: ModelConfig) -> str:
    """The reason a load failed, as /ready, /models and the log say it."""
    if isinstance(exc, TimeoutError):
        # The loading thread cannot be stopped; whatever it builds is never used.
        return (
            f"load and warm-up did not finish within load_timeout_s ({config.load_timeout_s:g} s)"
        )
    if isinstance(exc, ModelLoadError):
        return exc.detail
    return f"{type(exc).__name__}: {exc}"


def in_daemon_thread(work: Callable[[], T]) -> asyncio.Future[T]:
    """Run ``work`` in a thread of its own that never delays the process's exit.

    A load past its timeout cannot be stopped; in the default executor its thread would be
    joined at shutdown, and a SIGTERM would wait for a load nobody needs any more.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return  # timed out and abandoned
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(cast(T, result))

    def run() -> None:
        try:
            outcome: tuple[T | None, BaseException | None] = (work(), None)
        except BaseException as exc:  # handed to the awaiting coroutine
            outcome = (None, exc)
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=run, name="model-load", daemon=True).start()
    return future
