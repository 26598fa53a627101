"""ControlPlane: this process's side of the shared desired state (records, reconciles, reports).

* Recording: an admin action that succeeded here is written into the desired state at a new
  version (:meth:`ControlPlane.record`), the store notifies the others, and
  :meth:`ControlPlane.fleet` waits up to ``control.wait_s`` for their reports.
* Reconciling: a loop re-reads the state on a notification (Redis pub/sub, or the state
  file's mtime, checked every ``control.poll_interval_s``) and every
  ``control.reconcile_interval_s`` regardless, and applies a newer version
  (:mod:`modelserve.control.reconcile`). A process that starts late, or missed a message,
  converges the same way. A document that does not validate is refused with a logged reason
  and the process keeps its state; so is a version lower than one already applied.
* Reporting: every ``control.heartbeat_s`` (and after each apply) the process writes the
  version it applied and what failed; a report expires after three heartbeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import time

import structlog

from modelserve.control.reconcile import Generations, apply_state
from modelserve.control.state import (
    DesiredState,
    ProcessReport,
    RefusedDocumentError,
    parse_report,
    parse_state,
)
from modelserve.control.store import ControlStore, ControlStoreError
from modelserve.errors import ControlUnavailableError
from modelserve.inference.coordination import (
    ControlAction,
    FleetStatus,
    ProcessStatus,
    VersionAction,
)
from modelserve.inference.registry import ModelRegistry
from modelserve.observability.health import HealthState
from modelserve.observability.throttle import LogThrottle
from modelserve.settings import ControlSettings

log = structlog.get_logger(__name__)

_FLEET_POLL_S = 0.05
REPORT_TTL_HEARTBEATS = 3


def process_identity() -> str:
    """``<host>:<pid>``, as reports and ``GET /models`` name this process."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:128] or "host"
    return f"{host}:{os.getpid()}"


class ControlPlane:
    """One per process; the :class:`~modelserve.inference.coordination.Coordinator` of its
    repository (see the module docstring)."""

    def __init__(
        self,
        registry: ModelRegistry,
        settings: ControlSettings,
        store: ControlStore,
        health: HealthState,
    ) -> None:
        self._registry = registry
        self._settings = settings
        self._store = store
        self._health = health
        self.process = process_identity()
        self.applied_version = 0
        self._seen_version = 0
        self._problems: list[str] = []
        self._generations: Generations = {}
        self._resync = False
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._refused: bytes | None = None
        self._unreachable = LogThrottle(30.0)
        self.config_sha256: str | None = None
        """The configuration file this process serves (set by the config watcher)."""
        health.control_synced = False

    def artifacts_replaced(self, keys: list[tuple[str, str]]) -> None:
        """These versions were just built from their paths: they hold the latest artifact."""
        for key in keys:
            self._generations.pop(key, None)

    def exclusive(self) -> asyncio.Lock:
        return self._lock

    async def record(self, action: ControlAction) -> int:
        """Write ``action`` (done here already) into the desired state; its version."""
        try:
            state = await self._store.update(lambda s: s.with_action(action, self._seen_version))
        except ControlStoreError as exc:
            self._resync = True
            log.warning("control_change_not_shared", reason=str(exc), process=self.process)
            raise ControlUnavailableError(str(exc)) from exc
        if isinstance(action, VersionAction) and action.verb != "unload":
            intent = state.models[action.model].versions.get(action.version)
            if intent is not None:
                self._generations[(action.model, action.version)] = intent.reload_generation
        await self._apply(state)  # what others changed meanwhile, if anything
        await self._store.notify(state.version)
        log.info("control_state_written", version=state.version, process=self.process)
        return state.version

    async def fleet(self, version: int) -> FleetStatus:
        """Where every live process stands against ``version``, once all applied it or
        failed, or after ``control.wait_s``."""
        deadline = time.monotonic() + self._settings.wait_s
        while True:
            status = await self._status(version)
            if not status.pending or time.monotonic() >= deadline:
                return status
            await asyncio.sleep(_FLEET_POLL_S)

    async def reports(self) -> list[ProcessReport]:
        """Every live process's report (the ones that do not validate are left out)."""
        try:
            raw_reports = await self._store.reports()
        except ControlStoreError:
            return [self._report()]
        reports = {}
        for raw in raw_reports:
            try:
                report = parse_report(raw)
            except RefusedDocumentError as exc:
                log.warning("control_report_refused", reason=str(exc))
                continue
            reports[report.process] = report
        reports[self.process] = self._report()  # this process's own, never a stale copy
        return sorted(reports.values(), key=lambda r: r.process)

    async def desired(self) -> DesiredState | None:
        """The stored desired state, validated (None: none stored, refused or unreachable)."""
        try:
            raw = await self._store.read()
            return parse_state(raw) if raw else None
        except (ControlStoreError, RefusedDocumentError):
            return None

    async def _status(self, version: int) -> FleetStatus:
        applied, failed, pending = 0, [], []
        reports = await self.reports()
        for report in reports:
            status = ProcessStatus(report.process, report.applied_version, list(report.errors))
            if report.applied_version >= version:
                applied += 1
            elif report.seen_version >= version:
                failed.append(status)
            else:
                pending.append(status)
        return FleetStatus(version, len(reports), applied, failed, pending)

    def start(self, loading: asyncio.Future[None]) -> None:
        """Reconcile and report until :meth:`close`, from when ``loading`` (the start-up
        load of the configured models) is over."""
        self._task = asyncio.create_task(self._run(loading))

    async def close(self) -> None:
        # The flag as well as the cancel: on Python 3.11 asyncio.wait_for can swallow a cancel
        # that arrives as its timeout fires, and the loop below would then run for ever.
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._store.remove_report(self.process)
        await self._store.close()

    async def _run(self, loading: asyncio.Future[None]) -> None:
        with contextlib.suppress(Exception):  # a failed load is the loader's to report
            await asyncio.shield(loading)
        await self._store.start(self._wake.set)
        try:
            await self._sync(first=True)
        except Exception as exc:  # logged; the loop below tries again
            log.error("control_reconcile_failed", process=self.process, exc_info=exc)
        finally:
            self._health.control_synced = True  # an unreachable store never blocks serving
        loop = asyncio.get_running_loop()
        next_sync = loop.time() + self._settings.reconcile_interval_s
        next_report = loop.time() + self._settings.heartbeat_s
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.poll_interval_s)
            self._wake.clear()
            now = loop.time()
            try:
                if self._store.changed() or self._resync or now >= next_sync:
                    next_sync = now + self._settings.reconcile_interval_s
                    await self._sync()
                if now >= next_report:
                    next_report = now + self._settings.heartbeat_s
                    await self._publish_report()
            except Exception as exc:  # never let one bad round end reconciling for good
                log.error("control_reconcile_failed", process=self.process, exc_info=exc)

    async def _sync(self, first: bool = False) -> None:
        """Read, validate and apply the desired state when it is newer than what was seen."""
        try:
            raw = await self._store.read()
        except ControlStoreError as exc:
            if self._unreachable.allow() is not None:
                log.warning("control_store_unreachable", reason=str(exc), process=self.process)
            return
        if raw is None:
            if self._seen_version > 0 and not self._resync:
                return  # the store lost its state: the next change writes above what was seen
            raw = DesiredState(version=self._seen_version).to_json()
        try:
            state = parse_state(raw)
        except RefusedDocumentError as exc:
            if raw != self._refused:  # once per bad document, not once per poll
                self._refused = raw
                log.error("control_state_refused", reason=str(exc), process=self.process)
                self._problems = [f"desired state refused: {exc}"]
                await self._publish_report()
            return
        if state.version < self._seen_version:
            if raw != self._refused:
                self._refused = raw
                log.error(
                    "control_state_refused",
                    reason=f"version {state.version} is below {self._seen_version}, applied "
                    "already",
                    process=self.process,
                )
            return
        if state.version == self._seen_version and not self._resync and not first:
            return
        async with self._lock:
            await self._apply(state)

    async def _apply(self, state: DesiredState) -> None:
        """Apply ``state`` (the lock held); remember what was applied and what failed."""
        self._resync = False
        try:
            problems = await apply_state(self._registry, state, self._generations)
        except Exception as exc:  # a bug, not a refusal: reported, not retried every tick
            log.error("control_reconcile_failed", process=self.process, exc_info=exc)
            problems = [f"internal error while applying: {type(exc).__name__}"]
        self._seen_version, self._problems = state.version, problems
        if problems:
            log.error(
                "control_state_not_applied",
                version=state.version,
                problems=problems,
                process=self.process,
            )
        else:
            self.applied_version = state.version
            log.info("control_state_applied", version=state.version, process=self.process)
        await self._publish_report()

    def _report(self) -> ProcessReport:
        return ProcessReport(
            process=self.process,
            applied_version=self.applied_version,
            seen_version=self._seen_version,
            errors=[p[:1000] for p in self._problems[:32]],
            config_sha256=self.config_sha256,
        )

    async def _publish_report(self) -> None:
        try:
            await self._store.write_report(self.process, self._report().to_json())
        except ControlStoreError as exc:
            if self._unreachable.allow() is not None:
                log.warning("control_store_unreachable", reason=str(exc), process=self.process)
