"""GET /dashboard (a page shipped in the package) and GET /stats (the JSON it polls).

The page and its assets carry a strict Content-Security-Policy (own scripts and styles only,
fetches to this origin only, no framing), ``X-Frame-Options: DENY`` and
``X-Content-Type-Options: nosniff``. The /stats body is built at most once per
``STATS_CACHE_S`` per process: it reads every metric, so a poller cannot make it cost more.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from importlib import resources

import orjson
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelserve import __version__
from modelserve.inference.core import InferenceCore
from modelserve.inference.version import LoadedVersion
from modelserve.observability import metrics
from modelserve.observability.stats import StatsSampler, VersionFacts, summarize, take_snapshot
from modelserve.settings import Settings

STATS_CACHE_S = 1.0
_NO_STORE = {"Cache-Control": "no-store"}
PAGE_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class StatsCache:
    """The last /stats body, reused for ``ttl_s`` seconds (per process)."""

    def __init__(
        self, ttl_s: float = STATS_CACHE_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._body: bytes | None = None
        self._built_at = 0.0

    def get(self, build: Callable[[], bytes]) -> bytes:
        now = self._clock()
        if self._body is None or now - self._built_at >= self.ttl_s:
            self._body, self._built_at = build(), now
        return self._body


class _SecurityHeaders:
    """Pure ASGI: add the page's security headers to every response of the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._headers = [(k.lower().encode(), v.encode()) for k, v in PAGE_SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self._headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def assets() -> ASGIApp:
    """The page's static assets, with the same security headers as the page."""
    return _SecurityHeaders(StaticFiles(packages=[("modelserve", "static")]))


async def dashboard(request: Request) -> Response:
    """The live dashboard page; its script refreshes from GET /stats every two seconds."""
    page = resources.files("modelserve").joinpath("static/dashboard.html").read_text()
    # The version in the asset URLs makes browsers fetch new assets after an upgrade.
    page = page.replace("__VERSION__", __version__)
    headers = {**_NO_STORE, **PAGE_SECURITY_HEADERS}
    return Response(page, media_type="text/html; charset=utf-8", headers=headers)


async def stats(request: Request) -> Response:
    """Throughput, latency, errors and, per model version, class mix, confidence and drift."""
    state = request.app.state
    cache: StatsCache = state.stats_cache
    body = cache.get(lambda: _stats_body(state))
    return Response(body, media_type="application/json", headers=_NO_STORE)


def _stats_body(state: State) -> bytes:
    core: InferenceCore = state.core
    settings: Settings = state.settings
    sampler: StatsSampler = state.stats_sampler
    # This worker's drift gauges, fresh for the read below, and its category shares.
    shares = {
        (entry.name, entry.version): entry.monitor.refresh().category_shares
        for entry in core.registry.loaded()
    }
    window = sampler.window(take_snapshot(metrics.collect()))
    facts = [
        VersionFacts(
            v.name,
            v.version,
            v.info.format,
            v.info.status.value,
            v.info.task,
            v.profile if isinstance(v, LoadedVersion) else None,
            {f.name: f.type for f in v.info.features} if v.info.features else None,
            shares.get((v.name, v.version)),
        )
        for v in core.registry.versions()
    ]
    # The reasons of the same readiness as "ready": a process not ready while its models are
    # (draining, start-up not over) says why, as /ready does.
    readiness = core.server_ready()
    body = {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "uptime_s": round(core.health.uptime_s, 1),
        "ready": readiness.ready,
        "draining": core.health.draining,
        "reasons": readiness.reasons,
        **summarize(window, facts, settings.drift.psi_threshold, state.monitoring_routes),
    }
    return orjson.dumps(body)
