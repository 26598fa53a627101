"""GET /health (liveness) and GET /ready (readiness): cheap, never queued, never rate limited."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from modelserve.api.errors import error_response
from modelserve.inference.core import InferenceCore
from modelserve.probes import ProcessGroup


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
    """200 only when every required model is ready and the process is not draining; under
    gunicorn, only when that holds for every worker (:class:`~modelserve.probes.ProcessGroup`),
    whichever worker answers."""
    core: InferenceCore = request.app.state.core
    readiness = core.server_ready()
    reasons = list(readiness.reasons)
    group: ProcessGroup | None = getattr(request.app.state, "process_group", None)
    body: dict[str, object] = {"ready": True, "reasons": []}
    if readiness.ready and group is not None:
        group_reasons, body["workers"] = group.readiness()
        reasons += group_reasons
    if reasons:
        detail = "; ".join(dict.fromkeys(reasons))
        return error_response(503, "not_ready", detail, request.state.request_id)
    return Response(orjson.dumps(body), media_type="application/json")
