"""Tracing as shipped: a real server exports its spans over OTLP/HTTP (the default exporter,
configured by the standard OTEL_ variables) to a receiver the test runs on loopback."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.e2e.conftest import RunningServer

pytestmark = pytest.mark.e2e

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"


class OtlpReceiver(ThreadingHTTPServer):
    """An OTLP/HTTP trace endpoint (POST /v1/traces, protobuf) that keeps what it receives."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _OtlpHandler)
        self.exports: list[ExportTraceServiceRequest] = []
        self.lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _OtlpHandler(BaseHTTPRequestHandler):
    server: OtlpReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        with self.server.lock:
            self.server.exports.append(export)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads what was received, not the receiver's access log."""


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.shutdown()
    receiver.server_close()
    thread.join(timeout=10)


def test_tracing_exports_request_spans_over_otlp_http(
    serve_modelserve: Callable[..., RunningServer],
    demo_models_dir: Path,
    otlp_receiver: OtlpReceiver,
) -> None:
    """One traced /predict reaches the collector on shutdown: the request span continues the
    caller's trace, queue_wait and inference are its children, service.name is the setting."""
    env = {
        "MODELSERVE_TRACING__ENABLED": "true",
        "MODELSERVE_TRACING__SERVICE_NAME": "iris-e2e",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "600000",  # nothing leaves before shutdown flushes it
    }
    server = serve_modelserve(demo_models_dir / "iris.joblib", env=env)
    response = httpx.post(
        server.base_url + "/predict",
        json={"features": [5.1, 3.5, 1.4, 0.2]},
        headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01"},
        timeout=10,
    )
    nothing_before_shutdown = not otlp_receiver.exports
    assert server.stop() == 0

    assert response.status_code == 200
    assert nothing_before_shutdown
    with otlp_receiver.lock:
        resource_spans = [rs for export in otlp_receiver.exports for rs in export.resource_spans]
    services = {
        attribute.value.string_value
        for rs in resource_spans
        for attribute in rs.resource.attributes
        if attribute.key == "service.name"
    }
    spans = {
        span.name: span
        for rs in resource_spans
        for scope in rs.scope_spans
        for span in scope.spans
        if span.trace_id.hex() == TRACE_ID
    }
    assert services == {"iris-e2e"}
    assert set(spans) == {"POST /predict", "queue_wait", "inference"}
    request = spans["POST /predict"]
    assert request.parent_span_id.hex() == CALLER_SPAN_ID
    assert spans["queue_wait"].parent_span_id == request.span_id
    assert spans["inference"].parent_span_id == request.span_id
    assert request.start_time_unix_nano <= spans["queue_wait"].start_time_unix_nano
    assert spans["inference"].end_time_unix_nano <= request.end_time_unix_nano
