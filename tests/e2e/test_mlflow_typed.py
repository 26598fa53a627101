"""An MLflow model's signature as a typed schema, on a real server: a pipeline trained on a
DataFrame with a string column, saved by mlflow, served natively and through mlflow.pyfunc."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.pipeline import Pipeline

from modelserve.inference.artifact import directory_sha256
from tests import tabular
from tests.e2e.conftest import RunningServer, wait_ready, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
LOAD_TIMEOUT_S = 180
"""Importing mlflow (the pyfunc model) takes a while on a busy 2-core machine."""


def _save(pipeline: Pipeline, path: Path) -> None:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    frame = tabular.customers()[["city", "age", "income"]]
    with warnings.catch_warnings():  # mlflow warns about pickles
        warnings.simplefilter("ignore")
        signature = infer_signature(frame, tabular.target(tabular.customers()))
        mlflow.sklearn.save_model(
            pipeline,
            path,
            signature=signature,
            serialization_format="cloudpickle",
            pip_requirements=[],
        )


def _pyfunc_only(native: Path, path: Path) -> None:
    """The same directory with only the python_function flavour: the signature is all the
    server knows of the inputs."""
    shutil.copytree(native, path)
    mlmodel = yaml.safe_load((path / "MLmodel").read_text())
    del mlmodel["flavors"]["sklearn"]
    (path / "MLmodel").write_text(yaml.safe_dump(mlmodel))


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return tabular.city_pipeline("ignore")


@pytest.fixture(scope="module")
def server(
    serve_modelserve_module: Callable[..., RunningServer],
    tmp_path_factory: pytest.TempPathFactory,
    pipeline: Pipeline,
) -> RunningServer:
    out = tmp_path_factory.mktemp("mlflow-typed")
    native, pyfunc = out / "native", out / "pyfunc"
    _save(pipeline, native)
    _pyfunc_only(native, pyfunc)
    models = [
        {"name": name, "path": str(path), "sha256": directory_sha256(path)}
        for name, path in (("native", native), ("pyfunc", pyfunc))
    ]
    server = serve_modelserve_module(write_config(out, {"models": models}), wait=None)
    wait_ready(server, timeout_s=LOAD_TIMEOUT_S)
    return server


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: None if isinstance(v, float) and np.isnan(v) else v for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


def _batch(server: RunningServer, model: str, rows: list[dict[str, Any]]) -> httpx.Response:
    return httpx.post(
        server.base_url + "/predict-batch",
        params={"model": model, "probabilities": "true"},
        json={"batch": rows},
        timeout=30,
    )


def test_pyfunc_answers_from_the_signature_schema(
    server: RunningServer, pipeline: Pipeline
) -> None:
    """Through mlflow.pyfunc, named rows (a string city, a null age where the signature says
    the column is optional) get the pipeline's own predictions."""
    frame = tabular.customers(14, seed=4)[["city", "age", "income"]]
    assert frame["age"].isna().any()

    response = _batch(server, "pyfunc", _rows(frame))

    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == pipeline.predict(frame).tolist()


def test_pyfunc_types_come_from_the_signature(server: RunningServer) -> None:
    """V2 metadata: city is the signature's string (BYTES), age and income doubles."""
    inputs = httpx.get(server.base_url + "/v2/models/pyfunc", timeout=10).json()["inputs"]
    assert [(i["name"], i["datatype"]) for i in inputs] == [
        ("city", "BYTES"),
        ("age", "FP64"),
        ("income", "FP64"),
    ]


@pytest.mark.parametrize(
    ("model", "change", "code", "detail"),
    [
        (
            "pyfunc",
            {"city": True},
            "invalid_feature_value",
            "row 0, feature 'city': expected string, got true",
        ),
        (
            "pyfunc",
            {"income": None},
            "missing_feature",
            "row 0, feature 'income': expected float (not nullable), got null",
        ),
        (
            "native",
            {"city": True},
            "invalid_feature_value",
            "row 0, feature 'city': expected one of 'Bergen', 'Oslo', 'Trondheim', got true",
        ),
    ],
    ids=["pyfunc-city-bool", "pyfunc-required-income", "native-city-categories"],
)
def test_values_are_checked_against_the_schema(
    server: RunningServer, model: str, change: dict[str, Any], code: str, detail: str
) -> None:
    """The signature's types and required columns give their 400s; a native flavour whose
    pipeline knows the city's categories checks against those instead."""
    row = {"city": "Oslo", "age": 40.0, "income": 52.0, **change}

    response = _batch(server, model, [row])

    assert response.status_code == 400, response.text
    assert (response.json()["code"], response.json()["detail"]) == (code, detail)


def test_native_flavour_answers_equal_predict_proba(
    server: RunningServer, pipeline: Pipeline
) -> None:
    """The natively loaded sklearn flavour answers pipeline.predict_proba of the frame."""
    frame = tabular.customers(10, seed=6)[["city", "age", "income"]]

    response = _batch(server, "native", _rows(frame))

    assert response.status_code == 200, response.text
    served = [[p[label] for label in tabular.LABELS] for p in response.json()["probabilities"]]
    np.testing.assert_allclose(served, pipeline.predict_proba(frame), rtol=0, atol=1e-12)
