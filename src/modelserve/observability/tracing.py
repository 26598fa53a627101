"""Optional OpenTelemetry spans: the request, its wait in the batch queue, and the model call.

Off by default (``tracing.enabled``) and then free: nothing is imported, no middleware is
installed, and the batcher's one check is a ``None`` test. On, it needs the ``tracing`` extra.
modelserve uses the process's tracer provider when one is configured already (for instance by
``opentelemetry-instrument``); otherwise it makes its own SDK provider named ``service_name``
that exports over OTLP/HTTP (configured by the standard ``OTEL_EXPORTER_OTLP_*`` variables).
It does not install that provider globally, so libraries that trace on their own as soon as a
global provider exists (FastAPI's native telemetry) stay off.

Queue wait and inference are recorded when the request's answer arrives, as children of the
current (request) span, with the times they really started and ended: one model call serves
several requests, so each request gets its own copy of the call's span.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import structlog

from modelserve.settings import TracingSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

log = structlog.get_logger(__name__)

INSTRUMENTATION_NAME = "modelserve"

_tracer: Tracer | None = None


def active_tracer() -> Tracer | None:
    """The tracer when tracing is on, else ``None``."""
    return _tracer


def configure_tracing(settings: TracingSettings) -> Tracer | None:
    """Turn tracing on or off for this process, following ``settings``."""
    global _tracer
    if not settings.enabled:
        _tracer = None
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    except ImportError as exc:
        raise RuntimeError(
            "tracing.enabled needs the tracing extra: pip install 'modelserve[tracing]'"
        ) from exc
    from modelserve import __version__

    provider = trace.get_tracer_provider()
    if not isinstance(provider, SdkTracerProvider):
        provider = _own_provider(settings.service_name)
    _tracer = provider.get_tracer(INSTRUMENTATION_NAME, __version__)
    return _tracer


_providers: dict[str, TracerProvider] = {}


def _own_provider(service_name: str) -> TracerProvider:
    """One SDK provider per service name and process (each has its export thread)."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

    if service_name not in _providers:
        provider = SdkTracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
        _add_otlp_exporter(provider)
        _providers[service_name] = provider
    return _providers[service_name]


def _add_otlp_exporter(provider: TracerProvider) -> None:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        log.warning(
            "tracing_exporter_missing",
            detail="spans are recorded but not exported: install modelserve[tracing]",
        )
        return
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))


def record_batch_stages(
    model: str,
    version: str,
    rows: int,
    enqueued_at: float,
    started_at: float,
    clock_now: float,
) -> None:
    """Add ``queue_wait`` and ``inference`` spans to the current span.

    The three times come from one monotonic clock (the event loop's); they are placed on the
    wall clock by their distance from ``clock_now``.
    """
    tracer = _tracer
    if tracer is None:
        return
    from opentelemetry import trace

    offset_ns = time.time_ns() - int(clock_now * 1e9)
    attributes = {"modelserve.model": model, "modelserve.model_version": version}
    # uvloop's clock is cached per loop iteration (millisecond steps), so a converted time can
    # fall before the request span began: a child never starts before its parent.
    parent_start = getattr(trace.get_current_span(), "start_time", None)
    floor_ns = parent_start if isinstance(parent_start, int) else 0
    enqueued_ns = max(offset_ns + int(enqueued_at * 1e9), floor_ns)
    started_ns = max(offset_ns + int(max(started_at, enqueued_at) * 1e9), enqueued_ns)
    end_ns = max(offset_ns + int(clock_now * 1e9), started_ns)
    queue = tracer.start_span("queue_wait", start_time=enqueued_ns, attributes=attributes)
    queue.end(end_time=started_ns)
    inference = tracer.start_span(
        "inference", start_time=started_ns, attributes={**attributes, "modelserve.rows": rows}
    )
    inference.end(end_time=end_ns)
