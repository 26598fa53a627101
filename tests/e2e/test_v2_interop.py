"""The official Triton clients (``tritonclient[http]`` and ``tritonclient[grpc]``) against a real
``modelserve serve --grpc-port`` process: health, metadata, JSON / binary / raw inference,
versions and errors, with answers equal to the library's own predict_proba."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from modelserve.api.routes.table import declare_routes
from modelserve.settings import load_settings
from tests.conftest import free_port
from tests.e2e.conftest import RunningServer
from tests.label_models import build_label_models

pytestmark = pytest.mark.e2e

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])
LABELS = {
    "strings": [b"setosa", b"virginica", b"versicolor"],
    "ints": [b"10", b"30", b"20"],
    "bools": [b"True", b"False", b"False"],
}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("interop-models")
    build_label_models(out)
    return out


@pytest.fixture(scope="module")
def server(
    serve_modelserve_module: Callable[..., RunningServer], models_dir: Path
) -> tuple[RunningServer, int]:
    grpc_port = free_port()
    running = serve_modelserve_module(models_dir / "modelserve.yaml", "--grpc-port", str(grpc_port))
    return running, grpc_port


@pytest.fixture(scope="module")
def http(server: tuple[RunningServer, int]) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(f"127.0.0.1:{server[0].port}", network_timeout=30)


@pytest.fixture(scope="module")
def grpc(server: tuple[RunningServer, int]) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(f"127.0.0.1:{server[1]}")


def _predict_proba(models_dir: Path, name: str, rows: np.ndarray) -> np.ndarray:
    return np.asarray(joblib.load(models_dir / f"{name}.joblib").predict_proba(rows))


def _as_bytes(array: np.ndarray) -> list[bytes]:
    """BYTES elements as bytes (tritonclient.http gives JSON BYTES data back as str)."""
    return [v if isinstance(v, bytes) else str(v).encode() for v in array.ravel().tolist()]


def test_interop_http_health_and_metadata(http: httpclient.InferenceServerClient) -> None:
    """Live, ready, model ready (with and without version), server and model metadata."""
    assert http.is_server_live()
    assert http.is_server_ready()
    assert http.is_model_ready("ints")
    assert http.is_model_ready("ints", "1")
    assert not http.is_model_ready("ints", "9")
    assert "binary_tensor_data" in http.get_server_metadata()["extensions"]
    meta = http.get_model_metadata("strings")
    assert meta["platform"] == "sklearn_joblib"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]


def test_interop_kserve_rest_client_reads_server_health_from_the_body(
    server: tuple[RunningServer, int],
) -> None:
    """KServe's REST client (InferenceRESTClient, protocol v2) returns ``live`` and ``ready``
    of a 200's JSON body, as KServe's own server sends them: an empty body made it raise."""
    base = server[0].base_url
    for path, field in (("/v2/health/live", "live"), ("/v2/health/ready", "ready")):
        response = httpx.get(base + path, timeout=30)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {field: True}


def test_interop_grpc_health_and_metadata(grpc: grpcclient.InferenceServerClient) -> None:
    """The same facts over gRPC."""
    assert grpc.is_server_live()
    assert grpc.is_server_ready()
    assert grpc.is_model_ready("ints", "1")
    assert "classification" in grpc.get_server_metadata().extensions
    meta = grpc.get_model_metadata("strings", "1")
    assert (meta.platform, list(meta.inputs[0].shape)) == ("sklearn_joblib", [-1, 4])


@pytest.mark.parametrize("name", list(LABELS), ids=list(LABELS))
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_interop_http_infer_equals_predict_proba(
    http: httpclient.InferenceServerClient, models_dir: Path, name: str, binary: bool
) -> None:
    """tritonclient.http infer, JSON or binary both ways: labels as BYTES, exact probabilities.

    tritonclient declares no Content-Type: a JSON-only request says it is JSON with
    ``headers=`` (a binary one carries Inference-Header-Content-Length, which is enough)."""
    tensor = httpclient.InferInput("input", list(ROWS.shape), "FP64")
    tensor.set_data_from_numpy(ROWS, binary_data=binary)
    outputs = [
        httpclient.InferRequestedOutput("label", binary_data=binary),
        httpclient.InferRequestedOutput("probabilities", binary_data=binary),
    ]
    headers = None if binary else {"Content-Type": "application/json"}
    result = http.infer(
        name, [tensor], outputs=outputs, request_id="h-1", model_version="1", headers=headers
    )
    assert result.get_response()["id"] == "h-1"
    assert _as_bytes(result.as_numpy("label")) == LABELS[name]
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), _predict_proba(models_dir, name, ROWS), rtol=1e-12
    )


@pytest.mark.parametrize("name", list(LABELS), ids=list(LABELS))
def test_interop_grpc_raw_infer_equals_predict_proba(
    grpc: grpcclient.InferenceServerClient, models_dir: Path, name: str
) -> None:
    """tritonclient.grpc infer (raw_input_contents): labels as BYTES, exact probabilities."""
    tensor = grpcclient.InferInput("input", list(ROWS.shape), "FP64")
    tensor.set_data_from_numpy(ROWS)
    result = grpc.infer(name, [tensor], request_id="g-1")
    assert result.get_response().id == "g-1"
    assert list(result.as_numpy("label")) == LABELS[name]
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), _predict_proba(models_dir, name, ROWS), rtol=1e-12
    )


def test_interop_fp32_inputs_and_classification(
    http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    """FP32 inputs are accepted by both clients; class_count returns score:index:label."""
    rows = ROWS.astype(np.float32)
    http_input = httpclient.InferInput("input", list(rows.shape), "FP32")
    http_input.set_data_from_numpy(rows)
    top = http.infer(
        "strings",
        [http_input],
        outputs=[httpclient.InferRequestedOutput("probabilities", class_count=1)],
    ).as_numpy("probabilities")
    grpc_input = grpcclient.InferInput("input", list(rows.shape), "FP32")
    grpc_input.set_data_from_numpy(rows)
    grpc_top = grpc.infer(
        "strings",
        [grpc_input],
        outputs=[grpcclient.InferRequestedOutput("probabilities", class_count=1)],
    ).as_numpy("probabilities")
    assert [cell.split(b":")[2] for cell in _as_bytes(top)] == LABELS["strings"]
    assert _as_bytes(top) == _as_bytes(grpc_top)


def test_interop_http_errors(http: httpclient.InferenceServerClient) -> None:
    """Unknown model and a wrong shape raise with the server's message and status."""
    tensor = httpclient.InferInput("input", [3, 3], "FP64")
    tensor.set_data_from_numpy(ROWS[:, :3])
    with pytest.raises(InferenceServerException, match="unknown model 'nope'") as unknown:
        http.infer("nope", [tensor])
    assert unknown.value.status() == "404"
    with pytest.raises(InferenceServerException, match=r"expected shape \[-1, 4\]") as shape:
        http.infer("ints", [tensor])
    assert shape.value.status() == "400"


def test_interop_grpc_errors(grpc: grpcclient.InferenceServerClient) -> None:
    """The same errors over gRPC carry NOT_FOUND and INVALID_ARGUMENT."""
    tensor = grpcclient.InferInput("input", [3, 3], "FP64")
    tensor.set_data_from_numpy(ROWS[:, :3])
    with pytest.raises(InferenceServerException, match="unknown model 'nope'") as unknown:
        grpc.infer("nope", [tensor])
    assert unknown.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException, match="has no version '7'") as version:
        grpc.infer("ints", [tensor], model_version="7")
    assert version.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException, match=r"expected shape \[-1, 4\]") as shape:
        grpc.infer("ints", [tensor])
    assert shape.value.status() == "StatusCode.INVALID_ARGUMENT"


def _stats(http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient) -> Any:
    """(inference_count, execution_count, success count) of ints 1, over REST and gRPC."""
    (by_rest,) = http.get_inference_statistics("ints", "1")["model_stats"]
    (by_grpc,) = grpc.get_inference_statistics("ints", "1").model_stats
    rest = (
        by_rest["inference_count"],
        by_rest["execution_count"],
        by_rest["inference_stats"]["success"]["count"],
    )
    rpc = (by_grpc.inference_count, by_grpc.execution_count, by_grpc.inference_stats.success.count)
    return rest, rpc


def test_interop_statistics_count_rows_alike_over_rest_and_grpc(
    http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    """The statistics extension through both clients: one 3-row infer over REST and one over
    gRPC add 6 inferences and 2 successes, and both transports report the same figures."""
    rows = ROWS + 0.01  # rows no other test sent: the first infer is computed, not cached
    (before, before_rpc) = _stats(http, grpc)
    tensor = httpclient.InferInput("input", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows)
    http.infer("ints", [tensor], model_version="1")
    grpc_tensor = grpcclient.InferInput("input", list(rows.shape), "FP64")
    grpc_tensor.set_data_from_numpy(rows)
    grpc.infer("ints", [grpc_tensor], model_version="1")
    (after, after_rpc) = _stats(http, grpc)

    assert before == before_rpc
    assert after == after_rpc
    inferences, executions, successes = (a - b for a, b in zip(after, before, strict=True))
    assert (inferences, successes) == (6, 2)
    assert 1 <= executions <= 2  # the cache or one batch may serve both


def test_interop_openapi_of_the_running_server_describes_every_v2_route(
    server: tuple[RunningServer, int], models_dir: Path
) -> None:
    """The live /openapi.json has an entry for every V2 route the server declares (method and
    path), and V2 infer's request and error bodies are the protocol's."""
    declared = {
        (method.lower(), spec.path)
        for spec in declare_routes(load_settings(models_dir / "modelserve.yaml"))
        if spec.path.startswith("/v2")
        for method in spec.methods
    }
    document = httpx.get(server[0].base_url + "/openapi.json", timeout=30).json()
    documented = {
        (method, path)
        for path, item in document["paths"].items()
        if path.startswith("/v2")
        for method in item
    }
    assert declared
    assert documented == declared
    infer = document["paths"]["/v2/models/{name}/infer"]["post"]
    body = infer["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body.endswith("/V2InferenceRequest")
    error = infer["responses"]["404"]["content"]["application/json"]["schema"]["$ref"]
    assert error.endswith("/V2Error")
