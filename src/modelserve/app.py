"""create_app(settings): the FastAPI application and its lifespan (load, warm up, drain)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import FastAPI

from modelserve import __version__
from modelserve.api.admission import InFlightBytesLimit
from modelserve.api.auth import (
    ApiKeyring,
    AuthGate,
    AuthMiddleware,
    require_scope,
    withheld_reason,
)
from modelserve.api.declared_rows import DeclaredRows
from modelserve.api.dispatch import ModelserveApp
from modelserve.api.errors import install_error_handlers
from modelserve.api.fleet_lockout import build_fleet_failures
from modelserve.api.lockout import FailedAuthLimiter
from modelserve.api.middleware import RequestContextMiddleware
from modelserve.api.openapi import build_openapi
from modelserve.api.ratelimit import RateLimitMiddleware, RouteLimiter, peer_address
from modelserve.api.route_table import RouteTable
from modelserve.api.routes.dashboard import StatsCache
from modelserve.api.routes.docs import OPENAPI
from modelserve.api.routes.table import declare_routes
from modelserve.cache import build_cache, key_secret
from modelserve.control import build_control_plane
from modelserve.control.config_watch import ConfigWatcher
from modelserve.errors import StartupFailedError
from modelserve.inference.cache import PredictionCache
from modelserve.inference.core import InferenceCore
from modelserve.inference.registry import ModelRegistry
from modelserve.observability.health import HealthState
from modelserve.observability.monitor import MonitorLoop
from modelserve.observability.stats import StatsSampler
from modelserve.observability.tracing import configure_tracing
from modelserve.settings import Settings
from modelserve.v2.dataplane import DataPlane

if TYPE_CHECKING:
    from modelserve.rpc.server import GrpcServer

log = structlog.get_logger(__name__)

DESCRIPTION = (
    "Predictions from saved scikit-learn, ONNX and TorchScript models. Every error has the body "
    '`{"detail", "code", "request_id"}`.'
)


def create_app(
    settings: Settings,
    run_dir: Path | None = None,
    failed_auth: FailedAuthLimiter | None = None,
) -> FastAPI:
    """Build the application for ``settings``. Models load in the lifespan, not here.

    ``run_dir``: a directory shared by every worker of this server (gunicorn), where the
    control state lives when no Redis is configured (see :mod:`modelserve.control`).
    ``failed_auth``: the server's failed-authentication count, built before the server forked
    so that its other processes share it (:mod:`modelserve.api.lockout`); default: this
    process's own.
    """
    registry = ModelRegistry(settings)
    state = HealthState()
    backend = build_cache(settings)
    cache = PredictionCache(backend, key_secret(settings)) if backend is not None else None
    limiter = _build_limiter(settings)
    control = build_control_plane(settings, registry, state, run_dir)
    core = InferenceCore(registry, state, cache, control)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = asyncio.create_task(_load_models(registry, state, settings.server.strict))
        if settings.server.strict or settings.server.workers > 1:
            # strict: a failure propagates and the server exits non-zero. Workers share one
            # listening socket: a (re)started worker accepting before its models are loaded
            # would answer 503 to requests its loaded siblings could serve.
            try:
                await loader
            except StartupFailedError:
                log.debug("startup_failed", exc_info=True)  # the traceback: debug level only
                raise
        control.start(loader)
        watcher = ConfigWatcher(settings, registry, control)
        app.state.config_watcher = watcher
        watcher.start()
        monitor_loop = MonitorLoop(
            lambda: [v.monitor for v in registry.loaded()],
            settings.drift,
        )
        monitor_loop.start()
        grpc_server = await _start_grpc(app, settings, limiter)
        grpc_drain = asyncio.create_task(grpc_server.drain_on_signal()) if grpc_server else None
        forced = False
        sampling = asyncio.create_task(app.state.stats_sampler.run())
        try:
            yield
        except asyncio.CancelledError:
            # The server skipped the lifespan shutdown (a second SIGINT) and is cancelling
            # what is left: stop without draining.
            forced = True
            raise
        finally:
            sampling.cancel()
            await watcher.close()
            await control.close()
            await monitor_loop.stop()
            state.stop_accepting()
            loader.cancel()
            started = time.perf_counter()
            if grpc_server is not None and grpc_drain is not None:
                grpc_drain.cancel()  # a drain under way goes on inside stop()
                await grpc_server.stop()
            # The HTTP drain already spent part of the grace period: the batchers get the rest.
            server = settings.server
            drain_s = state.drain_time_left(server.prestop_delay_s, server.grace_period_s)
            await core.close(0.0 if forced else drain_s)
            if limiter is not None:
                await limiter.close()
            if fleet_failures is not None:
                await fleet_failures.close()
            log.info("server_stopped", drain_ms=round((time.perf_counter() - started) * 1000, 3))

    app = ModelserveApp(
        title="modelserve",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from the package (the route table), not from a CDN
        redoc_url=None,
        openapi_url=OPENAPI if settings.server.docs_enabled else None,
        **_without_native_tracing(),
    )
    app.state.settings = settings
    app.state.core = core
    app.state.declared_rows = DeclaredRows()
    app.state.control = control
    app.state.health = state
    app.state.dataplane = DataPlane(core, settings.server.max_batch_rows)
    app.state.api_keys = ApiKeyring(settings.auth)
    # One gate for HTTP and gRPC, one failed-authentication count for every process of the
    # server (the probe port's too), and the fleet's in Redis when one is configured.
    if failed_auth is None:
        failed_auth = FailedAuthLimiter(settings.auth.failed_auth_limit)
    fleet_failures = build_fleet_failures(settings, failed_auth)
    app.state.auth_gate = AuthGate(app.state.api_keys, failed_auth, fleet_failures)
    app.state.rate_limiter = limiter
    app.state.stats_sampler = StatsSampler()
    app.state.stats_cache = StatsCache()

    table = RouteTable(declare_routes(settings))
    app.state.route_table = table
    # Route labels left out of /stats' traffic figures; a gRPC server adds its probe methods.
    app.state.monitoring_routes = table.monitoring_paths
    app.install_routes(table, require_scope("admin"))
    withheld = withheld_reason(settings.auth, "admin")
    if withheld is not None:
        log.info("routes_withheld", scope="admin", paths="/admin/...", reason=withheld)
    install_error_handlers(app)
    # Added first = runs innermost:
    # RequestContext → Auth (sets the caller) → RateLimit → InFlightBytesLimit → routes.
    app.add_middleware(
        InFlightBytesLimit,
        max_inflight_bytes=settings.server.max_inflight_bytes,
        max_body_bytes=settings.body_limit_bytes(),
    )
    if limiter is not None:
        app.add_middleware(RateLimitMiddleware, limiter=limiter, table=table)
    if settings.auth.enabled:
        app.add_middleware(
            AuthMiddleware,
            gate=app.state.auth_gate,
            table=table,
            client_address=limiter.client_ip if limiter is not None else peer_address,
        )
    app.add_middleware(
        RequestContextMiddleware,
        table=table,
        max_body_bytes=settings.body_limit_bytes(),
        body_timeout_s=settings.server.body_timeout_s,
        access_log=settings.server.access_log,
        access_log_probes=settings.server.access_log_probes,
        health=state,
    )
    tracer = configure_tracing(settings.tracing)
    if tracer is not None:  # off by default: then not even imported
        from modelserve.api.tracing import TracingMiddleware

        app.add_middleware(TracingMiddleware, tracer=tracer, table=table)
    app.openapi = lambda: build_openapi(app, table)  # type: ignore[method-assign]
    return app


async def _start_grpc(
    app: FastAPI, settings: Settings, limiter: RouteLimiter | None
) -> GrpcServer | None:
    """The gRPC server on ``server.grpc_port``, started; None when the port is unset."""
    if settings.server.grpc_port is None:
        return None
    from modelserve.rpc.server import GrpcServer  # grpcio loads only when gRPC is on

    server = GrpcServer(
        app.state.dataplane, settings, app.state.auth_gate, limiter, app.state.health
    )
    await server.start()
    app.state.monitoring_routes = app.state.route_table.monitoring_paths | server.monitoring_routes
    return server


def _build_limiter(settings: Settings) -> RouteLimiter | None:
    if not settings.rate_limit.enabled:
        return None
    url = settings.redis_url.get_secret_value() if settings.redis_url is not None else None
    return RouteLimiter(settings.rate_limit, url)


def _without_native_tracing() -> dict[str, Any]:
    """Recent FastAPI traces by itself once any OpenTelemetry provider exists; modelserve's
    own spans (``tracing.enabled``) cover requests, so FastAPI's would only duplicate them."""
    if "telemetry" in inspect.signature(FastAPI).parameters:
        return {"telemetry": {"tracing": False}}
    return {}


async def _load_models(registry: ModelRegistry, state: HealthState, strict: bool) -> None:
    started = time.perf_counter()
    try:
        await registry.load_all(strict=strict)
    finally:
        state.loading_done = True
    ready, reasons = registry.readiness()
    log.info(
        "models_loaded",
        ready=ready,
        reasons=reasons,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
    )
