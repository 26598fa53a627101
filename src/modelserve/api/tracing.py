"""Pure ASGI middleware: one OpenTelemetry server span per HTTP request (only when tracing is on).

The span is :class:`~modelserve.observability.request_span.RequestSpans`', the same a gRPC
call gets: it continues a caller's trace from the W3C ``traceparent`` header and is named after
the route template (``POST /predict``), never the raw path. app.py imports this module only
when tracing is enabled, so OpenTelemetry stays an optional dependency.
"""

from __future__ import annotations

from opentelemetry.trace import Tracer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelserve.api.route_table import RouteTable
from modelserve.observability.request_span import RequestSpans


class TracingMiddleware:
    """Wraps each HTTP request in a SERVER span."""

    def __init__(self, app: ASGIApp, *, tracer: Tracer, table: RouteTable) -> None:
        self.app = app
        self.spans = RequestSpans(tracer)
        self.table = table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        status = 500

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with self.spans.started(method, scope["path"], scope["headers"]) as span:
            try:
                await self.app(scope, receive, send_recording_status)
            finally:
                self.spans.finish(span, method, self.table.label(scope), status)
