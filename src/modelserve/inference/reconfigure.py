"""A new configuration for a running registry: stage every new or changed version, then commit.

:func:`stage` loads and warms up (in threads, beside what serves) every version the new
settings add or change; if any fails, nothing was changed and :class:`ModelLoadError` lists
the failures. :meth:`ModelRegistry.commit <modelserve.inference.registry.ModelRegistry.commit>`
then swaps them in, replaces every model's routing in one assignment each, and drains the
versions the new settings no longer list.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field

import structlog

from modelserve.errors import ModelLoadError
from modelserve.inference.registry import ModelRegistry, in_daemon_thread, load_failure
from modelserve.inference.version import ModelVersion, PreparedVersion, build_version
from modelserve.settings import Settings

log = structlog.get_logger(__name__)

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class StagedConfig:
    """New settings and the versions built for them, ready to commit."""

    settings: Settings
    built: dict[Key, PreparedVersion]
    kept: dict[Key, ModelVersion] = field(default_factory=dict)
    """The versions ``settings`` lists unchanged, as they served when staged."""
    added: list[Key] = field(default_factory=list)
    changed: list[Key] = field(default_factory=list)
    removed: list[Key] = field(default_factory=list)

    @property
    def touches_models(self) -> bool:
        return bool(self.added or self.changed or self.removed)


async def stage(registry: ModelRegistry, new: Settings) -> StagedConfig:
    """Build what ``new`` adds or changes against what ``registry`` serves.

    A version counts as changed when its configuration differs (path, pin, batching, outputs,
    ...); an unchanged one keeps its artifact (an admin reload replaces that).
    """
    serving = {(v.name, v.version): v for v in registry.versions()}
    current = {key: v.config for key, v in serving.items()}
    wanted = {(m.name, m.version): m for m in new.models}
    added = [key for key in wanted if key not in current]
    changed = [key for key in wanted if key in current and current[key] != wanted[key]]
    removed = [key for key in current if key not in wanted]
    built: dict[Key, PreparedVersion] = {}
    failures = []
    for key in added + changed:
        config = wanted[key]
        build = functools.partial(build_version, config, require_sha256=new.require_sha256)
        try:
            built[key] = await asyncio.wait_for(in_daemon_thread(build), config.load_timeout_s)
        except Exception as exc:
            failures.append(f"{key[0]}:{key[1]}: {load_failure(exc, config)}")
    if failures:
        raise ModelLoadError("; ".join(failures))
    kept = {key: serving[key] for key in wanted if key not in built}
    return StagedConfig(new, built, kept, added, changed, removed)
