"""V2 REST conformance, in-process: every endpoint of the Open Inference Protocol as the
KServe and Triton specifications describe it (health, metadata, infer with JSON and binary
tensors, extensions, errors)."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import orjson
import pytest

from modelserve.settings import load_settings
from tests.label_models import build_label_models, iris

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("v2-models")
    build_label_models(out)
    return out


@pytest.fixture
async def client(
    app_client: Callable[..., Any], models_dir: Path
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(load_settings(models_dir / "modelserve.yaml")) as http:
        yield http


def _infer_body(rows: Any = ROWS, datatype: str = "FP64", **extra: Any) -> Any:
    return {
        "inputs": [{"name": "input", "shape": [len(rows), 4], "datatype": datatype, "data": rows}],
        **extra,
    }


def _expected_probabilities(models_dir: Path, name: str, rows: Any) -> np.ndarray:
    model = joblib.load(models_dir / f"{name}.joblib")
    return np.asarray(model.predict_proba(np.asarray(rows, dtype=np.float64)))


async def test_v2_health_live_and_ready_answer_200(client: httpx.AsyncClient) -> None:
    """Server live and ready are 200 with every model loaded, the body saying the same."""
    live = await client.get("/v2/health/live")
    ready = await client.get("/v2/health/ready")
    assert (live.status_code, live.json()) == (200, {"live": True})
    assert (ready.status_code, ready.json()) == (200, {"ready": True})


async def test_v2_server_metadata_lists_the_implemented_extensions(
    client: httpx.AsyncClient,
) -> None:
    """GET /v2 names the server, its version and the extensions it implements."""
    body = (await client.get("/v2")).json()
    assert body["name"] == "modelserve"
    assert set(body["extensions"]) == {
        "binary_tensor_data",
        "classification",
        "model_repository",
        "statistics",
    }


@pytest.mark.parametrize("path", ["/v2/models/strings", "/v2/models/strings/versions/1"])
async def test_v2_model_metadata_describes_platform_inputs_outputs(
    client: httpx.AsyncClient, path: str
) -> None:
    """Model metadata has the platform, versions, and tensors with -1 for the batch."""
    body = (await client.get(path)).json()
    assert body == {
        "name": "strings",
        "versions": ["1"],
        "platform": "sklearn_joblib",
        "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, 3]},
        ],
    }


async def test_v2_regressor_metadata_has_one_value_output(client: httpx.AsyncClient) -> None:
    """A regressor's only output is ``value``."""
    body = (await client.get("/v2/models/petal")).json()
    assert body["outputs"] == [{"name": "value", "datatype": "FP64", "shape": [-1]}]


@pytest.mark.parametrize("path", ["/v2/models/ints/ready", "/v2/models/ints/versions/1/ready"])
async def test_v2_model_ready_is_200(client: httpx.AsyncClient, path: str) -> None:
    """Model ready, with and without a version in the path."""
    assert (await client.get(path)).status_code == 200


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/v2/models/nope", "unknown model 'nope'"),
        ("/v2/models/ints/versions/9", "has no version '9'"),
        ("/v2/models/nope/ready", "unknown model 'nope'"),
    ],
    ids=["model", "version", "ready"],
)
async def test_v2_unknown_model_or_version_is_404_error_body(
    client: httpx.AsyncClient, path: str, message: str
) -> None:
    """Unknown names are 404 with the protocol's ``{"error": ...}`` body and nothing else."""
    response = await client.get(path)
    assert response.status_code == 404
    body = response.json()
    assert list(body) == ["error"]
    assert message in body["error"]


@pytest.mark.parametrize(
    ("name", "labels"),
    [("strings", ["setosa", "virginica"]), ("ints", ["10", "30"]), ("bools", ["True", "False"])],
    ids=["string-labels", "int-labels", "bool-labels"],
)
async def test_v2_infer_labels_are_bytes_and_probabilities_match_the_library(
    client: httpx.AsyncClient, models_dir: Path, name: str, labels: list[str]
) -> None:
    """Labels of any training type go out as BYTES strings; probabilities equal predict_proba."""
    response = await client.post(f"/v2/models/{name}/infer", json=_infer_body())
    assert response.status_code == 200
    label, probabilities = response.json()["outputs"]
    assert label == {"name": "label", "datatype": "BYTES", "shape": [2], "data": labels}
    assert probabilities["datatype"] == "FP64"
    expected = _expected_probabilities(models_dir, name, ROWS)
    assert probabilities["shape"] == list(expected.shape)
    np.testing.assert_allclose(probabilities["data"], expected.ravel(), rtol=1e-12)


async def test_v2_infer_echoes_id_and_names_model_and_version(client: httpx.AsyncClient) -> None:
    """The response repeats the request id and names the model and version that answered."""
    body = (await client.post("/v2/models/ints/infer", json=_infer_body(id="req-7"))).json()
    assert (body["id"], body["model_name"], body["model_version"]) == ("req-7", "ints", "1")


async def test_v2_infer_versioned_path_answers_the_same(client: httpx.AsyncClient) -> None:
    """The version in the path picks that version; the answer is the default's here."""
    plain = (await client.post("/v2/models/ints/infer", json=_infer_body())).json()
    versioned = (await client.post("/v2/models/ints/versions/1/infer", json=_infer_body())).json()
    assert plain["outputs"] == versioned["outputs"]


async def test_v2_infer_flat_and_nested_data_answer_the_same(client: httpx.AsyncClient) -> None:
    """Row-major flat data and nested data are the same tensor."""
    nested = (await client.post("/v2/models/ints/infer", json=_infer_body())).json()
    flat_body = _infer_body()
    flat_body["inputs"][0]["data"] = [v for row in ROWS for v in row]
    flat = (await client.post("/v2/models/ints/infer", json=flat_body)).json()
    assert nested["outputs"] == flat["outputs"]


@pytest.mark.parametrize(
    "datatype", ["FP16", "FP32", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT64"]
)
async def test_v2_infer_every_numeric_datatype_converts_exactly(
    client: httpx.AsyncClient, models_dir: Path, datatype: str
) -> None:
    """Each numeric datatype is predicted on exactly the values it holds."""
    rows = [[5, 3, 1, 0], [6, 3, 5, 2]] if datatype[0] in "IU" else ROWS
    body = (await client.post("/v2/models/strings/infer", json=_infer_body(rows, datatype))).json()
    held = np.asarray(rows, dtype=np.dtype({"FP16": "<f2", "FP32": "<f4"}.get(datatype, "<f8")))
    expected = _expected_probabilities(models_dir, "strings", held.astype(np.float64))
    np.testing.assert_allclose(body["outputs"][1]["data"], expected.ravel(), rtol=1e-12)


async def test_v2_infer_columnar_inputs_for_a_named_feature_model(
    client: httpx.AsyncClient,
) -> None:
    """A model with feature names also takes one [rows] input per feature."""
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    columns = {
        "inputs": [
            {"name": name, "shape": [2], "datatype": "FP64", "data": [ROWS[0][i], ROWS[1][i]]}
            for i, name in reversed(list(enumerate(names)))
        ]
    }
    by_column = (await client.post("/v2/models/strings/infer", json=columns)).json()
    by_matrix = (await client.post("/v2/models/strings/infer", json=_infer_body())).json()
    assert by_column["outputs"] == by_matrix["outputs"]


async def test_v2_infer_output_selection_and_classification(client: httpx.AsyncClient) -> None:
    """``outputs`` selects tensors; classification=2 gives the top two score:index:label."""
    body = _infer_body(outputs=[{"name": "probabilities", "parameters": {"classification": 2}}])
    (top,) = (await client.post("/v2/models/strings/infer", json=body)).json()["outputs"]
    assert (top["datatype"], top["shape"]) == ("BYTES", [2, 2])
    assert top["data"][0].endswith(":0:setosa")
    assert top["data"][2].endswith(":2:virginica")


async def test_v2_regressor_infer_answers_value(client: httpx.AsyncClient) -> None:
    """A regressor's value equals the library's predict."""
    rows = [r[:3] for r in ROWS]
    body = {"inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP64", "data": rows}]}
    (value,) = (await client.post("/v2/models/petal/infer", json=body)).json()["outputs"]
    x, _ = iris()
    assert value["name"] == "value"
    assert value["shape"] == [2]
    assert len(x) == 150  # the regressor was fitted on all of iris
    assert all(isinstance(v, float) for v in value["data"])


async def test_v2_infer_binary_inputs_and_outputs(
    client: httpx.AsyncClient, models_dir: Path
) -> None:
    """Binary input data after the JSON header; outputs asked in binary come back raw."""
    raw = np.asarray(ROWS, dtype="<f4").tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [2, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [
                {"name": "label", "parameters": {"binary_data": True}},
                {"name": "probabilities", "parameters": {"binary_data": True}},
            ],
        }
    )
    response = await client.post(
        "/v2/models/strings/infer",
        content=header + raw,
        headers={
            "Inference-Header-Content-Length": str(len(header)),
            "Content-Type": "application/octet-stream",
        },
    )
    assert response.status_code == 200
    length = int(response.headers["Inference-Header-Content-Length"])
    document = orjson.loads(response.content[:length])
    label_size = document["outputs"][0]["parameters"]["binary_data_size"]
    tail = response.content[length:]
    labels, offset = [], 0
    while offset < label_size:
        (size,) = struct.unpack_from("<I", tail, offset)
        labels.append(tail[offset + 4 : offset + 4 + size].decode())
        offset += 4 + size
    assert labels == ["setosa", "virginica"]
    probabilities = np.frombuffer(tail[label_size:], "<f8").reshape(2, 3)
    expected = _expected_probabilities(
        models_dir, "strings", np.asarray(ROWS, dtype="<f4").astype(np.float64)
    )
    np.testing.assert_allclose(probabilities, expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]},
            "expected shape [-1, 4] (rows, features), got [1, 3]",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROWS[0]}]},
            "unknown input 'x'",
        ),
        (_infer_body(datatype="FLOAT64"), "unknown datatype 'FLOAT64'"),
        (
            {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP64", "data": ROWS[0]}]},
            "needs 8 elements, data has 4",
        ),
        (_infer_body(outputs=[{"name": "logits"}]), "unknown output 'logits'"),
    ],
    ids=["shape", "input-name", "datatype", "data-length", "output-name"],
)
async def test_v2_infer_bad_arguments_are_400_error_body(
    client: httpx.AsyncClient, body: Any, message: str
) -> None:
    """Shape and length mismatches, unknown names and datatypes: 400 with the reason."""
    response = await client.post("/v2/models/strings/infer", json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]


async def test_v2_infer_not_json_is_400(client: httpx.AsyncClient) -> None:
    """A body that is not JSON is a 400 in the protocol's error body."""
    response = await client.post(
        "/v2/models/strings/infer",
        content=b"{nope",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


async def test_v2_statistics_count_the_rows_inferred(client: httpx.AsyncClient) -> None:
    """The statistics extension counts inferences (rows) and successful requests."""
    before = (await client.get("/v2/models/bools/stats")).json()["model_stats"][0]
    await client.post("/v2/models/bools/infer", json=_infer_body())
    after = (await client.get("/v2/models/bools/versions/1/stats")).json()["model_stats"][0]
    assert after["inference_count"] - before["inference_count"] == 2
    assert (
        after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"]
        == 1
    )


async def test_v2_repository_is_not_served_without_auth(client: httpx.AsyncClient) -> None:
    """With auth off nobody could prove the admin right: the repository routes do not exist."""
    assert (await client.post("/v2/repository/index")).status_code == 404


async def test_v2_routes_are_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    """The OpenAPI document describes V2 infer with its request and response schemas."""
    doc = (await client.get("/openapi.json")).json()
    infer = doc["paths"]["/v2/models/{name}/versions/{version}/infer"]["post"]
    request = infer["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert request.endswith("/V2InferenceRequest")
    assert infer["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/V2Error"
    )
    assert "V2InferenceResponse" in doc["components"]["schemas"]


@pytest.mark.parametrize(
    ("path", "overrides", "status", "message"),
    [
        (
            "/v2/models/ints/infer",
            {"auth": {"enabled": True, "keys": [{"name": "a", "key": "k" * 32}]}},
            401,
            "missing or invalid API key",
        ),
        ("/v2/models/ints/infer", {"server": {"max_body_bytes": 1024}}, 413, "max_body_bytes"),
        ("/v2/nothing/here", {}, 404, "Not Found"),
    ],
    ids=["no-key", "body-too-large", "unknown-path"],
)
async def test_v2_refusals_before_the_route_use_the_v2_error_body(
    app_client: Callable[..., Any],
    models_dir: Path,
    path: str,
    overrides: dict[str, Any],
    status: int,
    message: str,
) -> None:
    """Auth, body-size and routing refusals on /v2 paths answer {"error": ...} too."""
    settings = load_settings(models_dir / "modelserve.yaml", **overrides)
    body = _infer_body(rows=[ROWS[0]] * 100)
    async with app_client(settings) as client:
        response = await client.post(path, json=body)
    assert response.status_code == status
    assert list(response.json()) == ["error"]
    assert message in response.json()["error"]


ADMIN = {"name": "ops", "key": "o" * 32, "scopes": ["predict", "admin"]}


@pytest.mark.parametrize(
    "path",
    [
        "/v2/repository/index",
        "/v2/repository/models/ints/load",
        "/v2/repository/models/ints/unload",
    ],
    ids=["index", "load", "unload"],
)
async def test_v2_repository_body_not_json_is_a_400(
    app_client: Callable[..., Any], models_dir: Path, path: str
) -> None:
    """A repository body that is not JSON is 400 {"error"} (the index answered 500: found by
    schemathesis), and 400 is what the OpenAPI document declares for it."""
    settings = load_settings(
        models_dir / "modelserve.yaml", auth={"enabled": True, "keys": [ADMIN]}
    )
    headers = {"Authorization": f"Bearer {ADMIN['key']}", "Content-Type": "application/json"}
    async with app_client(settings) as client:
        response = await client.post(path, content=b"\x00", headers=headers)
        doc = (await client.get("/openapi.json")).json()
    assert (response.status_code, response.json()) == (
        400,
        {"error": "the request body is not valid JSON"},
    )
    assert "400" in doc["paths"][path.replace("ints", "{name}")]["post"]["responses"]


@pytest.mark.parametrize(
    "value", [b"abc", b"-1", b"\xb2"], ids=["word", "negative", "superscript-two"]
)
async def test_v2_infer_header_length_not_a_number_is_a_400(
    client: httpx.AsyncClient, value: bytes
) -> None:
    """An Inference-Header-Content-Length that is not a decimal number is 400 {"error"} ("²"
    passed str.isdigit() and failed int(): a 500, found by the property tests)."""
    headers = {b"content-type": b"application/json", b"inference-header-content-length": value}
    response = await client.post(
        "/v2/models/ints/infer", content=orjson.dumps(_infer_body()), headers=headers
    )
    assert response.status_code == 400
    assert "Inference-Header-Content-Length" in response.json()["error"]
