"""Gradient-boosting runtimes run each model call on one library thread, never on every core.

``batching.inference_threads`` calls run at once, so a version uses that many cores. Where
the library keeps a thread count on the loaded object (an XGBoost Booster's config, the
sklearn wrappers' ``n_jobs``) it is read back from there; LightGBM Boosters and CatBoost models
take it per call only, so those calls are recorded on the real loaded object.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from modelserve.inference.loader import load_runtime
from modelserve.inference.runtimes.catboost import CatBoostRuntime
from modelserve.inference.runtimes.lightgbm import LightGBMRuntime
from modelserve.inference.runtimes.mlflow import SignedRuntime
from modelserve.inference.runtimes.sklearn import SklearnRuntime
from modelserve.inference.runtimes.xgboost import XGBoostRuntime
from modelserve.settings import ModelConfig
from tests import boosted_models as bm


def load(path: Path) -> Any:
    return load_runtime(ModelConfig(name="m", path=path), require_sha256=False).runtime


class CallRecorder:
    """Delegates to a real library object and keeps the keyword arguments of each call."""

    def __init__(self, target: Any) -> None:
        self._target = target
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not callable(attribute):
            return attribute

        def record(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            return attribute(*args, **kwargs)

        return record


def booster_threads(runtime: XGBoostRuntime) -> str:
    config = json.loads(runtime.booster.save_config())
    threads: str = config["learner"]["generic_param"]["nthread"]
    return threads


@pytest.mark.parametrize("suffix", [".json", ".ubj"], ids=["json", "ubj"])
def test_xgboost_booster_is_configured_for_one_thread(tmp_path: Path, suffix: str) -> None:
    """A native XGBoost file's Booster reports nthread 1 (xgboost's default 0 is every core)."""
    bm.save_xgb_native(suffix, binary=False)(tmp_path / "m")
    runtime = load(tmp_path / f"m{suffix}")
    assert isinstance(runtime, XGBoostRuntime)
    assert booster_threads(runtime) == "1"


def test_mlflow_xgboost_flavour_booster_is_configured_for_one_thread(tmp_path: Path) -> None:
    """The xgboost flavour of an MLflow directory loads the same one-thread Booster."""
    bm.save_mlflow("xgboost")(tmp_path / "mlflow")
    runtime = load(tmp_path / "mlflow")
    assert isinstance(runtime, SignedRuntime)
    assert isinstance(runtime.inner, XGBoostRuntime)
    assert booster_threads(runtime.inner) == "1"


@pytest.mark.parametrize(
    "make", [bm.xgb_classifier, bm.lgb_classifier], ids=["xgboost", "lightgbm"]
)
def test_sklearn_wrapper_is_set_to_one_job(tmp_path: Path, make: Callable[[bool], Any]) -> None:
    """A pickled XGBClassifier/LGBMClassifier fitted with every core is loaded with n_jobs 1."""
    model = make(False).set_params(n_jobs=-1)
    joblib.dump(model, tmp_path / "m.joblib")
    runtime = load(tmp_path / "m.joblib")
    assert isinstance(runtime, SklearnRuntime)
    assert runtime.estimator.get_params()["n_jobs"] == 1


def test_lightgbm_booster_predicts_on_one_thread(tmp_path: Path) -> None:
    """Every LightGBM Booster predict call asks for num_threads 1 (its default is every core)."""
    bm.save_lgb_native(binary=False)(tmp_path / "m")
    runtime = load(tmp_path / "m.txt")
    assert isinstance(runtime, LightGBMRuntime)
    recorder = CallRecorder(runtime.booster)
    runtime.booster = recorder
    runtime.predict(bm.IRIS_ROWS)
    assert [(name, kwargs.get("num_threads")) for name, kwargs in recorder.calls] == [
        ("predict", 1)
    ]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "multiclass"])
def test_catboost_model_predicts_on_one_thread(tmp_path: Path, binary: bool) -> None:
    """Every CatBoost predict call asks for thread_count 1 (its default -1 is every core)."""
    bm.save_catboost(binary)(tmp_path / "m")
    runtime = load(tmp_path / "m.cbm")
    assert isinstance(runtime, CatBoostRuntime)
    recorder = CallRecorder(runtime.model)
    runtime.model = recorder
    runtime.predict(bm.rows_for(binary))
    assert [kwargs.get("thread_count") for _, kwargs in recorder.calls] == [1]


def test_pickled_catboost_wrapper_loads_and_predicts_on_one_thread(tmp_path: Path) -> None:
    """A fitted CatBoostClassifier refuses new parameters, so its thread count goes with each
    call; it loads, answers its own predict_proba, and every call asks for one thread."""
    model = bm.cb_classifier(binary=False)
    joblib.dump(model, tmp_path / "m.joblib")
    runtime = load(tmp_path / "m.joblib")
    assert isinstance(runtime, SklearnRuntime)
    recorder = CallRecorder(runtime.estimator)
    runtime.estimator = recorder
    served = runtime.predict(bm.IRIS_ROWS).probabilities
    assert [kwargs.get("thread_count") for _, kwargs in recorder.calls] == [1]
    np.testing.assert_array_equal(served, model.predict_proba(bm.IRIS_ROWS))
