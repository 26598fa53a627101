"""Run the app: uvicorn (uvloop + httptools) for one process, gunicorn for several.

Shutdown on SIGTERM/SIGINT: readiness fails at once and responses carry ``Connection: close``;
after ``prestop_delay_s`` the server stops accepting connections, finishes accepted requests
within ``grace_period_s``, drains the batchers in the lifespan, and exits 0. A second signal
cuts the pre-stop delay short; a second SIGINT also skips the drain.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
import uvicorn

from modelserve.api.lockout import FailedAuthLimiter
from modelserve.draining import DrainingServer, leave_stuck_model_calls_behind
from modelserve.http_protocol import serving_protocol
from modelserve.settings import Settings

if TYPE_CHECKING:
    from modelserve.probe_process import ProbeProcess

log = structlog.get_logger(__name__)

"""How long idle inference threads get to end once their executors are shut down."""


def run(settings: Settings) -> None:
    """Serve until a signal; one process, or gunicorn when ``server.workers > 1``."""
    if settings.server.workers > 1:
        _run_gunicorn(settings)
    else:
        _run_uvicorn(settings)


def _uvicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "loop": "uvloop",
        "http": serving_protocol(
            settings.server.header_timeout_s,
            settings.server.max_loop_lag_ms,
            settings.server.max_accept_queue,
        ),
        "lifespan": "on",
        "log_config": None,
        "access_log": False,
        "server_header": False,
        # Client addresses come from the socket; rate limits honour X-Forwarded-For
        # only from rate_limit.trusted_proxies (uvicorn would trust any loopback peer).
        "proxy_headers": False,
        "timeout_graceful_shutdown": max(settings.server.grace_period_s, 0.1),
        "limit_concurrency": settings.server.max_connections,
        "timeout_keep_alive": settings.server.keep_alive_s,
    }


def _run_uvicorn(settings: Settings) -> None:
    # One process needs no multiprocess metrics; an inherited directory could hold another
    # run's files, which would be added to this run's counts.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    # Built before the probe process forks: both count failed authentications in it.
    failed_auth = FailedAuthLimiter(settings.auth.failed_auth_limit)
    probes, probe_dir = None, None
    if settings.server.probe_port is not None:
        from modelserve.probe_process import ProbeProcess

        (probe_dir,) = _run_directories("modelserve-probes-")
        probes = ProbeProcess(settings, probe_dir, failed_auth)
        probes.start()  # forked before the app starts any thread
    try:
        _serve_one_process(settings, probes, failed_auth)
    finally:
        if probes is not None:
            probes.stop()
        if probe_dir is not None:
            shutil.rmtree(probe_dir, ignore_errors=True)
    # Only now: a stuck model call ends the process with os._exit, past every finally.
    leave_stuck_model_calls_behind()


def _serve_one_process(
    settings: Settings, probes: ProbeProcess | None, failed_auth: FailedAuthLimiter
) -> None:
    from modelserve.app import create_app
    from modelserve.observability.metrics import render_latest
    from modelserve.probe_process import MetricsRenderer

    app = create_app(settings, failed_auth=failed_auth)
    config = uvicorn.Config(
        app, host=settings.server.host, port=settings.server.port, **_uvicorn_options(settings)
    )
    renderer = None
    if probes is not None and settings.server.metrics_enabled:
        renderer = MetricsRenderer(render_latest, probes.metrics_file)
        renderer.start()
    server = DrainingServer(config, probes.snapshots.publish if probes is not None else None)
    try:
        server.run()
    finally:
        if renderer is not None:
            renderer.stop()
    if not server.started:
        raise SystemExit(3)


def _run_gunicorn(settings: Settings) -> None:
    metrics_dir, probe_dir, control_dir = _run_directories(
        "modelserve-metrics-", "modelserve-probes-", "modelserve-control-"
    )
    # prometheus-client picks its multiprocess value store at import, before workers fork.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    master = os.getpid()
    try:
        from modelserve.workers import GunicornApplication

        GunicornApplication(settings, _uvicorn_options(settings), probe_dir, control_dir).run()
    finally:
        # A worker's SystemExit unwinds through here too (gunicorn forks deep inside run()):
        # only the master may remove the directories every worker still writes to.
        if os.getpid() == master:
            for directory in (metrics_dir, probe_dir, control_dir):
                shutil.rmtree(directory, ignore_errors=True)


def _run_directories(*prefixes: str) -> list[Path]:
    """The directories the processes of this run share (gunicorn: metrics, probe snapshots,
    control state; one process with a probe port: the probe files), made in the temporary
    directory; exits 3 with one line saying so when it cannot be written.

    Without them the workers would count metrics in private memory and no probe listener could
    tell their readiness, so serving on is no option; an orchestrator then shows one clear
    reason instead of a traceback (a read-only root filesystem with no writable ``/tmp`` is
    the usual cause).
    """
    made: list[Path] = []
    try:
        for prefix in prefixes:
            made.append(Path(tempfile.mkdtemp(prefix=prefix)))
    except OSError as exc:
        for directory in made:
            shutil.rmtree(directory, ignore_errors=True)
        log.error(
            "temporary_directory_unwritable",
            reason="server.workers > 1 and server.probe_port need a writable temporary "
            "directory for the metrics and readiness files: mount one at /tmp or point TMPDIR "
            "at one",
            error=str(exc),
        )
        raise SystemExit(3) from None
    return made
