"""Pure ASGI middleware: one OpenTelemetry server span per HTTP request (only when tracing is on).

It continues a caller's trace from the W3C ``traceparent`` header and names the span after the
route template (``POST /predict``), never the raw path. Spans recorded further down (queue
wait, inference) become its children through the OpenTelemetry context. app.py imports this
module only when tracing is enabled, so OpenTelemetry stays an optional dependency.
"""

from __future__ import annotations

from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelserve.api.route_table import RouteTable


class TracingMiddleware:
    """Wraps each HTTP request in a SERVER span."""

    def __init__(self, app: ASGIApp, *, tracer: Tracer, table: RouteTable) -> None:
        self.app = app
        self.tracer = tracer
        self.table = table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        status = 500

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with self.tracer.start_as_current_span(
            method,
            context=propagate.extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope["path"]},
        ) as span:
            try:
                await self.app(scope, receive, send_recording_status)
            finally:
                route = self.table.label(scope)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
