"""GET /dashboard (a page shipped in the package) and GET /stats (the JSON it polls)."""

from __future__ import annotations

import datetime as dt
from importlib import resources

import orjson
from starlette.requests import Request
from starlette.responses import Response

from modelserve import __version__
from modelserve.inference.core import InferenceCore
from modelserve.inference.version import LoadedVersion
from modelserve.observability import metrics
from modelserve.observability.stats import StatsSampler, VersionFacts, summarize, take_snapshot
from modelserve.settings import Settings

_NO_STORE = {"Cache-Control": "no-store"}


async def dashboard(request: Request) -> Response:
    """The live dashboard page; its script refreshes from GET /stats every two seconds."""
    page = resources.files("modelserve").joinpath("static/dashboard.html").read_text()
    # The version in the asset URLs makes browsers fetch new assets after an upgrade.
    page = page.replace("__VERSION__", __version__)
    return Response(page, media_type="text/html; charset=utf-8", headers=_NO_STORE)


async def stats(request: Request) -> Response:
    """Throughput, latency, errors and, per model version, class mix, confidence and drift."""
    state = request.app.state
    core: InferenceCore = state.core
    settings: Settings = state.settings
    sampler: StatsSampler = state.stats_sampler
    for entry in core.registry.loaded():
        entry.monitor.refresh()  # this worker's drift gauges, fresh for the read below
    window = sampler.window(take_snapshot(metrics.collect()))
    facts = [
        VersionFacts(
            v.name,
            v.version,
            v.info.format,
            v.info.status.value,
            v.info.task,
            v.profile if isinstance(v, LoadedVersion) else None,
        )
        for v in core.registry.versions()
    ]
    _, reasons = core.registry.readiness()
    body = {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "uptime_s": round(core.health.uptime_s, 1),
        "ready": core.server_ready().ready,
        "draining": core.health.draining,
        "reasons": reasons,
        **summarize(
            window, facts, settings.drift.psi_threshold, state.route_table.monitoring_paths
        ),
    }
    return Response(orjson.dumps(body), media_type="application/json", headers=_NO_STORE)
