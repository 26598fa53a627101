"""ConfigWatcher: serve the config file's new content when it changes, or on SIGHUP.

With ``server.watch_config`` the file is checked every ``server.watch_interval_s``: its
inode, mtime and size, following symlinks, so a Kubernetes ConfigMap update (which swaps the
``..data`` symlink behind the mounted file) is seen like an edit. A change of content (its
sha256) is read with the same environment and flags as at start-up, then:

1. a file that does not parse or validate is rejected (``config_reload_rejected`` with the
   reason) and the served configuration stays as it was;
2. every version it adds or changes loads and warms up beside what serves; if one fails the
   whole file is rejected the same way;
3. under the control plane's lock the registry commits: versions swap in, each model's
   routing is replaced in one assignment, removed versions drain;
4. the file's digest is recorded in the shared desired state (once, whichever process reads
   it first), so the file's routing replaces earlier admin changes on every process.

Settings outside ``models``, ``routing`` and ``default_model`` take effect only at a restart;
a reload that changes them logs ``config_restart_needed`` naming the sections.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError

from modelserve.control.plane import ControlPlane
from modelserve.errors import ModelLoadError, ModelserveError
from modelserve.inference.coordination import ConfigAction
from modelserve.inference.reconfigure import stage
from modelserve.inference.registry import ModelRegistry
from modelserve.settings import Settings, describe_invalid_settings, load_settings

log = structlog.get_logger(__name__)

_LIVE_SECTIONS = {"models", "routing", "default_model"}


def _stamp(path: Path) -> tuple[int, int, int, int] | None:
    try:
        stat = os.stat(path)  # follows the symlinks, to the file served now
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class ConfigWatcher:
    """Re-reads the config file of ``settings`` (see the module docstring)."""

    def __init__(self, settings: Settings, registry: ModelRegistry, plane: ControlPlane) -> None:
        source = settings._source
        self._path: Path | None = source[0] if source is not None else None
        self._overrides: dict[str, Any] = source[1] if source is not None else {}
        self._registry = registry
        self._plane = plane
        self._watch = settings.server.watch_config
        self._interval_s = settings.server.watch_interval_s
        self._stamp = _stamp(self._path) if self._path is not None else None
        self.config_sha256 = _digest(self._path) if self._path is not None else None
        plane.config_sha256 = self.config_sha256
        self._requested = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def request(self) -> None:
        """Re-read the file now (SIGHUP), whether or not it looks changed."""
        self._requested.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        # The flag as well as the cancel: on Python 3.11 asyncio.wait_for can swallow a cancel
        # that arrives as its timeout fires (as in the control plane's loop).
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while not self._closing:
            timeout = self._interval_s if self._watch else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._requested.wait(), timeout)
            forced = self._requested.is_set()
            self._requested.clear()
            try:
                await self.check(forced=forced)
            except Exception as exc:  # never let one bad reload end the watcher
                log.error("config_reload_failed", exc_info=exc)

    async def check(self, *, forced: bool = False) -> None:
        """Serve the file's content if it changed since it was last served."""
        if self._path is None:
            if forced:
                log.warning("config_reload_unavailable", reason="started without --config")
            return
        stamp = _stamp(self._path)
        if stamp == self._stamp and not forced:
            return
        self._stamp = stamp
        digest = _digest(self._path)
        if digest is None or digest == self.config_sha256:
            if forced:
                log.info("config_unchanged", path=str(self._path), config_sha256=digest)
            return
        await self._reload(digest)

    async def _reload(self, digest: str) -> None:
        path = str(self._path)
        try:
            new = load_settings(self._path, **self._overrides)
        except ValidationError as exc:
            log.error("config_reload_rejected", path=path, reason=describe_invalid_settings(exc))
            return
        except (ValueError, OSError) as exc:
            log.error("config_reload_rejected", path=path, reason=str(exc))
            return
        served = self._registry.settings
        restart = sorted(
            name
            for name in Settings.model_fields
            if name not in _LIVE_SECTIONS and getattr(new, name) != getattr(served, name)
        )
        if restart:
            log.warning("config_restart_needed", path=path, sections=restart)
        async with self._plane.exclusive():
            try:
                staged = await stage(self._registry, new)
            except ModelLoadError as exc:
                log.error("config_reload_rejected", path=path, reason=exc.detail)
                return
            await self._registry.commit(staged)
            self._plane.artifacts_replaced(list(staged.built))
            self.config_sha256 = self._plane.config_sha256 = digest
            log.info(
                "config_reloaded",
                path=path,
                config_sha256=digest,
                added=[f"{n}:{v}" for n, v in staged.added],
                changed=[f"{n}:{v}" for n, v in staged.changed],
                removed=[f"{n}:{v}" for n, v in staged.removed],
            )
            try:
                await self._plane.record(ConfigAction(digest))
            except ModelserveError as exc:
                log.warning("config_not_shared", reason=exc.detail)
