"""Native categorical features on a real server: LightGBM and XGBoost models trained on a
DataFrame with a pandas ``category`` column, their schema read from the model file (the
native booster files, and the scikit-learn wrappers saved with joblib)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest

from modelserve.inference.artifact import file_sha256
from tests import tabular
from tests.e2e.conftest import RunningServer, write_config

pytestmark = pytest.mark.e2e

MODELS = ("lgb", "xgb", "lgb-joblib", "xgb-joblib")


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    return {"lgb": tabular.lgb_categorical(), "xgb": tabular.xgb_categorical()}


@pytest.fixture(scope="module")
def server(
    serve_modelserve_module: Callable[..., RunningServer],
    tmp_path_factory: pytest.TempPathFactory,
    models: dict[str, Any],
) -> RunningServer:
    """The LightGBM booster as its text file, the XGBoost one as JSON, and both fitted
    wrappers as joblib files; no `features` given."""
    out = tmp_path_factory.mktemp("categorical")
    lgb_path, xgb_path = out / "lgb.txt", out / "xgb.json"
    lgb_path.write_text(models["lgb"].booster_.model_to_string())
    models["xgb"].get_booster().save_model(xgb_path)
    paths = {"lgb": lgb_path, "xgb": xgb_path}
    for name in ("lgb", "xgb"):
        paths[f"{name}-joblib"] = out / f"{name}.joblib"
        joblib.dump(models[name], paths[f"{name}-joblib"])
    entries = [
        {"name": name, "path": str(path), "sha256": file_sha256(path), "labels": tabular.LABELS}
        for name, path in paths.items()
    ]
    return serve_modelserve_module(write_config(out, {"models": entries}))


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as a client sends them: NaN as null, categories as their strings."""
    return [
        {k: None if isinstance(v, float) and np.isnan(v) else v for k, v in row.items()}
        for row in frame.astype({"city": str}).to_dict("records")
    ]


def _predict_batch(server: RunningServer, model: str, batch: list[Any]) -> httpx.Response:
    return httpx.post(
        server.base_url + "/predict-batch",
        params={"model": model, "probabilities": "true"},
        json={"batch": batch},
        timeout=30,
    )


@pytest.mark.parametrize("model", MODELS)
def test_schema_is_read_from_the_model(server: RunningServer, model: str) -> None:
    """V2 metadata lists one input per column: BYTES for the categorical city, numbers for
    the rest (XGBoost keeps the int column's type)."""
    metadata = httpx.get(f"{server.base_url}/v2/models/{model}", timeout=10).json()
    inputs = [(i["name"], i["datatype"]) for i in metadata["inputs"]]
    visits = "INT64" if model.startswith("xgb") else "FP64"
    assert inputs == [("city", "BYTES"), ("age", "FP64"), ("income", "FP64"), ("visits", visits)]


@pytest.mark.parametrize("model", MODELS)
def test_answers_equal_predict_proba_of_the_frame(
    server: RunningServer, models: dict[str, Any], model: str
) -> None:
    """A batch (nulls included) and single rows get model.predict_proba of the same DataFrame."""
    frame = tabular.categorical_frame(16, seed=7)
    assert frame["age"].isna().any()
    expected = models[model.removesuffix("-joblib")].predict_proba(frame)

    response = _predict_batch(server, model, _rows(frame))

    assert response.status_code == 200, response.text
    served = [[p[label] for label in tabular.LABELS] for p in response.json()["probabilities"]]
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-6)
    for i, row in enumerate(_rows(frame.iloc[:3])):
        single = httpx.post(
            server.base_url + "/predict", params={"model": model}, json={"features": row}
        )
        assert single.status_code == 200, single.text
        answer = single.json()["probabilities"]
        got = [answer[label] for label in tabular.LABELS]
        np.testing.assert_allclose(got, expected[i], rtol=0, atol=1e-6)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    ("change", "code", "detail"),
    [
        (
            {"city": "Paris"},
            "unknown_category",
            "row 1, feature 'city': expected one of 'Bergen', 'Oslo', 'Trondheim', got 'Paris'",
        ),
        (
            {"city": 3},
            "invalid_feature_value",
            "row 1, feature 'city': expected one of 'Bergen', 'Oslo', 'Trondheim', got 3.0",
        ),
        (
            {"income": "high"},
            "invalid_feature_value",
            "row 1, feature 'income': expected float, got 'high'",
        ),
    ],
    ids=["unknown-city", "city-number", "income-string"],
)
def test_invalid_values_get_their_400(
    server: RunningServer, model: str, change: dict[str, Any], code: str, detail: str
) -> None:
    """An unknown category or a value of the wrong type in row 1 is a 400 naming it."""
    good = _rows(tabular.categorical_frame(2, seed=1))
    batch = [good[0], {**good[1], **change}]

    response = _predict_batch(server, model, batch)

    assert response.status_code == 400
    assert response.json()["code"] == code
    assert response.json()["detail"] == detail
