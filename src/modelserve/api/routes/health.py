"""GET /health (liveness) and GET /ready (readiness): cheap, never queued, never rate limited."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from modelserve.api.errors import error_response
from modelserve.inference.core import InferenceCore


async def health(request: Request) -> Response:
    """200 while the process serves; the body lists each model version's status."""
    core: InferenceCore = request.app.state.core
    live = core.liveness()
    body = {
        "status": "ok",
        "draining": live.draining,
        "uptime_s": round(live.uptime_s, 3),
        "models": live.models,
    }
    return Response(orjson.dumps(body), media_type="application/json")


async def ready(request: Request) -> Response:
    """200 only when every required model is ready and the process is not draining."""
    core: InferenceCore = request.app.state.core
    readiness = core.server_ready()
    if not readiness.ready:
        detail = "; ".join(readiness.reasons)
        return error_response(503, "not_ready", detail, request.state.request_id)
    return Response(orjson.dumps({"ready": True, "reasons": []}), media_type="application/json")
