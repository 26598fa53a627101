"""Errors of the Open Inference Protocol as the issue's error model says, against a real server
over V2 REST and gRPC: a model that raises is 500 / INTERNAL with no internals, a version that
is not ready is 503 / UNAVAILABLE with a retry-after, and the repository loads configured
artifacts only (an unknown name is 404, an artifact or config of the caller's own is refused)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import cast

import grpc
import httpx
import orjson
import pytest
from google.protobuf.message import Message

from modelserve.rpc import inference_pb2 as pb
from tests.conftest import free_port
from tests.e2e.conftest import RunningServer, write_config

pytestmark = pytest.mark.e2e

KEY = "e2e-v2-errors-ops-2b9d4f6a8c1e3a5b"
HEADERS = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
POISON = [666.0, 0.0, 0.0, 0.0]
SETOSA = [5.1, 3.5, 1.4, 0.2]
LEAKS = ("secret", "Traceback", "RuntimeError", "poisoned", ".py")
WAIT_S = 30.0


@pytest.fixture(scope="module")
def server(
    serve_modelserve_module: Callable[..., RunningServer],
    tmp_path_factory: pytest.TempPathFactory,
    demo_models_dir: Path,
    fake_models_dir: Path,
) -> tuple[RunningServer, int]:
    """iris; failing (raises on a poisoned row); ghost (its file is absent: never ready)."""
    directory = tmp_path_factory.mktemp("v2-errors")
    models = [
        {"name": "iris", "path": str(demo_models_dir / "iris.joblib")},
        {"name": "failing", "path": str(fake_models_dir / "failing.joblib")},
        {"name": "ghost", "path": str(directory / "absent.joblib"), "required": False},
    ]
    grpc_port = free_port()
    config = write_config(
        directory,
        {
            "models": models,
            "cache": {"backend": "none"},
            "auth": {
                "enabled": True,
                "keys": [{"name": "ops", "key": KEY, "scopes": ["predict", "admin"]}],
            },
            "server": {"grpc_port": grpc_port},
        },
    )
    return serve_modelserve_module(config), grpc_port


def _rest_infer(server: RunningServer, model: str, row: list[float]) -> httpx.Response:
    body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": row}]}
    return httpx.post(
        f"{server.base_url}/v2/models/{model}/infer",
        content=orjson.dumps(body),
        headers=HEADERS,
        timeout=WAIT_S,
    )


def _grpc(port: int, method: str, request: Message, response: type[Message]) -> grpc.Call:
    """One call with the admin key; the error it raised (the test expects one)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            f"/inference.GRPCInferenceService/{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=response.FromString,
        )
        try:
            call(request, metadata=(("authorization", f"Bearer {KEY}"),), timeout=WAIT_S)
        except grpc.RpcError as exc:
            return cast(grpc.Call, exc)  # a failed call's error is also its Call
    raise AssertionError(f"{method} succeeded")


def _grpc_infer(port: int, model: str, row: list[float]) -> grpc.Call:
    request = pb.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name="input", datatype="FP64", shape=[1, 4])
    tensor.contents.fp64_contents.extend(row)
    return _grpc(port, "ModelInfer", request, pb.ModelInferResponse)


def _trailing(error: grpc.Call) -> dict[str, str]:
    return {k: v for k, v in error.trailing_metadata() or () if isinstance(v, str)}


def test_v2_model_exception_is_500_and_internal_without_internals(
    server: tuple[RunningServer, int],
) -> None:
    """A model that raises: 500 {"error"} over REST, INTERNAL over gRPC, the same generic
    message, nothing of the exception, its frames or files."""
    running, grpc_port = server
    rest = _rest_infer(running, "failing", POISON)
    rpc = _grpc_infer(grpc_port, "failing", POISON)

    assert rest.status_code == 500
    assert list(rest.json()) == ["error"]
    assert rpc.code() == grpc.StatusCode.INTERNAL
    assert rpc.details() == rest.json()["error"]
    for leak in LEAKS:
        assert leak not in rest.text
        assert leak not in (rpc.details() or "")
    assert _rest_infer(running, "failing", SETOSA).status_code == 200  # it still serves


def test_v2_version_not_ready_is_503_and_unavailable_with_a_retry_after(
    server: tuple[RunningServer, int],
) -> None:
    """A version that is not ready: 503 {"error"} with Retry-After over REST, UNAVAILABLE with
    a retry-after trailing entry over gRPC, both saying why."""
    running, grpc_port = server
    rest = _rest_infer(running, "ghost", SETOSA)
    rpc = _grpc_infer(grpc_port, "ghost", SETOSA)

    assert rest.status_code == 503
    assert list(rest.json()) == ["error"]
    assert "is not ready" in rest.json()["error"]
    assert rest.headers["retry-after"] == "1"
    assert rpc.code() == grpc.StatusCode.UNAVAILABLE
    assert _trailing(rpc)["retry-after"] == "1"
    assert _trailing(rpc)["modelserve-code"] == "model_not_ready"


def test_v2_repository_load_of_an_unconfigured_model_is_404(
    server: tuple[RunningServer, int],
) -> None:
    """Only configured models load: another name is 404 {"error"} / NOT_FOUND."""
    running, grpc_port = server
    rest = httpx.post(
        running.base_url + "/v2/repository/models/other/load",
        content=b"{}",
        headers=HEADERS,
        timeout=WAIT_S,
    )
    load = pb.RepositoryModelLoadRequest(model_name="other")
    rpc = _grpc(grpc_port, "RepositoryModelLoad", load, pb.RepositoryModelLoadResponse)
    assert rest.status_code == 404
    assert "unknown model 'other'" in rest.json()["error"]
    assert rpc.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    "parameter", ["file:1/model.joblib", "config"], ids=["file-override", "config-override"]
)
def test_v2_repository_load_refuses_an_artifact_or_config_of_its_own(
    server: tuple[RunningServer, int], parameter: str
) -> None:
    """Triton's load takes a model file or config in its parameters; here that is 400
    {"error"} / INVALID_ARGUMENT, not a silent load of the configured artifact."""
    running, grpc_port = server
    body = {"parameters": {parameter: "aGVsbG8="}}
    rest = httpx.post(
        running.base_url + "/v2/repository/models/iris/load",
        content=orjson.dumps(body),
        headers=HEADERS,
        timeout=WAIT_S,
    )
    load = pb.RepositoryModelLoadRequest(
        model_name="iris", parameters={parameter: pb.ModelRepositoryParameter(bytes_param=b"x")}
    )
    rpc = _grpc(grpc_port, "RepositoryModelLoad", load, pb.RepositoryModelLoadResponse)

    assert rest.status_code == 400
    assert "only configured artifacts load" in rest.json()["error"]
    assert parameter in rest.json()["error"]
    assert rpc.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "only configured artifacts load" in (rpc.details() or "")
