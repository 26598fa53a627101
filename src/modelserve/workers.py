"""gunicorn with uvicorn workers, configured from Settings (no gunicorn.conf.py needed)."""

from __future__ import annotations

import logging
import math
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.glogging import Logger as GunicornLogger
from gunicorn.workers.base import Worker
from prometheus_client import multiprocess
from uvicorn_worker import UvicornWorker

from modelserve.serving import DrainingServer
from modelserve.settings import Settings


class ModelserveWorker(UvicornWorker):  # type: ignore[misc]
    """A uvicorn worker with uvloop + httptools and the draining server."""

    CONFIG_KWARGS: dict[str, Any] = {"loop": "uvloop", "http": "httptools"}  # noqa: RUF012

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        server = DrainingServer(config=self.config)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            raise SystemExit(Arbiter.WORKER_BOOT_ERROR)


class StructlogGunicornLogger(GunicornLogger):  # type: ignore[misc]
    """Send gunicorn's own lines through the root (structlog) handler so they are JSON too."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            logger.handlers = logging.getLogger().handlers
            logger.propagate = False


def _child_exit(server: Arbiter, worker: Worker) -> None:
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


class GunicornApplication(BaseApplication):  # type: ignore[misc]
    """Runs ``server.workers`` workers; each creates the app and loads its models itself."""

    def __init__(self, settings: Settings, uvicorn_options: dict[str, Any]) -> None:
        self.settings = settings
        ModelserveWorker.CONFIG_KWARGS = {
            "loop": "uvloop",
            "http": "httptools",
            "lifespan": "on",
            "access_log": False,
            "server_header": False,
            "proxy_headers": uvicorn_options["proxy_headers"],
            "timeout_graceful_shutdown": uvicorn_options["timeout_graceful_shutdown"],
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
            "accesslog": None,
        }
        for key, value in options.items():
            self.cfg.set(key, value)
        if "control_socket_disable" in self.cfg.settings:
            # gunicorn 27 opens a control socket at one fixed path per user, which several
            # servers on one host would fight over; modelserve does not use it.
            self.cfg.set("control_socket_disable", True)

    def load(self) -> Any:
        from modelserve.app import create_app

        return create_app(self.settings)
