"""The BYTES datatype as an input, against a real server: a typed pipeline's string feature
sent by tritonclient as binary tensor data over REST (4-byte little-endian length before each
element) and as raw_input_contents over gRPC answers as the pipeline does, and as JSON does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from sklearn.pipeline import Pipeline

from modelserve.inference.artifact import file_sha256
from tests import tabular
from tests.conftest import free_port
from tests.e2e.conftest import RunningServer, write_config

pytestmark = pytest.mark.e2e

ROWS = 6


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return tabular.city_pipeline("ignore")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    # JSON tensors have no null: every age is given, so the three encodings carry equal rows.
    return tabular.customers(ROWS, seed=11)[["city", "age", "income"]].fillna({"age": 40.0})


@pytest.fixture(scope="module")
def server(
    serve_modelserve_module: Callable[..., RunningServer],
    tmp_path_factory: pytest.TempPathFactory,
    pipeline: Pipeline,
) -> tuple[RunningServer, int]:
    out = tmp_path_factory.mktemp("v2-bytes")
    path = out / "cities.joblib"
    joblib.dump(pipeline, path)
    models = [{"name": "cities", "path": str(path), "sha256": file_sha256(path)}]
    grpc_port = free_port()
    config = write_config(out, {"models": models, "cache": {"backend": "none"}})
    return serve_modelserve_module(config, "--grpc-port", str(grpc_port)), grpc_port


def _columns(frame: pd.DataFrame) -> list[tuple[str, str, np.ndarray]]:
    return [
        ("city", "BYTES", np.array([c.encode() for c in frame["city"]], dtype=np.object_)),
        ("age", "FP64", frame["age"].to_numpy(np.float64)),
        ("income", "FP64", frame["income"].to_numpy(np.float64)),
    ]


def test_v2_bytes_input_binary_over_rest_equals_the_pipeline(
    server: tuple[RunningServer, int], pipeline: Pipeline, frame: pd.DataFrame
) -> None:
    """tritonclient.http sends the BYTES column as binary data (length-prefixed elements): the
    probabilities are the pipeline's, and the same as the JSON request's."""
    running, _ = server
    client = httpclient.InferenceServerClient(f"127.0.0.1:{running.port}", network_timeout=30)
    inputs = []
    for name, datatype, values in _columns(frame):
        tensor = httpclient.InferInput(name, [ROWS], datatype)
        tensor.set_data_from_numpy(values, binary_data=True)
        inputs.append(tensor)
    try:
        result = client.infer(
            "cities", inputs, outputs=[httpclient.InferRequestedOutput("probabilities")]
        )
    finally:
        client.close()
    body: dict[str, Any] = {
        "inputs": [
            {"name": "city", "datatype": "BYTES", "shape": [ROWS], "data": list(frame["city"])},
            {"name": "age", "datatype": "FP64", "shape": [ROWS], "data": list(frame["age"])},
            {"name": "income", "datatype": "FP64", "shape": [ROWS], "data": list(frame["income"])},
        ]
    }
    as_json = httpx.post(running.base_url + "/v2/models/cities/infer", json=body, timeout=30)
    assert as_json.status_code == 200, as_json.text
    (json_probabilities,) = [o for o in as_json.json()["outputs"] if o["name"] == "probabilities"]

    binary = result.as_numpy("probabilities")
    np.testing.assert_allclose(binary, pipeline.predict_proba(frame), atol=1e-12)
    np.testing.assert_array_equal(binary.ravel(), json_probabilities["data"])


def test_v2_bytes_input_raw_over_grpc_equals_the_pipeline(
    server: tuple[RunningServer, int], pipeline: Pipeline, frame: pd.DataFrame
) -> None:
    """tritonclient.grpc sends the BYTES column in raw_input_contents: the labels come back as
    BYTES and the probabilities are the pipeline's."""
    _, grpc_port = server
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    inputs = []
    for name, datatype, values in _columns(frame):
        tensor = grpcclient.InferInput(name, [ROWS], datatype)
        tensor.set_data_from_numpy(values)
        inputs.append(tensor)
    try:
        result = client.infer("cities", inputs, client_timeout=30)
    finally:
        client.close()
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), pipeline.predict_proba(frame), atol=1e-12
    )
    labels = [label.decode() for label in result.as_numpy("label").tolist()]
    assert labels == [str(label) for label in pipeline.predict(frame)]
