"""GET /metrics: Prometheus exposition text."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from modelserve.observability.metrics import render_latest


async def metrics_endpoint(request: Request) -> Response:
    body, content_type = render_latest()
    return Response(body, media_type=content_type)
