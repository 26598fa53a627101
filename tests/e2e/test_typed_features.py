"""Typed features on a real server: pinned scikit-learn pipelines trained on a DataFrame."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from modelserve.inference.artifact import file_sha256
from tests import tabular
from tests.e2e.conftest import RunningServer, write_config

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pipelines() -> dict[str, Pipeline]:
    return {
        "cities": tabular.city_pipeline("ignore"),
        "cities-strict": tabular.city_pipeline("error"),
        "habits": tabular.habits_pipeline(),
    }


@pytest.fixture(scope="module")
def server(
    serve_modelserve_module: Callable[..., RunningServer],
    tmp_path_factory: pytest.TempPathFactory,
    pipelines: dict[str, Pipeline],
) -> RunningServer:
    """cities (unknown cities ignored), cities-strict (refused), habits (features from config)."""
    out = tmp_path_factory.mktemp("typed")
    models: list[dict[str, Any]] = []
    for name, pipeline in pipelines.items():
        path = out / f"{name}.joblib"
        joblib.dump(pipeline, path)
        models.append({"name": name, "path": str(path), "sha256": file_sha256(path)})
    models[-1]["features"] = [
        {"name": "member", "type": "bool"},
        {"name": "visits", "type": "int", "range": [0, 19]},
    ]
    return serve_modelserve_module(write_config(out, {"models": models}))


def _probabilities(answer: dict[str, Any]) -> list[float]:
    return [answer["probabilities"][label] for label in tabular.LABELS]


def _json_row(frame: pd.DataFrame, i: int) -> dict[str, Any]:
    """Row i as a client sends it: NaN as null, numpy scalars as JSON numbers and booleans."""
    return {
        name: None if isinstance(value, float) and np.isnan(value) else value
        for name, value in frame.iloc[i].to_dict().items()
    }


def _post(server: RunningServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.base_url + path, json=body, timeout=30)


def test_single_rows_equal_the_pipeline(
    server: RunningServer, pipelines: dict[str, Pipeline]
) -> None:
    """Each row sent alone, nulls included, gets pipeline.predict_proba of that row."""
    frame = tabular.customers(12, seed=5)[["city", "age", "income"]]
    assert frame["age"].isna().any()
    for i in range(len(frame)):
        response = _post(server, "/predict?model=cities", {"features": _json_row(frame, i)})
        assert response.status_code == 200, response.text
        expected = pipelines["cities"].predict_proba(frame.iloc[[i]])[0]
        np.testing.assert_allclose(_probabilities(response.json()), expected, rtol=0, atol=1e-12)


def test_a_batch_equals_the_pipeline(server: RunningServer, pipelines: dict[str, Pipeline]) -> None:
    """A batch of typed rows is one DataFrame: every row's answer equals predict_proba(df)."""
    frame = tabular.customers(40, seed=6)[["city", "age", "income"]]
    body = {"batch": [_json_row(frame, i) for i in range(len(frame))]}
    response = _post(server, "/predict-batch?model=cities&probabilities=true", body)
    assert response.status_code == 200, response.text
    answer = response.json()
    served = [[row[label] for label in tabular.LABELS] for row in answer["probabilities"]]
    np.testing.assert_allclose(served, pipelines["cities"].predict_proba(frame), atol=1e-12)
    assert answer["predictions"] == list(pipelines["cities"].predict(frame))


def test_an_unknown_city_is_ignored_like_the_encoder_does(
    server: RunningServer, pipelines: dict[str, Pipeline]
) -> None:
    """handle_unknown="ignore": an unseen city answers what the pipeline answers for it."""
    row = {"city": "Paris", "age": 41.0, "income": 52.5}
    response = _post(server, "/predict?model=cities", {"features": row})
    assert response.status_code == 200, response.text
    expected = pipelines["cities"].predict_proba(pd.DataFrame([row]))[0]
    np.testing.assert_allclose(_probabilities(response.json()), expected, atol=1e-12)


def test_an_unknown_city_is_refused_when_the_encoder_refuses_it(server: RunningServer) -> None:
    """handle_unknown="error": a 400 that names row, feature, the allowed values and the value."""
    rows = [{"city": "Oslo", "age": 30, "income": 40}, {"city": "Paris", "age": 41, "income": 52}]
    response = _post(server, "/predict-batch?model=cities-strict", {"batch": rows})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "unknown_category"
    assert body["detail"] == (
        "row 1, feature 'city': expected one of 'Bergen', 'Oslo', 'Trondheim', got 'Paris'"
    )


@pytest.mark.parametrize(
    ("model", "features", "code", "detail"),
    [
        (
            "cities",
            {"city": 7, "age": 41, "income": 50},
            "invalid_feature_value",
            "row 0, feature 'city': expected one of 'Bergen', 'Oslo', 'Trondheim', got 7.0",
        ),
        (
            "cities",
            {"city": "Oslo", "age": "forty", "income": 50},
            "invalid_feature_value",
            "row 0, feature 'age': expected float, got 'forty'",
        ),
        (
            "cities",
            {"city": "Oslo", "age": True, "income": 50},
            "invalid_feature_value",
            "row 0, feature 'age': expected float, got true",
        ),
        (
            "cities",
            {"city": None, "age": 41, "income": 50},
            "missing_feature",
            "row 0, feature 'city': expected one of 'Bergen', 'Oslo', 'Trondheim'"
            " (not nullable), got null",
        ),
        (
            "cities",
            {"age": 41, "income": 50},
            "missing_feature",
            "row 0, feature 'city': expected one of 'Bergen', 'Oslo', 'Trondheim'"
            " (not nullable), got nothing (the feature is missing)",
        ),
        (
            "cities",
            {"city": "Oslo", "age": 41, "income": 50, "zip": "0150"},
            "unknown_feature",
            "unknown feature(s) zip; expected city, age, income",
        ),
        (
            "habits",
            {"member": True, "visits": 2.5},
            "invalid_feature_value",
            "row 0, feature 'visits': expected int, got 2.5",
        ),
        (
            "habits",
            {"member": "yes", "visits": 2},
            "invalid_feature_value",
            "row 0, feature 'member': expected bool, got 'yes'",
        ),
        (
            "habits",
            {"member": None, "visits": 2},
            "missing_feature",
            "row 0, feature 'member': expected bool (not nullable), got null",
        ),
    ],
    ids=[
        "number-for-category",
        "string-for-float",
        "bool-for-float",
        "null-category",
        "absent-category",
        "unknown-feature",
        "fraction-for-int",
        "string-for-bool",
        "null-bool",
    ],
)
def test_each_invalid_value_gets_its_400(
    server: RunningServer, model: str, features: dict[str, Any], code: str, detail: str
) -> None:
    """A value that does not fit its feature is a 400 naming row, feature, expected and got."""
    response = _post(server, f"/predict?model={model}", {"features": features})
    assert response.status_code == 400, response.text
    assert (response.json()["code"], response.json()["detail"]) == (code, detail)


def test_features_declared_in_config_give_the_training_dtypes(
    server: RunningServer, pipelines: dict[str, Pipeline]
) -> None:
    """habits: bool and int columns from `features:`, answers equal the pipeline's."""
    frame = tabular.customers(10, seed=7)[["member", "visits"]]
    body = {"batch": [_json_row(frame, i) for i in range(len(frame))]}
    response = _post(server, "/predict-batch?model=habits&probabilities=true", body)
    assert response.status_code == 200, response.text
    served = [[row[label] for label in tabular.LABELS] for row in response.json()["probabilities"]]
    np.testing.assert_allclose(served, pipelines["habits"].predict_proba(frame), atol=1e-12)


def test_v2_metadata_has_one_input_per_typed_feature(server: RunningServer) -> None:
    """V2 metadata: BYTES for the city, FP64 for numbers, BOOL and INT64 from the config."""
    inputs = {
        name: [
            (i["name"], i["datatype"], i["shape"])
            for i in httpx.get(f"{server.base_url}/v2/models/{name}", timeout=10).json()["inputs"]
        ]
        for name in ("cities", "habits")
    }
    assert inputs == {
        "cities": [("city", "BYTES", [-1]), ("age", "FP64", [-1]), ("income", "FP64", [-1])],
        "habits": [("member", "BOOL", [-1]), ("visits", "INT64", [-1])],
    }


def test_v2_columnar_typed_inputs_equal_the_pipeline(
    server: RunningServer, pipelines: dict[str, Pipeline]
) -> None:
    """One V2 tensor per feature (BYTES strings, FP64 numbers) answers as the pipeline does."""
    frame = tabular.customers(6, seed=8)[["city", "age", "income"]].fillna({"age": 40.0})
    ages = list(frame["age"])  # JSON tensors have no null (NaN in binary ones counts as null)
    body = {
        "inputs": [
            {"name": "city", "datatype": "BYTES", "shape": [6], "data": list(frame["city"])},
            {"name": "age", "datatype": "FP64", "shape": [6], "data": ages},
            {"name": "income", "datatype": "FP64", "shape": [6, 1], "data": list(frame["income"])},
        ]
    }
    response = _post(server, "/v2/models/cities/infer", body)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    served = np.array(outputs["probabilities"]["data"]).reshape(6, 2)
    np.testing.assert_allclose(served, pipelines["cities"].predict_proba(frame), atol=1e-12)


def test_v2_an_unknown_category_is_its_400(server: RunningServer) -> None:
    """Over V2 too, an unknown city for the strict encoder names row, feature and value."""
    body = {
        "inputs": [
            {"name": "city", "datatype": "BYTES", "shape": [2], "data": ["Oslo", "Paris"]},
            {"name": "age", "datatype": "FP64", "shape": [2], "data": [30, 40]},
            {"name": "income", "datatype": "FP64", "shape": [2], "data": [50, 60]},
        ]
    }
    response = _post(server, "/v2/models/cities-strict/infer", body)
    assert response.status_code == 400
    assert response.json()["error"] == (
        "row 1, feature 'city': expected one of 'Bergen', 'Oslo', 'Trondheim', got 'Paris'"
    )
