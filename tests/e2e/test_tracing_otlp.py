"""Tracing as shipped: a real server exports its spans over OTLP/HTTP (the default exporter,
configured by the standard OTEL_ variables) to a receiver the test runs on loopback, for HTTP
requests and gRPC calls alike."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from modelserve.rpc import inference_pb2 as pb
from tests.conftest import free_port
from tests.e2e.conftest import IRIS_ONNX, RunningServer

pytestmark = pytest.mark.e2e

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"
GRPC_TRACE_ID = "5c0a3e1b9d7f4a2c8e6b0d4f2a8c6e1b"
GRPC_REFUSED_TRACE_ID = "6d1b4f2c0e8a5b3d9f7c1e5a3b9d7f2c"
INFER = "/inference.GRPCInferenceService/ModelInfer"


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
    server = serve_modelserve(demo_models_dir / IRIS_ONNX, env=env)
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


def _traced_env(receiver: OtlpReceiver) -> dict[str, str]:
    return {
        "MODELSERVE_TRACING__ENABLED": "true",
        "MODELSERVE_TRACING__SERVICE_NAME": "iris-e2e",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "600000",  # nothing leaves before shutdown flushes it
    }


def _spans_by_trace(receiver: OtlpReceiver) -> dict[str, dict[str, object]]:
    """trace id → {span name → span}, of everything the receiver got."""
    traces: dict[str, dict[str, object]] = {}
    with receiver.lock:
        for export in receiver.exports:
            for rs in export.resource_spans:
                for scope in rs.scope_spans:
                    for span in scope.spans:
                        traces.setdefault(span.trace_id.hex(), {})[span.name] = span
    return traces


def _value(value: AnyValue) -> object:
    return getattr(value, value.WhichOneof("value") or "string_value")


def _attributes(span: object) -> dict[str, object]:
    return {a.key: _value(a.value) for a in span.attributes}  # type: ignore[attr-defined]


def _grpc_infer(port: int, model: str, trace_id: str) -> grpc.StatusCode:
    request = pb.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name="input", datatype="FP64", shape=[1, 4])
    # Not /predict's row: a cache hit computes nothing, so it would have no batch stages.
    tensor.contents.fp64_contents.extend([6.7, 3.0, 5.2, 2.3])
    metadata = (("traceparent", f"00-{trace_id}-{CALLER_SPAN_ID}-01"),)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            INFER,
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        try:
            call(request, metadata=metadata, timeout=10)
        except grpc.RpcError as exc:
            return exc.code()  # a failed call's error is its Call
    return grpc.StatusCode.OK


def test_tracing_grpc_call_gets_the_span_of_an_http_request(
    serve_modelserve: Callable[..., RunningServer],
    demo_models_dir: Path,
    otlp_receiver: OtlpReceiver,
) -> None:
    """A gRPC ModelInfer continues the trace of its traceparent metadata with a SERVER span
    named after the method, carrying every attribute the HTTP span has (plus rpc.*), with
    queue_wait and inference as children; a NOT_FOUND call is its 404, not an error span."""
    grpc_port = free_port()
    server = serve_modelserve(
        demo_models_dir / IRIS_ONNX,
        "--grpc-port",
        str(grpc_port),
        env=_traced_env(otlp_receiver),
    )
    http = httpx.post(
        server.base_url + "/predict",
        json={"features": [5.1, 3.5, 1.4, 0.2]},
        headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01"},
        timeout=10,
    )
    served = _grpc_infer(grpc_port, "iris", GRPC_TRACE_ID)
    refused = _grpc_infer(grpc_port, "nope", GRPC_REFUSED_TRACE_ID)
    assert server.stop() == 0

    assert (http.status_code, served, refused) == (
        200,
        grpc.StatusCode.OK,
        grpc.StatusCode.NOT_FOUND,
    )
    traces = _spans_by_trace(otlp_receiver)
    http_span = traces[TRACE_ID]["POST /predict"]
    spans = traces[GRPC_TRACE_ID]
    assert set(spans) == {f"GRPC {INFER}", "queue_wait", "inference"}
    call = spans[f"GRPC {INFER}"]
    assert call.parent_span_id.hex() == CALLER_SPAN_ID  # type: ignore[attr-defined]
    assert call.kind == http_span.kind  # type: ignore[attr-defined]  # SERVER
    for child in ("queue_wait", "inference"):
        assert spans[child].parent_span_id == call.span_id  # type: ignore[attr-defined]
    attributes = _attributes(call)
    assert set(_attributes(http_span)) <= set(attributes)
    assert attributes == {
        "http.request.method": "GRPC",
        "url.path": INFER,
        "http.route": INFER,
        "http.response.status_code": 200,
        "rpc.system": "grpc",
        "rpc.service": "inference.GRPCInferenceService",
        "rpc.method": "ModelInfer",
        "rpc.grpc.status_code": 0,
    }
    (refusal,) = traces[GRPC_REFUSED_TRACE_ID].values()
    refusal_attributes = _attributes(refusal)
    assert refusal_attributes["http.response.status_code"] == 404
    assert refusal_attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert refusal.status.code == http_span.status.code  # type: ignore[attr-defined]  # unset
