"""gunicorn with uvicorn workers, configured from Settings (no gunicorn.conf.py needed)."""

from __future__ import annotations

import logging
import math
import signal
import sys
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.glogging import Logger as GunicornLogger
from gunicorn.workers.base import Worker
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from uvicorn_worker import UvicornWorker

from modelserve.api.auth import ApiKeyring, AuthGate
from modelserve.api.lockout import FailedAuthLimiter
from modelserve.draining import DrainingServer, leave_stuck_model_calls_behind
from modelserve.probes import (
    PrerenderedMetrics,
    ProbeAnswers,
    ProbeListener,
    ProcessGroup,
    SnapshotDirectory,
    gate_authorizer,
)
from modelserve.settings import Settings


class ModelserveWorker(UvicornWorker):  # type: ignore[misc]
    """A uvicorn worker with uvloop + httptools and the draining server."""

    CONFIG_KWARGS: dict[str, Any] = {"loop": "uvloop", "http": "httptools"}  # noqa: RUF012

    def init_signals(self) -> None:
        super().init_signals()
        # Until the server's own handler is installed, a forwarded SIGHUP (re-read the config)
        # must not end a worker that is still starting.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        directory: SnapshotDirectory | None = getattr(self.app, "probe_snapshots", None)
        server = DrainingServer(
            config=self.config, probe_sink=directory.publish if directory is not None else None
        )
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            raise SystemExit(Arbiter.WORKER_BOOT_ERROR)
        leave_stuck_model_calls_behind()


class StructlogGunicornLogger(GunicornLogger):  # type: ignore[misc]
    """Send gunicorn's own lines through the root (structlog) handler so they are JSON too."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            logger.handlers = logging.getLogger().handlers
            logger.propagate = False


def _child_exit(server: Arbiter, worker: Worker) -> None:
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
    directory: SnapshotDirectory | None = getattr(server.app, "probe_snapshots", None)
    if directory is not None:
        directory.forget(worker.pid)


def _render_workers_metrics() -> tuple[bytes, str]:
    """Every worker's metrics, read in the master from the multiprocess files.

    The master defines no metrics of its own (modelserve's metrics module is never imported
    here), so it adds no series; each worker samples its process metrics every few seconds.
    """
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST


class ForwardingArbiter(Arbiter):  # type: ignore[misc]
    """A gunicorn master whose SIGHUP re-reads the config in every worker, in place.

    gunicorn's own SIGHUP starts new workers from the master's configuration object, which
    never re-reads modelserve's file; each worker instead reconciles what it serves
    (:mod:`modelserve.control.config_watch`), without a restart.
    """

    def handle_hup(self) -> None:
        self.log.info("Hang up: forwarding SIGHUP to the workers")
        self.kill_workers(signal.SIGHUP)


class GunicornApplication(BaseApplication):  # type: ignore[misc]
    """Runs ``server.workers`` workers; each creates the app and loads its models itself."""

    def __init__(
        self,
        settings: Settings,
        uvicorn_options: dict[str, Any],
        probe_dir: Path | None = None,
        control_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.control_dir = control_dir
        self.probe_snapshots = SnapshotDirectory(probe_dir) if probe_dir is not None else None
        self.probe_listener: ProbeListener | None = None
        # Built in the master before any fork: the master's probe port and every worker
        # (their main port and gRPC) count failed authentications in the same table.
        self.failed_auth = FailedAuthLimiter(settings.auth.failed_auth_limit)
        ModelserveWorker.CONFIG_KWARGS = {
            "loop": "uvloop",
            "http": uvicorn_options["http"],
            "lifespan": "on",
            "access_log": False,
            "server_header": False,
            "proxy_headers": uvicorn_options["proxy_headers"],
            "timeout_graceful_shutdown": uvicorn_options["timeout_graceful_shutdown"],
            "limit_concurrency": uvicorn_options["limit_concurrency"],
            "timeout_keep_alive": uvicorn_options["timeout_keep_alive"],
        }
        super().__init__()

    def load_config(self) -> None:
        server = self.settings.server
        options = {
            "bind": f"{server.host}:{server.port}",
            "workers": server.workers,
            "worker_class": ModelserveWorker,
            # gunicorn wants whole seconds; the worker drains within the grace period itself.
            "graceful_timeout": math.ceil(server.grace_period_s + server.prestop_delay_s) + 1,
            "timeout": 120,
            "max_requests": server.max_requests,
            "max_requests_jitter": server.max_requests // 10,
            "logger_class": StructlogGunicornLogger,
            "child_exit": _child_exit,
            "when_ready": self._start_probe_listener,
            "post_fork": self._close_probe_listener,
            "accesslog": None,
        }
        for key, value in options.items():
            self.cfg.set(key, value)
        if "control_socket_disable" in self.cfg.settings:
            # gunicorn 27 opens a control socket at one fixed path per user, which several
            # servers on one host would fight over; modelserve does not use it.
            self.cfg.set("control_socket_disable", True)

    def _start_probe_listener(self, arbiter: Arbiter) -> None:
        """In the master, once the sockets are bound: answer probes for every worker."""
        server = self.settings.server
        if self.probe_snapshots is None or server.probe_port is None:
            return
        directory = self.probe_snapshots
        answers = ProbeAnswers(
            lambda: directory.read(set(arbiter.WORKERS)),
            expected=server.workers,
            stall_s=server.liveness_stall_s,
            metrics=PrerenderedMetrics(_render_workers_metrics) if server.metrics_enabled else None,
        )
        gate = AuthGate(ApiKeyring(self.settings.auth), self.failed_auth)
        self.probe_listener = ProbeListener(
            server.host, server.probe_port, answers, gate_authorizer(gate)
        )
        self.probe_listener.start()

    def _close_probe_listener(self, arbiter: Arbiter, worker: Worker) -> None:
        """In a new worker: the master's listener is no business of this process."""
        if self.probe_listener is not None:
            self.probe_listener.close_in_child()

    def run(self) -> None:
        try:
            ForwardingArbiter(self).run()
        except RuntimeError as exc:  # as gunicorn's own run(): a bind failure, say
            print(f"\nError: {exc}\n", file=sys.stderr)  # noqa: T201
            sys.exit(1)

    def load(self) -> Any:
        from modelserve.app import create_app

        app = create_app(self.settings, run_dir=self.control_dir, failed_auth=self.failed_auth)
        if self.probe_snapshots is not None:
            server = self.settings.server
            app.state.process_group = ProcessGroup(
                self.probe_snapshots, server.workers, server.liveness_stall_s
            )
        return app
