"""What a repository action tells the rest of the service, and what the service answers.

A :class:`ControlAction` describes one admin change (routing, load, reload, unload) or a new
configuration file, after it succeeded in the process that received it; a
:class:`Coordinator` records it as the new desired state of every process and says how far
the others got (:class:`FleetStatus`). The implementation (Redis or a shared file, and the
reconciler) is :mod:`modelserve.control`; this module holds only the types, so the inference
layer depends on no storage.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from modelserve.settings import RoutingConfig

VersionVerb = Literal["load", "reload", "unload"]


@dataclass(frozen=True, slots=True)
class RoutingAction:
    """A model's routing was replaced (default version and the rest of its routing)."""

    model: str
    default_version: str
    config: RoutingConfig


@dataclass(frozen=True, slots=True)
class VersionAction:
    """A version was loaded, reloaded (a fresh artifact from its path) or unloaded."""

    model: str
    version: str
    verb: VersionVerb


@dataclass(frozen=True, slots=True)
class ConfigAction:
    """The process serves a new configuration file (content digest ``config_sha256``): its
    models and routing replace every admin change (reload generations carry on)."""

    config_sha256: str


ControlAction = RoutingAction | VersionAction | ConfigAction


@dataclass(frozen=True, slots=True)
class ProcessStatus:
    """Where one process of the service stands against a state version."""

    process: str
    applied_version: int
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class FleetStatus:
    """How many processes applied state ``version``; the ones that did not, and why."""

    version: int
    processes: int
    applied: int
    failed: list[ProcessStatus]
    """Processes that tried this version (or a later one) and could not apply all of it."""
    pending: list[ProcessStatus]
    """Processes that have not reached this version yet (they converge later)."""


class Coordinator(Protocol):
    """Records repository actions as the desired state of every process (see the module)."""

    def exclusive(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Held around an action and its recording, so the reconciler never interleaves."""
        ...

    async def record(self, action: ControlAction) -> int:
        """Write ``action`` into the desired state; the new state version."""
        ...

    async def fleet(self, version: int) -> FleetStatus:
        """Wait (bounded) for the other processes to apply ``version``; where they stand."""
        ...


class LocalOnly:
    """No coordination: every action concerns this process alone (a bare registry, tests)."""

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        yield

    async def record(self, action: ControlAction) -> int:
        return 0

    async def fleet(self, version: int) -> FleetStatus:
        return FleetStatus(version, processes=1, applied=1, failed=[], pending=[])
