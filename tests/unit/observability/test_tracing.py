"""Optional OpenTelemetry spans: request → queue wait → inference, via the SDK's memory exporter."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from modelserve.observability.tracing import active_tracer, configure_tracing
from modelserve.settings import Settings, TracingSettings

SETOSA = [5.1, 3.5, 1.4, 0.2]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(scope="module")
def provider_exporter() -> InMemorySpanExporter:
    """The process's tracer provider (set once; OpenTelemetry forbids replacing it)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


@pytest.fixture
def exporter(provider_exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    """The memory exporter, empty at the start; tracing is switched off again afterwards."""
    provider_exporter.clear()
    yield provider_exporter
    configure_tracing(TracingSettings())


def _by_name(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    (span,) = [s for s in spans if s.name == name]
    return span


async def test_tracing_records_request_queue_wait_and_inference(
    app_client: Callable[..., Any],
    small_settings: Callable[..., Settings],
    exporter: InMemorySpanExporter,
) -> None:
    """One /predict gives a server span with queue_wait then inference as its children."""
    settings = small_settings(tracing={"enabled": True}, cache={"backend": "none"})
    async with app_client(settings) as client:
        response = await client.post("/predict", json={"features": SETOSA})

    assert response.status_code == 200
    spans = exporter.get_finished_spans()
    request = _by_name(spans, "POST /predict")
    queue, inference = _by_name(spans, "queue_wait"), _by_name(spans, "inference")
    assert request.kind is SpanKind.SERVER
    assert request.attributes is not None
    assert request.attributes["http.route"] == "/predict"
    assert request.attributes["http.response.status_code"] == 200
    for child in (queue, inference):
        assert child.parent is not None
        assert child.parent.span_id == request.context.span_id
        assert child.context.trace_id == request.context.trace_id
        assert child.attributes is not None
        assert child.attributes["modelserve.model"] == "iris"
    times = [t or 0 for t in (queue.start_time, queue.end_time, inference.end_time)]
    assert all(times)
    assert times == sorted(times)
    assert queue.end_time == inference.start_time  # the wait ends as the model call starts


async def test_tracing_continues_the_callers_trace(
    app_client: Callable[..., Any],
    small_settings: Callable[..., Settings],
    exporter: InMemorySpanExporter,
) -> None:
    """A W3C traceparent header makes the request span part of the caller's trace."""
    settings = small_settings(tracing={"enabled": True})
    headers = {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
    async with app_client(settings) as client:
        await client.post("/predict", json={"features": SETOSA}, headers=headers)

    request = _by_name(exporter.get_finished_spans(), "POST /predict")
    assert format(request.context.trace_id, "032x") == TRACE_ID


async def test_tracing_off_records_no_spans(
    app_client: Callable[..., Any],
    small_settings: Callable[..., Settings],
    exporter: InMemorySpanExporter,
) -> None:
    """With tracing.enabled false (the default) nothing is traced, even with a provider set."""
    async with app_client(small_settings(cache={"backend": "none"})) as client:
        await client.post("/predict", json={"features": SETOSA})

    assert active_tracer() is None
    assert exporter.get_finished_spans() == ()
