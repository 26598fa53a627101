"""DrainingServer: the uvicorn server of every process (single or gunicorn worker).

Its first SIGTERM/SIGINT fails readiness at once and keeps serving for ``prestop_delay_s``;
then uvicorn stops accepting and drains for up to ``grace_period_s``. Shortly before that runs
out, requests still waiting for a model call are answered 503 ``shutting_down`` (uvicorn would
cancel them with a plain-text 500), and once the server is done, a process whose model call is
stuck leaves it behind (:func:`leave_stuck_model_calls_behind`) rather than being held, or
under gunicorn killed, by it. SIGHUP re-reads the config file
(:mod:`modelserve.control.config_watch`). It also publishes this process's probe snapshot and
freezes the heap once the models are loaded. :mod:`modelserve.serving` (one process) and
:mod:`modelserve.workers` (gunicorn) both run it, and neither imports the other's module
for it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import structlog
import uvicorn
from uvicorn.server import HANDLED_SIGNALS

from modelserve.congestion import congestion
from modelserve.observability.health import HealthState
from modelserve.probes import ProbeSnapshot
from modelserve.settings import Settings

ProbeSink = Callable[[ProbeSnapshot], None]

ABANDON_MARGIN_S = 0.5
"""Requests still waiting this long before the grace period ends are answered 503, so the
answer is written before uvicorn cancels what is left (at most half the grace period early)."""
_IDLE_THREAD_EXIT_S = 0.5

log = structlog.get_logger(__name__)


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first SIGTERM/SIGINT drains gracefully and exits 0.

    uvicorn re-raises a captured signal after its own shutdown, which turns a clean drain into
    exit status 143; this server handles the signal fully instead and never re-raises it.
    """

    def __init__(self, config: uvicorn.Config, probe_sink: ProbeSink | None = None) -> None:
        super().__init__(config)
        self._stop_accepting_at: float | None = None
        self._heap_frozen = False
        self._probe_sink = probe_sink

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        listeners = [sock for server in self.servers for sock in server.sockets]
        congestion(asyncio.get_running_loop()).watch(listeners)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Handlers run as event-loop callbacks rather than interrupting whatever the main
        # thread is doing: a handler that logs while the interrupted code holds the log
        # stream's lock would deadlock, and the process would ignore SIGTERM for good.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()
        for sig in HANDLED_SIGNALS:
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        loop.add_signal_handler(signal.SIGHUP, self._reload_config)
        try:
            yield
        finally:
            for sig in (*HANDLED_SIGNALS, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    def _reload_config(self) -> None:
        """SIGHUP: re-read the config file (the app's config watcher does the work)."""
        watcher = getattr(getattr(self.config.app, "state", None), "config_watcher", None)
        log.info("config_reload_requested", signal="SIGHUP")
        if watcher is not None:
            watcher.request()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._stop_accepting_at is not None or self.should_exit:
            self.should_exit = True
            self.force_exit = self.force_exit or sig == signal.SIGINT
            return
        health, delay = _draining_facts(self.config.app)
        if health is not None:
            health.start_draining()
        log.info("shutdown_requested", signal=signal.Signals(sig).name, prestop_delay_s=delay)
        self._stop_accepting_at = time.monotonic() + delay
        self.should_exit = delay <= 0

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        grace_s = self.config.timeout_graceful_shutdown
        timer = None
        if grace_s is not None and not self.force_exit:
            abandon_after_s = max(grace_s - ABANDON_MARGIN_S, grace_s / 2)
            timer = asyncio.get_running_loop().call_later(abandon_after_s, _abandon_waiting)
        try:
            await super().shutdown(sockets)
        finally:
            if timer is not None:
                timer.cancel()

    async def on_tick(self, counter: int) -> bool:
        if self._stop_accepting_at is not None and time.monotonic() >= self._stop_accepting_at:
            self.should_exit = True
        if not self._heap_frozen:
            self._freeze_heap_once_loaded()
        if self._probe_sink is not None:
            snapshot = probe_snapshot(self.config.app)
            if snapshot is not None:
                self._probe_sink(snapshot)
        return await super().on_tick(counter)

    def _freeze_heap_once_loaded(self) -> None:
        health, _ = _draining_facts(self.config.app)
        if health is None or health.loading_done:
            # The models and the app live as long as the process: take them out of the cyclic
            # collector's view. Full collections over them paused the event loop for tens of
            # milliseconds under load (/health p99 85 ms -> 12 ms at 64 busy connections).
            gc.freeze()
            self._heap_frozen = True


def _abandon_waiting() -> None:
    # Imported here: modelserve.serving imports this module before gunicorn's metrics
    # directory is set, and the api package must not be imported that early.
    from modelserve.api.disconnect import abandon_waiting

    abandoned = abandon_waiting()
    if abandoned:
        log.warning("requests_abandoned", requests=abandoned, reason="grace period ending")


def leave_stuck_model_calls_behind() -> None:
    """Exit now if a model call outlived the drain, instead of waiting for it.

    A running model call cannot be interrupted, and Python joins every inference thread at
    exit, so one stuck call would keep the process alive past ``grace_period_s`` (and past a
    second SIGINT); a gunicorn worker would be killed by its master without flushing anything.
    Idle inference threads end as soon as their executor shuts down; a thread still alive after
    a moment is in a model call: the exit handlers run (logs and spans are flushed) and the
    process leaves without it.
    """
    # Imported here, not at the top: the batcher imports the metrics, and prometheus-client
    # must first be imported after _run_gunicorn sets PROMETHEUS_MULTIPROC_DIR, or every
    # worker counts in private memory and /metrics under gunicorn shows nothing.
    from modelserve.inference.batcher import INFERENCE_THREAD_PREFIX

    deadline = time.monotonic() + _IDLE_THREAD_EXIT_S
    busy = []
    for thread in threading.enumerate():
        if thread.name.startswith(INFERENCE_THREAD_PREFIX):
            thread.join(max(deadline - time.monotonic(), 0.0))
            if thread.is_alive():
                busy.append(thread.name)
    if not busy:
        return
    log.warning("model_calls_abandoned", threads=busy)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _draining_facts(app: Any) -> tuple[HealthState | None, float]:
    """The app's health state and pre-stop delay (none for an app not made by create_app)."""
    state = getattr(app, "state", None)
    health = getattr(state, "health", None)
    settings = getattr(state, "settings", None)
    delay = settings.server.prestop_delay_s if isinstance(settings, Settings) else 0.0
    return (health if isinstance(health, HealthState) else None), delay


def probe_snapshot(app: Any) -> ProbeSnapshot | None:
    """What this process tells the probe listener (none for an app not made by create_app)."""
    # The core is read duck-typed: importing it here would import prometheus-client before
    # gunicorn's multiprocess directory is set.
    core = getattr(getattr(app, "state", None), "core", None)
    if core is None:
        return None
    readiness, live = core.server_ready(), core.liveness()
    return ProbeSnapshot(
        pid=os.getpid(),
        ready=readiness.ready,
        reasons=readiness.reasons,
        draining=live.draining,
        models=live.models,
        uptime_s=round(live.uptime_s, 3),
    )
