"""The control plane: admin changes made through any process reach every process.

An admin change (routing PUT/PATCH; load, reload, unload; V2 repository load/unload, over
REST or gRPC) first succeeds in the process that received it, then becomes the **desired
state** of the whole service at a new, monotonically increasing **version**. Every process
applies that state itself and **reports** the version it applied, or what it could not apply.
The answer to the admin call says how many processes applied it, which failed (and why) and
which are still pending; ``GET /models`` on any process shows its applied ``control.version``.

Where the state lives (``control.store``):

* ``redis`` (``auto`` with ``redis_url`` set): one document in Redis, shared by every worker
  of every replica; a pub/sub message tells the others at once
  (:mod:`modelserve.control.redis_store`).
* ``local``: a file in the server's run directory, shared by the workers of one gunicorn
  master, noticed by mtime polling; in memory for a single process
  (:mod:`modelserve.control.store`).

Either way each process also re-reads the state periodically, so a process that started
late, missed a message or lost its connection converges to the same state. Nothing read back
is trusted (:mod:`modelserve.control.state`); :mod:`modelserve.control.reconcile` applies a
state; :mod:`modelserve.control.plane` runs the loop.
"""

from __future__ import annotations

from pathlib import Path

from modelserve.control.plane import REPORT_TTL_HEARTBEATS, ControlPlane
from modelserve.control.store import ControlStore, FileStore, MemoryStore
from modelserve.inference.registry import ModelRegistry
from modelserve.observability.health import HealthState
from modelserve.settings import Settings

__all__ = ["ControlPlane", "build_control_plane"]


def build_control_plane(
    settings: Settings, registry: ModelRegistry, health: HealthState, run_dir: Path | None
) -> ControlPlane:
    """The plane for ``settings``: Redis when configured, else the run directory's file."""
    control = settings.control
    ttl_s = control.heartbeat_s * REPORT_TTL_HEARTBEATS
    store: ControlStore
    if control.store == "redis" or (control.store == "auto" and settings.redis_url is not None):
        from modelserve.control.redis_store import RedisStore

        assert settings.redis_url is not None  # noqa: S101  (the settings validator checked it)
        store = RedisStore(settings.redis_url.get_secret_value(), control.redis_prefix, ttl_s)
    elif run_dir is not None:
        store = FileStore(run_dir, ttl_s)
    else:
        store = MemoryStore(ttl_s)
    return ControlPlane(registry, control, store, health)
