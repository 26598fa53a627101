"""XGBoost, LightGBM, CatBoost and MLflow models served by a real process answer exactly what
their own library computes, with pins, named features from MLflow signatures, and reloads; and
V2 metadata and inference, warm-up, batching, the prediction cache, metrics and drift work for
every format as they do for scikit-learn."""

from __future__ import annotations

import math
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from modelserve.inference.artifact import directory_sha256, file_sha256
from modelserve.inference.metadata import platform_of
from modelserve.observability.profile import build_profile
from tests import boosted_models as bm
from tests import prometheus
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
MAX_BATCH_SIZE = 8
"""Every model's largest call: the 20- and 21-row requests are split into three calls."""
DRIFT_MIN_ROWS = 5


@dataclass(frozen=True)
class Case:
    name: str
    filename: str
    build: bm.Builder
    binary: bool
    platform: str
    float32_sums: bool = False
    """ONNX Runtime adds the trees in float32, in an order that depends on the batch: its
    answers to the same row agree within float32 rounding, not to the last bit."""

    @property
    def labels(self) -> list[str]:
        return CANCER_LABELS if self.binary else IRIS_LABELS

    @property
    def format(self) -> str:
        """The version's format (sklearn for pickled wrappers, mlflow for directories)."""
        if not self.platform:
            return "sklearn"
        library = self.platform.split("_")[0]
        return "mlflow" if library == "mlflow" else library

    @property
    def feature_names(self) -> list[str] | None:
        """Only the MLflow directories' signatures name the features."""
        return bm.IRIS_FEATURES if self.format == "mlflow" else None


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
    Case(
        "mlflow-catboost", "mlflow-catboost", bm.save_mlflow("catboost"), False, "mlflow_catboost"
    ),
    Case("mlflow-onnx", "mlflow-onnx", bm.save_mlflow("onnx"), False, "mlflow_onnx", True),
]
IDS = [case.name for case in CASES]


def pin(path: Path) -> str:
    return directory_sha256(path) if path.is_dir() else file_sha256(path)


@dataclass
class Served:
    server: RunningServer
    directory: Path
    expected: dict[str, bm.Probabilities]
    """The library's probabilities on the sample rows."""
    fresh: dict[str, bm.Probabilities]
    """... on the fresh rows, which only one test sends ..."""
    after_reload: dict[str, bm.Probabilities]
    """... and on the rows only the reload test sends."""
    pyfunc_expected: np.ndarray[Any, Any]


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
    serve_modelserve_module: Callable[..., RunningServer],
) -> Served:
    """Every case built, pinned and served by one process, with a pyfunc model beside them."""
    directory = tmp_path_factory.mktemp("boosted")
    expected: dict[str, bm.Probabilities] = {}
    fresh: dict[str, bm.Probabilities] = {}
    after_reload: dict[str, bm.Probabilities] = {}
    models: list[dict[str, Any]] = []
    for case in CASES:
        path = directory / case.filename
        sizes = [len(rows) for rows in bm.row_sets(case.binary)]
        split = np.split(case.build(path), np.cumsum(sizes)[:-1])
        expected[case.name], fresh[case.name], after_reload[case.name] = split
        entry: dict[str, Any] = {
            "name": case.name,
            "path": str(path),
            "sha256": pin(path),
            "labels": case.labels,
            "profile": str(write_profile(directory, case, expected[case.name])),
            # A request over max_batch_size is computed alone in calls of up to
            # max_request_rows_per_call: at the batch size, it is split like small ones.
            "batching": {
                "max_batch_size": MAX_BATCH_SIZE,
                "max_request_rows_per_call": MAX_BATCH_SIZE,
            },
        }
        if case.name == "mlflow-skops":
            entry["skops_trusted_types"] = ["sklearn.tree._tree.Tree"]
        models.append(entry)
        # The same artifact under a pin it does not have: refused before it is deserialized.
        models.append(
            {"name": f"{case.name}-wrong-pin", "path": str(path), "sha256": "0" * 64,
             "required": False}
        )  # fmt: skip
    pyfunc_dir = directory / "mlflow-pyfunc"
    pyfunc_expected = bm.save_mlflow_pyfunc(pyfunc_dir)
    models.append({"name": "mlflow-pyfunc", "path": str(pyfunc_dir), "sha256": pin(pyfunc_dir)})
    reloaded = directory / "mlflow-reload"
    shutil.copytree(directory / "mlflow-xgboost", reloaded)
    models.append({"name": "mlflow-reload", "path": str(reloaded), "sha256": pin(reloaded)})
    untrusted = directory / "mlflow-untrusted"
    shutil.copytree(directory / "mlflow-skops", untrusted)
    models.append({"name": "mlflow-untrusted", "path": str(untrusted), "required": False})
    integers, reversed_signature = directory / "mlflow-integers", directory / "mlflow-reversed"
    bm.save_mlflow_integers(integers)
    bm.save_mlflow_integers(reversed_signature, signature_reversed=True)
    models.append({"name": "mlflow-integers", "path": str(integers), "sha256": pin(integers)})
    models.append(
        {"name": "mlflow-reversed", "path": str(reversed_signature), "required": False,
         "sha256": pin(reversed_signature)}
    )  # fmt: skip
    config = write_config(
        directory,
        {
            "server": {"access_log": False},
            "drift": {"min_rows": DRIFT_MIN_ROWS, "interval_s": 1},
            "auth": {
                "enabled": True,
                "keys": [{"name": "ops", "key": OPS_KEY, "scopes": ["predict", "admin"]}],
            },
            "models": models,
        },
    )
    server = serve_modelserve_module(config, wait=None)
    wait_ready(server, timeout_s=LOAD_TIMEOUT_S)
    return Served(server, directory, expected, fresh, after_reload, pyfunc_expected)


def write_profile(directory: Path, case: Case, probabilities: bm.Probabilities) -> Path:
    """The drift reference of ``case``: its sample rows and the library's answers on them."""
    labels = [case.labels[i] for i in probabilities.argmax(axis=1)]
    profile = build_profile(
        bm.rows_for(case.binary), case.feature_names, labels, probabilities.max(axis=1).tolist()
    )
    path = directory / f"{case.name}.profile.json"
    path.write_bytes(profile.to_json())
    return path


def scrape(server: RunningServer) -> prometheus.Samples:
    response = httpx.get(server.base_url + "/metrics", headers=AUTH, timeout=10)
    assert response.status_code == 200
    return prometheus.parse(response.text)


def served_probabilities(
    server: RunningServer, case: Case, rows: np.ndarray[Any, Any] | None = None
) -> bm.Probabilities:
    """/predict-batch of ``rows`` (default: the case's sample rows), in label order."""
    response = httpx.post(
        server.base_url + "/predict-batch",
        headers=AUTH,
        params={"model": case.name, "probabilities": "true"},
        json={"batch": (bm.rows_for(case.binary) if rows is None else rows).tolist()},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    rows = response.json()["probabilities"]
    return np.array([[row[label] for label in case.labels] for row in rows])


def assert_library_answers(
    case: Case, served: bm.Probabilities, expected: bm.Probabilities
) -> None:
    """Equal to the last bit, or within float32 rounding for ONNX Runtime (same classes)."""
    if not case.float32_sums:
        np.testing.assert_array_equal(served, expected)
        return
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(served.argmax(axis=1), expected.argmax(axis=1))


def model_info(server: RunningServer, name: str) -> dict[str, Any]:
    models = httpx.get(server.base_url + "/models", headers=AUTH, timeout=10).json()["models"]
    found: dict[str, Any] = next(m for m in models if m["name"] == name)
    return found


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_served_probabilities_equal_library_predict_proba(served: Served, case: Case) -> None:
    """Every row's served probabilities are the library's predict_proba, to the last bit
    (within float32 rounding for ONNX Runtime)."""
    assert_library_answers(
        case, served_probabilities(served.server, case), served.expected[case.name]
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


def test_mlflow_pyfunc_is_warmed_up_and_described_over_v2(served: Served) -> None:
    """The python_function fallback is warmed up before ready like the native runtimes, and
    V2 metadata describes its [-1, 4] input and its label output (no probabilities)."""
    labels = {"model": "mlflow-pyfunc", "model_version": "1"}
    samples = scrape(served.server)
    assert prometheus.value(samples, "modelserve_model_warmup_seconds", **labels) > 0
    assert prometheus.value(samples, "modelserve_model_ready", **labels) == 1
    response = httpx.get(f"{served.server.base_url}/v2/models/mlflow-pyfunc", headers=AUTH)
    assert response.json() == {
        "name": "mlflow-pyfunc",
        "versions": ["1"],
        "platform": "mlflow_pyfunc",
        "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}],
        "outputs": [{"name": "label", "datatype": "BYTES", "shape": [-1]}],
    }


def test_mlflow_skops_types_come_from_the_config_not_the_artifact(served: Served) -> None:
    """The trusted types an MLmodel file lists are not trusted: without the config's, no load."""
    info = model_info(served.server, "mlflow-untrusted")
    assert info["status"] == "failed"
    assert "sklearn.tree._tree.Tree" in info["reason"]
    assert "skops_trusted_types" in info["reason"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_wrong_pin_refuses_the_artifact(served: Served, case: Case) -> None:
    """A file or MLflow directory whose sha256 differs from its pin is not loaded."""
    info = model_info(served.server, f"{case.name}-wrong-pin")
    assert info["status"] == "failed"
    assert "configuration pins" in info["reason"]


def test_mlflow_integer_columns_refuse_fractional_values(served: Served) -> None:
    """A `long` signature column takes whole numbers and answers a fractional one with 400."""
    url = served.server.base_url + "/predict"
    whole = dict(zip(bm.IRIS_FEATURES, [51, 35, 14, 2], strict=True))
    fractional = {**whole, "petal_length": 14.5}
    ok = httpx.post(
        url, headers=AUTH, params={"model": "mlflow-integers"}, json={"features": whole}
    )
    refused = httpx.post(
        url, headers=AUTH, params={"model": "mlflow-integers"}, json={"features": fractional}
    )
    assert ok.status_code == 200, ok.text
    assert refused.status_code == 400, refused.text
    assert "petal_length" in refused.json()["detail"]
    assert model_info(served.server, "mlflow-integers")["feature_types"] == ["long"] * 4


def test_mlflow_signature_in_another_column_order_is_refused(served: Served) -> None:
    """A signature whose names differ in order from the model's own is refused at load: rows
    would otherwise reach the model with columns swapped."""
    info = model_info(served.server, "mlflow-reversed")
    assert info["status"] == "failed"
    assert "differ from the model's own feature names" in info["reason"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_reload_loads_the_artifact_again_and_serves_the_same_answers(
    served: Served, case: Case
) -> None:
    """The admin reload of an unchanged artifact succeeds, and the reloaded version computes
    the library's answers (on rows no cache holds)."""
    reload_url = f"{served.server.base_url}/admin/models/{case.name}/versions/1/reload"
    response = httpx.post(reload_url, headers=AUTH, json={}, timeout=120)
    assert response.status_code == 200, response.text
    rows = bm.row_sets(case.binary)[2]
    assert_library_answers(
        case, served_probabilities(served.server, case, rows), served.after_reload[case.name]
    )


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_prediction_cache_serves_a_repeated_row(served: Served, case: Case) -> None:
    """A row sent twice is computed once: MISS, then a HIT with the same probabilities."""
    url = served.server.base_url + "/predict"
    row = (bm.CANCER_X if case.binary else bm.IRIS_X)[1]  # a row no other test sends
    answers = [
        httpx.post(
            url, headers=AUTH, params={"model": case.name}, json={"features": row.tolist()},
            timeout=30,
        )
        for _ in range(2)
    ]  # fmt: skip
    assert [a.headers["X-Cache"] for a in answers] == ["MISS", "HIT"]
    assert answers[1].json()["probabilities"] == answers[0].json()["probabilities"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_metrics_label_the_format_and_count_the_library_classes(served: Served, case: Case) -> None:
    """/metrics shows the version's format, and counts the rows, the request and each class
    the library predicts; the rows are split into calls of at most max_batch_size."""
    rows = bm.rows_for(case.binary)
    labels = {"model": case.name, "model_version": "1"}
    before = scrape(served.server)
    served_probabilities(served.server, case)
    after = scrape(served.server)
    info = prometheus.value(
        after, "modelserve_model_info", **labels, format=case.format, status="ready"
    )
    assert info == 1.0
    assert prometheus.moved(before, after, "modelserve_predictions_total", **labels) == 1
    assert prometheus.moved(before, after, "modelserve_rows_predicted_total", **labels) == len(rows)
    predicted = Counter(case.labels[i] for i in served.expected[case.name].argmax(axis=1))
    counted = {
        label: prometheus.moved(
            before, after, "modelserve_predicted_class_total", **labels, label=label
        )
        for label in predicted
    }
    assert counted == dict(predicted)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_batches_split_at_max_batch_size(served: Served, case: Case) -> None:
    """A 20- or 21-row request of uncached rows becomes three model calls of at most 8 rows,
    every row counted once, and is reassembled in order (the answers equal the library's)."""
    rows = bm.fresh_rows_for(case.binary)
    labels = {"model": case.name, "model_version": "1"}
    before = scrape(served.server)
    assert_library_answers(
        case, served_probabilities(served.server, case, rows), served.fresh[case.name]
    )
    after = scrape(served.server)
    calls = math.ceil(len(rows) / MAX_BATCH_SIZE)
    assert prometheus.moved(before, after, "modelserve_batch_rows_count", **labels) == calls
    assert prometheus.moved(before, after, "modelserve_batch_rows_sum", **labels) == len(rows)
    small = prometheus.moved(
        before, after, "modelserve_batch_rows_bucket", **labels, le=f"{MAX_BATCH_SIZE:.1f}"
    )
    assert small == calls


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_warm_up_ran_before_ready(served: Served, case: Case) -> None:
    """Each version was warmed up through its runtime before it was marked ready."""
    samples = scrape(served.server)
    labels = {"model": case.name, "model_version": "1"}
    assert prometheus.value(samples, "modelserve_model_warmup_seconds", **labels) > 0
    assert prometheus.value(samples, "modelserve_model_ready", **labels) == 1


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_drift_compares_traffic_with_the_reference_profile(served: Served, case: Case) -> None:
    """The rows a version answers fill its drift window, and every profiled feature's PSI,
    the class-mix shift and the mean confidence are exported against its profile."""
    rows = bm.rows_for(case.binary)
    served_probabilities(served.server, case)
    labels = {"model": case.name, "model_version": "1"}
    deadline = time.monotonic() + 30
    while True:  # the gauges are refreshed on the monitor's tick
        samples = scrape(served.server)
        window = samples.get(("modelserve_drift_window_rows", frozenset(labels.items())), 0)
        if window >= len(rows) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert window >= len(rows)
    names = case.feature_names or [str(i) for i in range(rows.shape[1])]
    psi = [
        prometheus.value(samples, "modelserve_drift_feature_psi", **labels, feature=name)
        for name in names
    ]
    assert all(math.isfinite(value) and value >= 0 for value in psi), psi
    confidence = prometheus.value(samples, "modelserve_drift_mean_confidence", **labels)
    assert 1 / len(case.labels) <= confidence <= 1.0
    shift = prometheus.value(samples, "modelserve_drift_class_mix_shift", **labels)
    assert 0 <= shift <= 1


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_v2_metadata_describes_each_format(served: Served, case: Case) -> None:
    """GET /v2/models/NAME names the platform, a [-1, width] FP64 input and the outputs."""
    response = httpx.get(
        f"{served.server.base_url}/v2/models/{case.name}", headers=AUTH, timeout=10
    )
    assert response.status_code == 200, response.text
    width = bm.rows_for(case.binary).shape[1]
    assert response.json() == {
        "name": case.name,
        "versions": ["1"],
        "platform": case.platform or platform_of(case.format),
        "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, width]}],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(case.labels)]},
        ],
    }


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_v2_infer_answers_the_library_probabilities(served: Served, case: Case) -> None:
    """A V2 infer of the sample rows answers the library's probabilities and labels."""
    rows = bm.rows_for(case.binary)
    tensor = {"name": "input", "shape": list(rows.shape), "datatype": "FP64",
              "data": rows.ravel().tolist()}  # fmt: skip
    response = httpx.post(
        f"{served.server.base_url}/v2/models/{case.name}/infer",
        headers=AUTH,
        json={"inputs": [tensor]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    expected = served.expected[case.name]
    probabilities = np.array(outputs["probabilities"]["data"]).reshape(expected.shape)
    assert_library_answers(case, probabilities, expected)
    assert outputs["label"]["data"] == [case.labels[i] for i in expected.argmax(axis=1)]


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
