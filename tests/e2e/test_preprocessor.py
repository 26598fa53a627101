"""Server-side feature pipeline on a real server: pinned pre-processor + model, named features."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import numpy as np
import pytest
from sklearn.pipeline import Pipeline

from modelserve.inference.artifact import file_sha256
from tests import iris_versions as iv
from tests.e2e.conftest import RunningServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    """The reference: the same fitted scaler and model, chained by scikit-learn."""
    scaler, model = iv.scaler_and_model()
    return Pipeline([("scale", scaler), ("model", model)])


@pytest.fixture(scope="module")
def server(
    serve_modelserve_module: Callable[..., RunningServer],
    tmp_path_factory: pytest.TempPathFactory,
    pipeline: Pipeline,
) -> RunningServer:
    """iris: scaler.joblib as the pre-processor of model.joblib, both pinned by sha256."""
    out = tmp_path_factory.mktemp("preprocessor")
    scaler = iv.dump(pipeline.named_steps["scale"], out / "scaler.joblib")
    model = iv.dump(pipeline.named_steps["model"], out / "model.joblib")
    entry = iv.version_entry(
        "iris",
        "1",
        model,
        sha256=file_sha256(model),
        preprocessor={"path": str(scaler), "sha256": file_sha256(scaler)},
    )
    return serve_modelserve_module(iv.write_config(out / "modelserve.yaml", [entry]))


def test_served_probabilities_equal_the_pipeline_on_raw_rows(
    server: RunningServer, pipeline: Pipeline
) -> None:
    """Every raw iris row gets the probabilities of Pipeline(scaler, model)."""
    rows, _ = iv.iris()
    response = httpx.post(
        server.base_url + "/predict-batch?probabilities=true",
        json={"batch": rows.tolist()},
        timeout=30,
    )
    served = [[row[label] for label in iv.LABELS] for row in response.json()["probabilities"]]
    np.testing.assert_allclose(served, pipeline.predict_proba(rows), rtol=0, atol=1e-12)


def test_named_features_in_any_order_equal_the_pipeline(
    server: RunningServer, pipeline: Pipeline
) -> None:
    """Features sent by name, in another order, are put in the model's order before scaling."""
    row = [6.1, 2.8, 4.7, 1.2]
    named = dict(reversed(list(zip(iv.FEATURES, row, strict=True))))
    body = httpx.post(server.base_url + "/predict", json={"features": named}).json()
    expected = pipeline.predict_proba(np.array([row]))[0]
    assert body["prediction"] == iv.LABELS[int(expected.argmax())]
    assert body["confidence"] == pytest.approx(float(expected.max()), abs=1e-12)


@pytest.mark.parametrize(
    ("features", "code", "named"),
    [
        (
            {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4},
            "missing_feature",
            "petal_width",
        ),
        (
            {
                "sepal_length": 5.1,
                "sepal_width": 3.5,
                "petal_length": 1.4,
                "petal_width": 0.2,
                "age": 3.0,
            },
            "unknown_feature",
            "age",
        ),
    ],
    ids=["missing", "unknown"],
)
def test_named_feature_errors_name_the_feature(
    server: RunningServer, features: dict[str, float], code: str, named: str
) -> None:
    """A missing or unknown feature name is a 400 whose detail names it."""
    response = httpx.post(server.base_url + "/predict", json={"features": features})
    assert (response.status_code, response.json()["code"]) == (400, code)
    assert named in response.json()["detail"]
