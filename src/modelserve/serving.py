"""Run the app: uvicorn (uvloop + httptools) for one process, gunicorn for several.

Shutdown on SIGTERM/SIGINT: readiness fails at once; after ``prestop_delay_s`` the server
stops accepting connections, finishes accepted requests within ``grace_period_s``, drains the
batchers in the lifespan, and exits 0.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
import uvicorn

from modelserve.settings import Settings

log = structlog.get_logger(__name__)


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first SIGTERM/SIGINT drains gracefully and exits 0.

    uvicorn re-raises a captured signal after its own shutdown, which turns a clean drain into
    exit status 143; we handle the signal fully here instead.
    """

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit or getattr(self, "_draining", False):
            if sig == signal.SIGINT:
                self.force_exit = True
            return
        self._draining = True
        state = getattr(getattr(self.config.app, "state", None), "health", None)
        settings = getattr(getattr(self.config.app, "state", None), "settings", None)
        delay = settings.server.prestop_delay_s if settings is not None else 0.0
        if state is not None:
            state.start_draining()
        log.info("shutdown_requested", signal=signal.Signals(sig).name, prestop_delay_s=delay)
        if delay > 0:
            threading.Timer(delay, self._stop_accepting).start()
        else:
            self._stop_accepting()

    def _stop_accepting(self) -> None:
        self.should_exit = True


def run(settings: Settings) -> None:
    """Serve until a signal; one process, or gunicorn when ``server.workers > 1``."""
    if settings.server.workers > 1:
        _run_gunicorn(settings)
    else:
        _run_uvicorn(settings)


def _uvicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",
        "log_config": None,
        "access_log": False,
        "server_header": False,
        # Client addresses come from the socket; rate limits honour X-Forwarded-For
        # only from rate_limit.trusted_proxies (uvicorn would trust any loopback peer).
        "proxy_headers": False,
        "timeout_graceful_shutdown": max(settings.server.grace_period_s, 0.1),
    }


def _run_uvicorn(settings: Settings) -> None:
    # One process needs no multiprocess metrics; an inherited directory could hold another
    # run's files, which would be added to this run's counts.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    from modelserve.app import create_app

    config = uvicorn.Config(
        create_app(settings),
        host=settings.server.host,
        port=settings.server.port,
        **_uvicorn_options(settings),
    )
    server = DrainingServer(config)
    server.run()
    if not server.started:
        raise SystemExit(3)


def _run_gunicorn(settings: Settings) -> None:
    # prometheus-client picks its multiprocess value store at import, before workers fork.
    metrics_dir = Path(tempfile.mkdtemp(prefix="modelserve-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    try:
        from modelserve.workers import GunicornApplication

        GunicornApplication(settings, _uvicorn_options(settings)).run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
