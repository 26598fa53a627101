"""Bring one process's registry to a desired state: loads first, then routing, then unloads.

New or reloaded versions load and warm up beside what serves before any routing names them;
the routing of each model is then replaced in one assignment; versions to unload go last,
once no routing names them. What cannot be applied here (a load that fails, a model this
process's configuration does not list) is returned as a reason and the rest is still
applied: the process reports it, so the state shows which processes differ.
"""

from __future__ import annotations

from modelserve.control.state import DesiredState, ModelIntent, VersionIntent
from modelserve.errors import ModelserveError
from modelserve.inference.registry import ModelRegistry

Generations = dict[tuple[str, str], int]
"""Per version, the reload generation this process's artifact corresponds to."""


async def apply_state(
    registry: ModelRegistry, state: DesiredState, generations: Generations
) -> list[str]:
    """Apply ``state`` (idempotent); the reasons for what could not be applied."""
    problems = [
        f"{name}: not configured in this process"
        for name in state.models
        if name not in registry.names()
    ]
    for name in registry.names():
        intent = state.models.get(name, ModelIntent())
        configured = {v.version for v in registry.versions() if v.name == name}
        problems += [
            f"{name}:{version}: not configured in this process"
            for version in intent.versions
            if version not in configured
        ]
        problems += await _load(registry, name, intent, generations)
        problems += _route(registry, name, intent)
        problems += await _unload(registry, name, intent, configured)
    return problems


async def _load(
    registry: ModelRegistry, name: str, intent: ModelIntent, generations: Generations
) -> list[str]:
    problems = []
    for entry in [v for v in registry.versions() if v.name == name]:
        wanted = intent.versions.get(entry.version)
        key = (name, entry.version)
        generation = (wanted or VersionIntent()).reload_generation
        if wanted is not None and not wanted.loaded:
            continue
        if entry.ready and key not in generations:
            # Loaded at start-up from the configured path: the latest artifact there is.
            generations[key] = generation
            continue
        # A version that did not load at start-up is retried only when a change names it.
        stale = entry.ready and generation > generations[key]
        if stale or (not entry.ready and wanted is not None):
            try:
                await registry.load(name, entry.version, reread=True)
            except ModelserveError as exc:
                problems.append(f"{name}:{entry.version}: {exc.detail}")
                continue
            generations[key] = generation
    return problems


def _route(registry: ModelRegistry, name: str, intent: ModelIntent) -> list[str]:
    default, routing = registry.configured_routing(name)
    default = intent.default_version or default
    routing = intent.routing or routing
    router = registry.routers[name]
    if router.default_version == default and router.config == routing:
        return []
    try:
        registry.set_routing(name, routing, default)
    except ModelserveError as exc:
        return [f"{name}: routing not applied: {exc.detail}"]
    return []


async def _unload(
    registry: ModelRegistry, name: str, intent: ModelIntent, configured: set[str]
) -> list[str]:
    problems = []
    for version, wanted in intent.versions.items():
        if wanted.loaded or version not in configured:
            continue
        try:
            if registry.get(name, version).ready:
                await registry.unload(name, version)
        except ModelserveError as exc:
            problems.append(f"{name}:{version}: unload not applied: {exc.detail}")
    return problems
