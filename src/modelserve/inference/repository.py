"""Repository operations every transport offers: index, load, reload, unload, routing.

Artifacts always come from the path configured for the version: no caller can name a file.
A load or reload that fails raises :class:`~modelserve.errors.ModelLoadError` with the reason,
and whatever was serving keeps serving. Every action is logged once, here
(``admin_action_completed`` or ``admin_action_failed``), with the caller's key name.

An action first succeeds in the process that runs it (a failure there changes nothing
anywhere), then its :class:`~modelserve.inference.coordination.Coordinator` records it as the
desired state of every process of the service, and the answer says how many processes have
applied it (:class:`~modelserve.inference.coordination.FleetStatus`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import structlog

from modelserve.errors import ModelserveError
from modelserve.inference.coordination import (
    ControlAction,
    Coordinator,
    FleetStatus,
    LocalOnly,
    RoutingAction,
    VersionAction,
)
from modelserve.inference.registry import ModelRegistry
from modelserve.inference.types import ModelInfo
from modelserve.inference.version import LoadedVersion
from modelserve.settings import RoutingConfig

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class VersionState:
    """One configured version as the repository index shows it, with its routing role."""

    info: ModelInfo
    is_default: bool
    traffic_share: float
    """Fraction (0 to 1) of the requests naming no version that this version receives."""
    shadow: bool


@dataclass(frozen=True, slots=True)
class VersionChange:
    """The outcome of a load, reload or unload: the version's state now, and whether it moved."""

    info: ModelInfo
    changed: bool
    fleet: FleetStatus | None = None
    """How many processes of the service applied the change (None: not a change)."""


@dataclass(frozen=True, slots=True)
class RoutingState:
    """The routing that requests naming no version follow now."""

    model: str
    default_version: str
    config: RoutingConfig
    traffic_share: dict[str, float]
    """Share (0 to 1) of each version that receives traffic."""
    fleet: FleetStatus | None = None
    """How many processes of the service applied the change (None: a read)."""


class ModelRepository:
    """Repository operations over one process's registry (see the module docstring)."""

    def __init__(self, registry: ModelRegistry, coordinator: Coordinator | None = None) -> None:
        self._registry = registry
        self.coordinator: Coordinator = coordinator or LocalOnly()

    @property
    def default_model(self) -> str | None:
        return self._registry.default_model

    def index(self) -> list[VersionState]:
        """Every configured version, in configuration order."""
        routers = self._registry.routers
        return [
            VersionState(
                v.info,
                is_default=v.version == routers[v.name].default_version,
                traffic_share=routers[v.name].share(v.version),
                shadow=v.version == routers[v.name].shadow,
            )
            for v in self._registry.versions()
        ]

    async def load(self, name: str, version: str, caller: str | None = None) -> VersionChange:
        """Load a version that does not serve, re-reading its sha256 pins; a serving version
        is left as it is (``changed`` false)."""
        with _audit("load", name, caller, model_version=version):
            async with self.coordinator.exclusive():
                entry = self._registry.get(name, version)
                changed = not entry.ready
                if changed:
                    entry = await self._registry.load(name, version, reread=True)
                state = await self.coordinator.record(VersionAction(name, version, "load"))
        return VersionChange(entry.info, changed, await self.coordinator.fleet(state))

    async def reload(self, name: str, version: str, caller: str | None = None) -> VersionChange:
        """Re-read the version's pins and path and swap the new artifact in atomically.

        ``changed`` is false when the new artifact is the one that was serving (same bytes and
        output settings: the same fingerprint).
        """
        with _audit("reload", name, caller, model_version=version):
            async with self.coordinator.exclusive():
                before = self._registry.get(name, version)
                loaded = await self._registry.load(name, version, reread=True)
                state = await self.coordinator.record(VersionAction(name, version, "reload"))
        unchanged = isinstance(before, LoadedVersion) and before.fingerprint == loaded.fingerprint
        return VersionChange(loaded.info, not unchanged, await self.coordinator.fleet(state))

    async def unload(self, name: str, version: str, caller: str | None = None) -> VersionChange:
        """Stop serving a version once its requests in flight finish (refused while routed)."""
        with _audit("unload", name, caller, model_version=version):
            async with self.coordinator.exclusive():
                was_ready = self._registry.get(name, version).ready
                entry = await self._registry.unload(name, version)
                state = await self.coordinator.record(VersionAction(name, version, "unload"))
        return VersionChange(entry.info, was_ready, await self.coordinator.fleet(state))

    def routing(self, name: str, fleet: FleetStatus | None = None) -> RoutingState:
        """The model's routing now (404 for an unknown model)."""
        self._registry.get(name)
        router = self._registry.routers[name]
        versions = [v.version for v in self._registry.versions() if v.name == name]
        return RoutingState(
            name,
            router.default_version,
            router.config,
            {v: router.share(v) for v in versions if router.share(v) > 0},
            fleet,
        )

    async def set_routing(
        self,
        name: str,
        config: RoutingConfig,
        default_version: str | None = None,
        caller: str | None = None,
    ) -> RoutingState:
        """Replace the model's routing in one assignment, once every version it names serves."""
        fields = config.model_dump(exclude_none=True)
        if default_version is not None:
            fields["default"] = default_version
        with _audit("set_routing", name, caller, **fields):
            async with self.coordinator.exclusive():
                router = self._registry.set_routing(name, config, default_version)
                action: ControlAction = RoutingAction(name, router.default_version, router.config)
                state = await self.coordinator.record(action)
        return self.routing(name, await self.coordinator.fleet(state))


@contextlib.contextmanager
def _audit(action: str, model: str, caller: str | None, **fields: Any) -> Iterator[None]:
    """Log the outcome of one repository action, with who asked."""
    try:
        yield
    except ModelserveError as exc:
        log.warning(
            "admin_action_failed",
            action=action,
            model=model,
            caller=caller,
            code=exc.code,
            detail=exc.detail,
            **fields,
        )
        raise
    log.info("admin_action_completed", action=action, model=model, caller=caller, **fields)
