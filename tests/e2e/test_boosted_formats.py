"""XGBoost, LightGBM, CatBoost and MLflow models served by a real process answer exactly what
their own library computes, with pins, named features from MLflow signatures, and reloads."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from modelserve.inference.artifact import directory_sha256, file_sha256
from tests import boosted_models as bm
from tests.e2e.conftest import RunningServer, wait_ready, write_config

# Building the models and importing mlflow in the fixture takes minutes on a busy machine.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(480)]

IRIS_LABELS = ["setosa", "versicolor", "virginica"]
CANCER_LABELS = ["malignant", "benign"]
OPS_KEY = "e2e-boosted-ops-5c1e9a7d3b2f4e6a"
AUTH = {"Authorization": f"Bearer {OPS_KEY}"}
"""Auth is on, as the admin API (the reload test) needs; every request sends this key."""
LOAD_TIMEOUT_S = 240
"""Importing mlflow (the pyfunc model) and skops takes a while on a busy 2-core machine."""


@dataclass(frozen=True)
class Case:
    name: str
    filename: str
    build: bm.Builder
    binary: bool
    platform: str

    @property
    def labels(self) -> list[str]:
        return CANCER_LABELS if self.binary else IRIS_LABELS


CASES = [
    Case(
        "xgb-json-binary",
        "xgb-binary.json",
        bm.save_xgb_native(".json", True),
        True,
        "xgboost_json",
    ),
    Case("xgb-ubj-multi", "xgb-multi.ubj", bm.save_xgb_native(".ubj", False), False, "xgboost_ubj"),
    Case("xgb-sklearn", "xgb.joblib", bm.save_joblib(bm.xgb_classifier, False), False, ""),
    Case("lgb-txt-binary", "lgb-binary.txt", bm.save_lgb_native(True), True, "lightgbm_txt"),
    Case("lgb-txt-multi", "lgb-multi.txt", bm.save_lgb_native(False), False, "lightgbm_txt"),
    Case("lgb-sklearn", "lgb.joblib", bm.save_joblib(bm.lgb_classifier, True), True, ""),
    Case("catboost-binary", "cb-binary.cbm", bm.save_catboost(True), True, "catboost_cbm"),
    Case("catboost-multi", "cb-multi.cbm", bm.save_catboost(False), False, "catboost_cbm"),
    Case("mlflow-sklearn", "mlflow-sklearn", bm.save_mlflow("sklearn"), False, "mlflow_sklearn"),
    Case("mlflow-skops", "mlflow-skops", bm.save_mlflow("sklearn-skops"), False, "mlflow_sklearn"),
    Case("mlflow-xgboost", "mlflow-xgboost", bm.save_mlflow("xgboost"), False, "mlflow_xgboost"),
    Case(
        "mlflow-lightgbm", "mlflow-lightgbm", bm.save_mlflow("lightgbm"), False, "mlflow_lightgbm"
    ),
]
IDS = [case.name for case in CASES]


def pin(path: Path) -> str:
    return directory_sha256(path) if path.is_dir() else file_sha256(path)


@dataclass
class Served:
    server: RunningServer
    directory: Path
    expected: dict[str, bm.Probabilities]
    pyfunc_expected: np.ndarray[Any, Any]


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
    serve_modelserve_module: Callable[..., RunningServer],
) -> Served:
    """Every case built, pinned and served by one process, with a pyfunc model beside them."""
    directory = tmp_path_factory.mktemp("boosted")
    expected: dict[str, bm.Probabilities] = {}
    models: list[dict[str, Any]] = []
    for case in CASES:
        path = directory / case.filename
        expected[case.name] = case.build(path)
        entry: dict[str, Any] = {
            "name": case.name,
            "path": str(path),
            "sha256": pin(path),
            "labels": case.labels,
        }
        if case.name == "mlflow-skops":
            entry["skops_trusted_types"] = ["sklearn.tree._tree.Tree"]
        models.append(entry)
    pyfunc_dir = directory / "mlflow-pyfunc"
    pyfunc_expected = bm.save_mlflow_pyfunc(pyfunc_dir)
    models.append({"name": "mlflow-pyfunc", "path": str(pyfunc_dir), "sha256": pin(pyfunc_dir)})
    reloaded = directory / "mlflow-reload"
    shutil.copytree(directory / "mlflow-xgboost", reloaded)
    models.append({"name": "mlflow-reload", "path": str(reloaded), "sha256": pin(reloaded)})
    untrusted = directory / "mlflow-untrusted"
    shutil.copytree(directory / "mlflow-skops", untrusted)
    models.append({"name": "mlflow-untrusted", "path": str(untrusted), "required": False})
    models.append(
        {
            "name": "wrong-pin",
            "path": str(directory / "xgb-multi.ubj"),
            "sha256": "0" * 64,
            "required": False,
        }
    )
    config = write_config(
        directory,
        {
            "server": {"access_log": False},
            "auth": {
                "enabled": True,
                "keys": [{"name": "ops", "key": OPS_KEY, "scopes": ["predict", "admin"]}],
            },
            "models": models,
        },
    )
    server = serve_modelserve_module(config, wait=None)
    wait_ready(server, timeout_s=LOAD_TIMEOUT_S)
    return Served(server, directory, expected, pyfunc_expected)


def served_probabilities(server: RunningServer, case: Case) -> bm.Probabilities:
    response = httpx.post(
        server.base_url + "/predict-batch",
        headers=AUTH,
        params={"model": case.name, "probabilities": "true"},
        json={"batch": bm.rows_for(case.binary).tolist()},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    rows = response.json()["probabilities"]
    return np.array([[row[label] for label in case.labels] for row in rows])


def model_info(server: RunningServer, name: str) -> dict[str, Any]:
    models = httpx.get(server.base_url + "/models", headers=AUTH, timeout=10).json()["models"]
    found: dict[str, Any] = next(m for m in models if m["name"] == name)
    return found


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_served_probabilities_equal_library_predict_proba(served: Served, case: Case) -> None:
    """Every row's served probabilities are the library's predict_proba, to the last bit."""
    np.testing.assert_array_equal(
        served_probabilities(served.server, case), served.expected[case.name]
    )


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_served_labels_are_the_library_argmax(served: Served, case: Case) -> None:
    """/predict on one row names the library's most likely class."""
    row = bm.rows_for(case.binary)[-1]
    response = httpx.post(
        served.server.base_url + "/predict",
        headers=AUTH,
        params={"model": case.name},
        json={"features": row.tolist()},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert (
        response.json()["prediction"] == case.labels[int(served.expected[case.name][-1].argmax())]
    )


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.platform], ids=[c.name for c in CASES if c.platform]
)
def test_models_names_the_platform(served: Served, case: Case) -> None:
    """GET /models shows each native artifact's platform (xgboost_json, mlflow_sklearn, ...)."""
    info = model_info(served.server, case.name)
    assert (info["status"], info["platform"]) == ("ready", case.platform)


def test_mlflow_signature_becomes_named_features(served: Served) -> None:
    """An MLflow signature's input names and types are the served feature schema."""
    info = model_info(served.server, "mlflow-sklearn")
    assert info["feature_names"] == bm.IRIS_FEATURES
    assert info["feature_types"] == ["double"] * 4


def test_mlflow_named_features_answer_like_positional_rows(served: Served) -> None:
    """Features sent by signature name, in any order, reach the model in signature order."""
    row = bm.IRIS_ROWS[-1]
    named = dict(reversed(list(zip(bm.IRIS_FEATURES, row.tolist(), strict=True))))
    response = httpx.post(
        served.server.base_url + "/predict",
        headers=AUTH,
        params={"model": "mlflow-xgboost"},
        json={"features": named},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    probabilities = response.json()["probabilities"]
    served_row = [probabilities[label] for label in IRIS_LABELS]
    np.testing.assert_array_equal(served_row, served.expected["mlflow-xgboost"][-1])


def test_mlflow_pyfunc_fallback_serves_the_model_predictions(served: Served) -> None:
    """A python_function-only directory is served through mlflow.pyfunc: its predict() output."""
    response = httpx.post(
        served.server.base_url + "/predict-batch",
        headers=AUTH,
        params={"model": "mlflow-pyfunc"},
        json={
            "batch": [dict(zip(bm.IRIS_FEATURES, r, strict=True)) for r in bm.IRIS_ROWS.tolist()]
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == [str(v) for v in served.pyfunc_expected]
    assert model_info(served.server, "mlflow-pyfunc")["platform"] == "mlflow_pyfunc"


def test_mlflow_skops_types_come_from_the_config_not_the_artifact(served: Served) -> None:
    """The trusted types an MLmodel file lists are not trusted: without the config's, no load."""
    info = model_info(served.server, "mlflow-untrusted")
    assert info["status"] == "failed"
    assert "sklearn.tree._tree.Tree" in info["reason"]
    assert "skops_trusted_types" in info["reason"]


def test_wrong_pin_refuses_the_native_file(served: Served) -> None:
    """A native XGBoost file whose sha256 differs from its pin is not loaded."""
    info = model_info(served.server, "wrong-pin")
    assert info["status"] == "failed"
    assert "configuration pins" in info["reason"]


def test_prediction_cache_and_metrics_cover_boosted_models(served: Served) -> None:
    """A repeated XGBoost row is a cache hit, and the metrics label the version's format."""
    url = served.server.base_url + "/predict"
    body = {"features": bm.CANCER_X[1].tolist()}  # a row no other test sends
    first = httpx.post(
        url, headers=AUTH, params={"model": "xgb-json-binary"}, json=body, timeout=30
    )
    second = httpx.post(
        url, headers=AUTH, params={"model": "xgb-json-binary"}, json=body, timeout=30
    )
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    assert second.json()["probabilities"] == first.json()["probabilities"]
    metrics = httpx.get(served.server.base_url + "/metrics", headers=AUTH, timeout=10).text
    info = [
        line
        for line in metrics.splitlines()
        if line.startswith("modelserve_model_info{")
        and 'model="xgb-json-binary"' in line
        and 'status="ready"' in line
    ]
    assert len(info) == 1
    assert 'format="xgboost"' in info[0]
    assert info[0].endswith(" 1.0")


def test_reload_of_a_tampered_mlflow_directory_keeps_the_old_one(served: Served) -> None:
    """A file edited under a pinned MLflow directory fails its reload; the old model serves on."""
    base = served.server.base_url
    reload_url = base + "/admin/models/mlflow-reload/versions/1/reload"
    conda = served.directory / "mlflow-reload" / "conda.yaml"
    original = conda.read_bytes()
    conda.write_bytes(original + b"# edited\n")
    try:
        refused = httpx.post(reload_url, headers=AUTH, json={}, timeout=60)
        assert (refused.status_code, refused.json()["code"]) == (409, "model_load_failed")
        assert "configuration pins" in refused.json()["detail"]
        answer = httpx.post(
            base + "/predict",
            headers=AUTH,
            params={"model": "mlflow-reload"},
            json={"features": bm.IRIS_ROWS[0].tolist()},
            timeout=30,
        )
        assert answer.status_code == 200
    finally:
        conda.write_bytes(original)
    assert httpx.post(reload_url, headers=AUTH, json={}, timeout=60).status_code == 200
