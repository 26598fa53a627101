"""V2 gRPC, in-process: the service on ``server.grpc_port`` beside HTTP in the app's lifespan,
with its health checking, reflection, API keys, message limit and status codes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import joblib
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from modelserve.api.routes.dashboard import StatsCache
from modelserve.rpc import inference_pb2 as pb
from modelserve.settings import load_settings
from tests.conftest import free_port
from tests.label_models import build_label_models

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
SERVICE = "/inference.GRPCInferenceService/"
ADMIN_KEY = "admin-key-0123456789abcdef"
PREDICT_KEY = "predict-key-0123456789abcdef"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("grpc-models")
    build_label_models(out)
    return out


class Stub:
    """Calls the V2 service by method name with this module's messages."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel

    async def __call__(
        self, method: str, request: Any, response: type[Any], key: str | None = None
    ) -> Any:
        call = self.channel.unary_unary(
            SERVICE + method,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response.FromString,
        )
        metadata = (("authorization", f"Bearer {key}"),) if key else None
        return await call(request, metadata=metadata, timeout=30)


@pytest.fixture
def grpc_app(app_client: Callable[..., Any], models_dir: Path) -> Callable[..., Any]:
    """Factory: ``async with grpc_app(**server_overrides) as (stub, channel)``."""

    class _Running:
        def __init__(self, **overrides: Any) -> None:
            self.port = free_port()
            server = {"grpc_port": self.port, **overrides.pop("server", {})}
            settings = load_settings(models_dir / "modelserve.yaml", server=server, **overrides)
            self.client = app_client(settings)

        async def __aenter__(self) -> tuple[Stub, grpc.aio.Channel]:
            self.http = await self.client.__aenter__()
            self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.port}")
            return Stub(self.channel), self.channel

        async def __aexit__(self, *exc: object) -> None:
            await self.channel.close(None)
            await self.client.__aexit__(*exc)

    return _Running


@pytest.fixture
async def stub(grpc_app: Callable[..., Any]) -> AsyncIterator[Stub]:
    async with grpc_app() as (running, _):
        yield running


def _infer_request(model: str, *, raw: bool, rows: np.ndarray = ROWS) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model, id="g-1")
    tensor = request.inputs.add(name="input", datatype="FP64", shape=rows.shape)
    if raw:
        request.raw_input_contents.append(rows.astype("<f8").tobytes())
    else:
        tensor.contents.fp64_contents.extend(rows.ravel().tolist())
    return request


async def test_grpc_health_live_ready_and_metadata(stub: Stub) -> None:
    """ServerLive, ServerReady, ModelReady and ServerMetadata answer as the protocol says."""
    assert (await stub("ServerLive", pb.ServerLiveRequest(), pb.ServerLiveResponse)).live
    assert (await stub("ServerReady", pb.ServerReadyRequest(), pb.ServerReadyResponse)).ready
    ready = await stub("ModelReady", pb.ModelReadyRequest(name="ints"), pb.ModelReadyResponse)
    assert ready.ready
    meta = await stub("ServerMetadata", pb.ServerMetadataRequest(), pb.ServerMetadataResponse)
    assert meta.name == "modelserve"
    assert "binary_tensor_data" in meta.extensions


async def test_grpc_model_metadata_has_platform_and_tensors(stub: Stub) -> None:
    """ModelMetadata names the platform and the tensors with -1 for the batch dimension."""
    meta = await stub(
        "ModelMetadata", pb.ModelMetadataRequest(name="strings"), pb.ModelMetadataResponse
    )
    assert meta.platform == "sklearn_joblib"
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("input", "FP64", [-1, 4])
    ]
    assert [t.name for t in meta.outputs] == ["label", "probabilities"]


@pytest.mark.parametrize("raw", [True, False], ids=["raw-contents", "typed-contents"])
async def test_grpc_infer_equals_predict_proba(stub: Stub, models_dir: Path, raw: bool) -> None:
    """ModelInfer with raw or typed contents: labels as BYTES, probabilities = predict_proba."""
    answer = await stub("ModelInfer", _infer_request("ints", raw=raw), pb.ModelInferResponse)
    assert (answer.id, answer.model_name, answer.model_version) == ("g-1", "ints", "1")
    label, probabilities = answer.outputs
    assert (label.datatype, list(label.shape)) == ("BYTES", [2])
    expected = joblib.load(models_dir / "ints.joblib").predict_proba(ROWS)
    if raw:
        assert len(answer.raw_output_contents) == 2
        values = np.frombuffer(answer.raw_output_contents[1], "<f8")
        assert answer.raw_output_contents[0] == b"\x02\0\0\x0010\x02\0\0\x0030"
    else:
        values = np.array(probabilities.contents.fp64_contents)
        assert list(label.contents.bytes_contents) == [b"10", b"30"]
    np.testing.assert_allclose(values.reshape(2, 3), expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("request_message", "code", "message"),
    [
        (_infer_request("nope", raw=True), grpc.StatusCode.NOT_FOUND, "unknown model 'nope'"),
        (
            _infer_request("ints", raw=True, rows=ROWS[:, :3]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "expected shape [-1, 4]",
        ),
    ],
    ids=["unknown-model", "wrong-shape"],
)
async def test_grpc_errors_map_to_status_codes(
    stub: Stub, request_message: pb.ModelInferRequest, code: grpc.StatusCode, message: str
) -> None:
    """Domain errors arrive with the matching gRPC status and their message."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub("ModelInfer", request_message, pb.ModelInferResponse)
    assert caught.value.code() == code
    assert message in (caught.value.details() or "")


@pytest.mark.parametrize("model", ["ints", "nope"], ids=["answered", "refused"])
async def test_grpc_request_id_comes_back_in_trailing_metadata(
    grpc_app: Callable[..., Any], model: str
) -> None:
    """The x-request-id a call sends is its request id and comes back, answered or refused,
    beside the error's code; with none sent, a generated one comes back."""
    async with grpc_app() as (_, channel):
        infer = channel.unary_unary(
            SERVICE + "ModelInfer",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        for sent in ((("x-request-id", "trace-7"),), None):
            call = infer(_infer_request(model, raw=True), metadata=sent, timeout=30)
            with contextlib.suppress(grpc.aio.AioRpcError):
                await call
            trailing = dict(await call.trailing_metadata() or ())
            if sent:
                assert trailing["x-request-id"] == "trace-7"
            else:
                assert len(str(trailing["x-request-id"])) == 32
            assert ("modelserve-code" in trailing) is (model == "nope")


async def test_grpc_probe_calls_stay_out_of_the_stats_traffic(
    grpc_app: Callable[..., Any],
) -> None:
    """/stats counts a gRPC ModelInfer as traffic, and its probe calls no more than it counts
    /v2/health/ready."""
    running = grpc_app()
    async with running as (stub, _):
        running.client.app.state.stats_cache = StatsCache(ttl_s=0)

        async def traffic() -> int:
            body = (await running.http.get("/stats")).json()
            return int(body["traffic"]["requests_total"])

        before = await traffic()
        for _ in range(3):
            await stub("ServerReady", pb.ServerReadyRequest(), pb.ServerReadyResponse)
            await stub("ModelReady", pb.ModelReadyRequest(name="ints"), pb.ModelReadyResponse)
        await stub("ModelInfer", _infer_request("ints", raw=True), pb.ModelInferResponse)
        assert await traffic() - before == 1


async def test_grpc_message_over_the_limit_names_the_setting(
    grpc_app: Callable[..., Any],
) -> None:
    """A message over server.max_body_bytes is RESOURCE_EXHAUSTED naming that setting."""
    async with grpc_app(server={"max_body_bytes": 4096}) as (stub, _):
        rows = np.zeros((200, 4))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub(
                "ModelInfer", _infer_request("ints", raw=True, rows=rows), pb.ModelInferResponse
            )
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "server.max_body_bytes" in (caught.value.details() or "")


async def test_grpc_standard_health_and_reflection(grpc_app: Callable[..., Any]) -> None:
    """grpc.health.v1 says SERVING; reflection lists the V2 service."""
    async with grpc_app() as (_, channel):
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(
            health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService")
        )
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for reply in reflection.ServerReflectionInfo(iter([request])):
            names = {s.name for s in reply.list_services_response.service}
            break
    assert "inference.GRPCInferenceService" in names


def _auth(**extra: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "keys": [
            {"name": "ops", "key": ADMIN_KEY, "scopes": ["admin", "predict"]},
            {"name": "app", "key": PREDICT_KEY, "scopes": ["predict"]},
        ],
        **extra,
    }


async def test_grpc_api_keys_from_bearer_metadata(grpc_app: Callable[..., Any]) -> None:
    """With auth on: no key is UNAUTHENTICATED, a predict key infers, probes stay open."""
    async with grpc_app(auth=_auth()) as (stub, _):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub("ModelInfer", _infer_request("ints", raw=True), pb.ModelInferResponse)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        answer = await stub(
            "ModelInfer", _infer_request("ints", raw=True), pb.ModelInferResponse, PREDICT_KEY
        )
        assert answer.model_name == "ints"
        assert (await stub("ServerReady", pb.ServerReadyRequest(), pb.ServerReadyResponse)).ready


async def test_grpc_repository_needs_the_admin_scope(grpc_app: Callable[..., Any]) -> None:
    """Repository calls: a predict key is PERMISSION_DENIED, an admin key lists and reloads,
    and unloading the version a model's routing names is refused as the admin API refuses it."""
    async with grpc_app(auth=_auth()) as (stub, _):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub(
                "RepositoryIndex",
                pb.RepositoryIndexRequest(),
                pb.RepositoryIndexResponse,
                PREDICT_KEY,
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        index = await stub(
            "RepositoryIndex", pb.RepositoryIndexRequest(), pb.RepositoryIndexResponse, ADMIN_KEY
        )
        assert {(m.name, m.state) for m in index.models} >= {("ints", "READY")}
        await stub(
            "RepositoryModelLoad",
            pb.RepositoryModelLoadRequest(model_name="bools"),
            pb.RepositoryModelLoadResponse,
            ADMIN_KEY,
        )
        ready = await stub("ModelReady", pb.ModelReadyRequest(name="bools"), pb.ModelReadyResponse)
        assert ready.ready
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub(
                "RepositoryModelUnload",
                pb.RepositoryModelUnloadRequest(model_name="bools"),
                pb.RepositoryModelUnloadResponse,
                ADMIN_KEY,
            )
        # As on the admin API: the version the routing names keeps serving.
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "route traffic away from it first" in (refused.value.details() or "")


async def test_grpc_repository_is_unimplemented_without_auth(stub: Stub) -> None:
    """With auth off the repository calls do not exist, as the admin API does not."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub("RepositoryIndex", pb.RepositoryIndexRequest(), pb.RepositoryIndexResponse)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
