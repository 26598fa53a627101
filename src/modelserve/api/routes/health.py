"""GET /health (liveness) and GET /ready (readiness): cheap, never queued, never rate limited."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from modelserve.api.errors import error_response
from modelserve.inference.registry import ModelRegistry
from modelserve.observability.health import HealthState


async def health(request: Request) -> Response:
    """200 while the process serves; the body lists each model version's status."""
    registry: ModelRegistry = request.app.state.registry
    state: HealthState = request.app.state.health
    body = {
        "status": "ok",
        "draining": state.draining,
        "uptime_s": round(state.uptime_s, 3),
        "models": {f"{v.name}:{v.version}": v.info.status.value for v in registry.versions()},
    }
    return Response(orjson.dumps(body), media_type="application/json")


async def ready(request: Request) -> Response:
    """200 only when every required model is ready and the process is not draining."""
    registry: ModelRegistry = request.app.state.registry
    state: HealthState = request.app.state.health
    is_ready, reasons = state.readiness(*registry.readiness())
    if not is_ready:
        return error_response(503, "not_ready", "; ".join(reasons), request.state.request_id)
    return Response(orjson.dumps({"ready": True, "reasons": []}), media_type="application/json")
