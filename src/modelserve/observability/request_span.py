"""The OpenTelemetry SERVER span of one request, the same for an HTTP request and a gRPC call.

It continues the caller's trace from W3C ``traceparent`` (an HTTP header, or gRPC metadata of
that name), is named after the method and route template (``POST /predict``,
``GRPC /inference.GRPCInferenceService/ModelInfer``, never a raw path) and carries
``http.request.method``, ``url.path``, ``http.route`` and ``http.response.status_code`` with
the values of the access line and request metrics (for gRPC: ``GRPC``, the method's full name
and the status the same answer has over REST), so one query finds a request whatever its
transport. A status of 500 or more marks the span as an error; a 4xx does not. Spans recorded
further down (queue wait, inference) become its children through the OpenTelemetry context.

Imported only when tracing is on, so OpenTelemetry stays an optional dependency.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from opentelemetry import propagate
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer


class RequestSpans:
    """Starts and finishes request spans with one tracer."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    @contextlib.contextmanager
    def started(self, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> Iterator[Span]:
        """The request's span, current while the block runs. An exception leaving the block
        (a gRPC abort is one) is not an error by itself: :meth:`finish` decides by status."""
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}
        with self.tracer.start_as_current_span(
            method,
            context=propagate.extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            yield span

    @staticmethod
    def finish(span: Span, method: str, route: str, status: int, **attributes: Any) -> None:
        """Name the span after its route and record the answer's status (and ``attributes``)."""
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", status)
        for key, value in attributes.items():
            span.set_attribute(key, value)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
