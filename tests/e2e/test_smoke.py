"""The quick start works against a real process, with the demo config and with zero config."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import httpx
import joblib
import numpy as np
import pytest
from sklearn.pipeline import Pipeline

from tests.e2e.conftest import RunningServer

pytestmark = pytest.mark.e2e

SETOSA = [5.1, 3.5, 1.4, 0.2]
ROWS = [SETOSA, [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def test_serve_demo_predicts_setosa(demo_server: RunningServer) -> None:
    """The README's curl gets a setosa prediction from the default demo model."""
    response = httpx.post(demo_server.base_url + "/predict", json={"features": SETOSA})
    assert response.status_code == 200
    body = response.json()
    assert body["prediction"] == "setosa"
    assert body["model"] == "iris"


@pytest.fixture(scope="module")
def pipeline(demo_models_dir: Path) -> Pipeline:
    model: Pipeline = joblib.load(demo_models_dir / "iris.joblib")
    return model


@pytest.fixture(scope="module")
def zero_config_server(
    serve_modelserve_module: Callable[..., RunningServer],
    pipeline: Pipeline,
    tmp_path_factory: pytest.TempPathFactory,
) -> RunningServer:
    """`modelserve serve "flowers v2+final.pkl"`: a plain pickle, no config at all."""
    model = tmp_path_factory.mktemp("zero-config") / "flowers v2+final.pkl"
    model.write_bytes(pickle.dumps(pipeline))
    return serve_modelserve_module(model)


def test_serve_model_file_with_zero_configuration(zero_config_server: RunningServer) -> None:
    """A model file is served with no config, named after the file (invalid characters → _)."""
    url = zero_config_server.base_url
    response = httpx.post(url + "/predict", json={"features": SETOSA})
    body = response.json()
    assert (response.status_code, body["model"], body["model_version"]) == (
        200,
        "flowers_v2_final",
        "1",
    )
    assert body["prediction"] == "0"  # without configured labels, the model's own classes
    (listed,) = httpx.get(url + "/models").json()["models"]
    assert (listed["format"], listed["n_features"], listed["status"]) == ("sklearn", 4, "ready")


def test_serve_plain_pickle_equals_sklearn_output(
    zero_config_server: RunningServer, pipeline: Pipeline
) -> None:
    """A plain pickle serves exactly the pipeline's predict_proba."""
    response = httpx.post(
        zero_config_server.base_url + "/predict-batch",
        params={"probabilities": "true"},
        json={"batch": ROWS},
    )
    served = [[row[str(c)] for c in range(3)] for row in response.json()["probabilities"]]
    np.testing.assert_array_equal(np.array(served), pipeline.predict_proba(ROWS))
