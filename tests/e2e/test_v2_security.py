"""The Open Inference Protocol held to the main API's security rules, against real servers:
bodies a browser sends without a preflight are refused, the failed-authentication limit
counts on gRPC and on the probe port too, readiness fails while draining, and no model name
hides a fixed path."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import grpc
import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from modelserve.rpc import inference_pb2 as pb
from tests.conftest import free_port, pythonpath_env
from tests.e2e.conftest import IRIS_ONNX, MODELSERVE, RunningServer, write_config

pytestmark = pytest.mark.e2e

KEY = "e2e-v2-security-4f1a9c3e7b5d2a8c"
WRONG_KEY = "e2e-v2-security-wrong-0e2c4a6b8d"
ROW = [5.1, 3.5, 1.4, 0.2]
INFER = orjson.dumps(
    {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
)
WAIT_S = 30.0


def _config(directory: Path, demo_models_dir: Path, **sections: object) -> Path:
    auth = {
        "enabled": True,
        "keys": [{"name": "ops", "key": KEY, "scopes": ["predict", "admin"]}],
        **sections.pop("auth", {}),  # type: ignore[dict-item]
    }
    models = [{"name": "iris", "path": str(demo_models_dir / IRIS_ONNX)}]
    return write_config(directory, {"models": models, "auth": auth, **sections})


@pytest.fixture(scope="module")
def server(
    serve_modelserve_module: Callable[..., RunningServer],
    tmp_path_factory: pytest.TempPathFactory,
    demo_models_dir: Path,
) -> RunningServer:
    """Auth on with an admin key, so the repository routes are served too."""
    return serve_modelserve_module(_config(tmp_path_factory.mktemp("v2-security"), demo_models_dir))


BROWSER_SIMPLE = [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
BROWSER_IDS = ["none", "text", "form", "multipart"]


@pytest.mark.parametrize("content_type", BROWSER_SIMPLE, ids=BROWSER_IDS)
@pytest.mark.parametrize("path", ["/v2/models/iris/infer", "/v2/models/iris/versions/1/infer"])
def test_v2_infer_refuses_a_body_a_page_could_send_without_a_preflight(
    server: RunningServer, path: str, content_type: str | None
) -> None:
    """V2 infer without a JSON or binary-extension body is 415, in the V2 error body; the
    same body declared JSON is served."""
    headers = {"Authorization": f"Bearer {KEY}"}
    sent = {**headers, "Content-Type": content_type} if content_type else headers
    refused = httpx.post(server.base_url + path, content=INFER, headers=sent, timeout=WAIT_S)
    served = httpx.post(
        server.base_url + path,
        content=INFER,
        headers={**headers, "Content-Type": "application/json"},
        timeout=WAIT_S,
    )

    assert refused.status_code == 415
    assert set(refused.json()) == {"error"}
    assert "Inference-Header-Content-Length" in refused.json()["error"]
    assert served.status_code == 200


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/json"], ids=["text-plain", "json"]
)
def test_v2_infer_binary_extension_needs_octet_stream_or_no_type(
    server: RunningServer, content_type: str
) -> None:
    """With Inference-Header-Content-Length, text/plain is still refused: only the binary
    extension's own type (or none) and JSON pass; here the JSON header is the whole body."""
    headers = {
        "Authorization": f"Bearer {KEY}",
        "Inference-Header-Content-Length": str(len(INFER)),
        "Content-Type": content_type,
    }
    response = httpx.post(
        server.base_url + "/v2/models/iris/infer", content=INFER, headers=headers, timeout=WAIT_S
    )
    assert response.status_code == (415 if content_type == "text/plain" else 200)


def _text(labels: np.ndarray) -> list[str]:
    """BYTES elements as text (tritonclient gives binary ones as bytes, JSON ones as str)."""
    return [v.decode() if isinstance(v, bytes) else str(v) for v in labels.ravel().tolist()]


def test_v2_infer_from_tritonclient_binary_is_served_and_json_needs_its_type(
    server: RunningServer,
) -> None:
    """tritonclient declares no Content-Type: its binary requests (the default) carry
    Inference-Header-Content-Length and are served; a JSON-only one must say it is JSON."""
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}", network_timeout=30)
    rows = np.array([ROW])

    def auth() -> dict[str, str]:  # tritonclient adds its own headers to the dict it is given
        return {"Authorization": f"Bearer {KEY}"}

    try:
        binary = httpclient.InferInput("input", [1, 4], "FP64")
        binary.set_data_from_numpy(rows)
        labels = client.infer("iris", [binary], headers=auth()).as_numpy("label")
        plain = httpclient.InferInput("input", [1, 4], "FP64")
        plain.set_data_from_numpy(rows, binary_data=False)
        with pytest.raises(InferenceServerException) as refused:
            client.infer("iris", [plain], headers=auth())
        declared = client.infer(
            "iris", [plain], headers={**auth(), "Content-Type": "application/json"}
        )
    finally:
        client.close()
    assert refused.value.status() == "415"
    assert _text(declared.as_numpy("label")) == _text(labels) == ["0"]  # class 0: setosa


@pytest.mark.parametrize(
    "path",
    [
        "/v2/repository/index",
        "/v2/repository/models/iris/load",
        "/v2/repository/models/iris/unload",
    ],
    ids=["index", "load", "unload"],
)
@pytest.mark.parametrize("content_type", [None, "text/plain"], ids=["none", "text"])
def test_v2_repository_posts_take_json_only(
    server: RunningServer, path: str, content_type: str | None
) -> None:
    """Repository calls (admin) refuse a body not declared JSON with 415 before acting."""
    headers = {"Authorization": f"Bearer {KEY}"}
    sent = {**headers, "Content-Type": content_type} if content_type else headers
    refused = httpx.post(server.base_url + path, content=b"{}", headers=sent, timeout=WAIT_S)
    assert refused.status_code == 415
    assert set(refused.json()) == {"error"}
    # Nothing was unloaded: the model still serves.
    ready = httpx.get(server.base_url + "/v2/models/iris/ready", timeout=WAIT_S)
    assert ready.status_code == 200


def test_v2_repository_load_declared_json_is_served(server: RunningServer) -> None:
    """The same call declared JSON goes through (so the 415 above is about the type)."""
    response = httpx.post(
        server.base_url + "/v2/repository/models/iris/load",
        content=b"{}",
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        timeout=WAIT_S,
    )
    assert response.status_code == 200


def _grpc_infer(port: int, key: str) -> grpc.Call | None:
    """One ModelInfer with ``key``; the error it raised, or None when it succeeded."""
    request = pb.ModelInferRequest(model_name="iris")
    tensor = request.inputs.add(name="input", datatype="FP64", shape=[1, 4])
    tensor.contents.fp64_contents.extend(ROW)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        try:
            call(request, metadata=(("authorization", f"Bearer {key}"),), timeout=WAIT_S)
        except grpc.RpcError as exc:
            return cast(grpc.Call, exc)  # a failed call's error is also its Call
    return None


def _trailing(error: grpc.Call) -> dict[str, str]:
    return {k: v for k, v in error.trailing_metadata() or () if isinstance(v, str)}


def test_grpc_failed_authentications_are_limited_per_address(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path, demo_models_dir: Path
) -> None:
    """After failed_auth_limit wrong keys over gRPC the address gets RESOURCE_EXHAUSTED
    (too_many_auth_failures, a retry-after), a right key too, and so does HTTP: one count."""
    grpc_port = free_port()
    config = _config(
        tmp_path,
        demo_models_dir,
        auth={"failed_auth_limit": "3/hour"},
        server={"grpc_port": grpc_port},
    )
    server = serve_modelserve(config)

    wrong = [_grpc_infer(grpc_port, WRONG_KEY) for _ in range(5)]
    right = _grpc_infer(grpc_port, KEY)
    http = httpx.post(
        server.base_url + "/v2/models/iris/infer",
        content=INFER,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        timeout=WAIT_S,
    )

    codes = [e.code() if e is not None else None for e in wrong]
    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 3 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2
    assert wrong[-1] is not None
    trailing = _trailing(wrong[-1])
    assert trailing["modelserve-code"] == "too_many_auth_failures"
    assert int(trailing["retry-after"]) > 0
    assert right is not None
    assert right.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert http.status_code == 429


def test_probe_port_failed_authentications_are_limited_per_address(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path, demo_models_dir: Path
) -> None:
    """/metrics on the probe port needs a key (auth on protects metrics): wrong keys count
    toward failed_auth_limit there too, then 429 with Retry-After, a right key included."""
    probe_port = free_port()
    config = _config(
        tmp_path,
        demo_models_dir,
        auth={"failed_auth_limit": "3/hour"},
        server={"probe_port": probe_port},
    )
    serve_modelserve(config)
    url = f"http://127.0.0.1:{probe_port}/metrics"

    wrong = [
        httpx.get(url, headers={"Authorization": f"Bearer {WRONG_KEY}"}, timeout=WAIT_S)
        for _ in range(5)
    ]
    right = httpx.get(url, headers={"Authorization": f"Bearer {KEY}"}, timeout=WAIT_S)
    health = httpx.get(f"http://127.0.0.1:{probe_port}/health", timeout=WAIT_S)

    assert [r.status_code for r in wrong] == [401] * 3 + [429] * 2
    assert wrong[-1].json()["code"] == "too_many_auth_failures"
    assert int(wrong[-1].headers["retry-after"]) > 0
    assert right.status_code == 429
    assert health.status_code == 200  # open probes need no key, so no lockout either


def _status(url: str) -> int:
    return httpx.get(url, timeout=WAIT_S).status_code


def _grpc_model_ready(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelReady",
            request_serializer=pb.ModelReadyRequest.SerializeToString,
            response_deserializer=pb.ModelReadyResponse.FromString,
        )
        return bool(call(pb.ModelReadyRequest(name="iris"), timeout=WAIT_S).ready)


def test_v2_readiness_fails_while_draining(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path, demo_models_dir: Path
) -> None:
    """From SIGTERM, through the pre-stop delay, every readiness answer is not-ready: /ready,
    /v2/health/ready, /v2/models/{name}[/versions/{v}]/ready and gRPC ModelReady."""
    grpc_port = free_port()
    config = _config(
        tmp_path, demo_models_dir, server={"prestop_delay_s": 30, "grpc_port": grpc_port}
    )
    server = serve_modelserve(config)
    url = server.base_url
    paths = ["/v2/health/ready", "/v2/models/iris/ready", "/v2/models/iris/versions/1/ready"]
    assert [_status(url + p) for p in paths] == [200, 200, 200]
    assert _grpc_model_ready(grpc_port)

    server.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + WAIT_S
    while _status(url + "/ready") != 503:
        assert time.monotonic() < deadline, "/ready never failed after SIGTERM"
        time.sleep(0.05)
    draining = [_status(url + p) for p in paths]
    grpc_ready = _grpc_model_ready(grpc_port)
    still_predicting = httpx.post(
        url + "/v2/models/iris/infer",
        content=INFER,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        timeout=WAIT_S,
    ).status_code
    assert server.stop() == 0  # the second signal cuts the pre-stop delay short

    assert draining == [503, 503, 503]
    assert not grpc_ready
    assert still_predicting == 200  # the pre-stop delay still serves what arrives


def test_a_model_named_stats_is_refused_at_startup(tmp_path: Path, demo_models_dir: Path) -> None:
    """GET /v2/models/stats is the statistics of every model: a model of that name could never
    have its metadata read there, so serve refuses the name and says why."""
    models = [{"name": "stats", "path": str(demo_models_dir / IRIS_ONNX)}]
    config = write_config(tmp_path, {"models": models})
    finished = subprocess.run(
        [*MODELSERVE, "serve", "--config", str(config), "--port", str(free_port())],
        capture_output=True,
        timeout=60,
        env=pythonpath_env(),
        check=False,
    )
    output = (finished.stdout + finished.stderr).decode()
    assert finished.returncode == 2, output
    assert "'stats' is reserved" in output
    assert "/v2/models/stats" in output
