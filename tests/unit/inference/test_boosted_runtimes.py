"""The gradient-boosting runtimes beyond the served classifiers: softmax margins, class names
the model knows, and regressors, each equal to what the library itself answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import catboost
import joblib
import lightgbm
import numpy as np
import pytest
import xgboost

from modelserve.inference.loader import load_runtime
from modelserve.settings import ModelConfig
from tests import boosted_models as bm

IRIS_NAMES = np.array(["setosa", "versicolor", "virginica"])


def load(path: Path) -> Any:
    return load_runtime(ModelConfig(name="m", path=path), require_sha256=False).runtime


def test_xgboost_softmax_objective_answers_predict_proba(tmp_path: Path) -> None:
    """multi:softmax (which predicts classes) is served as XGBClassifier.predict_proba: the
    softmax of the margins, within float32 rounding (xgboost computes it in float32)."""
    model = xgboost.XGBClassifier(
        n_estimators=10, max_depth=3, objective="multi:softmax", random_state=bm.SEED
    ).fit(bm.IRIS_X, bm.IRIS_Y)
    model.save_model(tmp_path / "m.json")
    runtime = load(tmp_path / "m.json")
    served = runtime.predict(bm.IRIS_ROWS).probabilities
    assert runtime.metadata.is_classifier
    np.testing.assert_allclose(served, model.predict_proba(bm.IRIS_ROWS), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(served.argmax(axis=1), model.predict(bm.IRIS_ROWS))


def test_catboost_class_names_come_from_the_model(tmp_path: Path) -> None:
    """A CatBoost model trained on string labels names its classes: no `labels` needed."""
    model = catboost.CatBoostClassifier(
        iterations=10, depth=3, random_seed=bm.SEED, verbose=0, allow_writing_files=False
    ).fit(bm.IRIS_X, IRIS_NAMES[bm.IRIS_Y])
    model.save_model(str(tmp_path / "m.cbm"))
    runtime = load(tmp_path / "m.cbm")
    assert runtime.metadata.classes == list(IRIS_NAMES)
    np.testing.assert_array_equal(
        runtime.predict(bm.IRIS_ROWS).probabilities, model.predict_proba(bm.IRIS_ROWS)
    )


@pytest.mark.parametrize(
    "make", [bm.xgb_classifier, bm.lgb_classifier], ids=["xgboost", "lightgbm"]
)
def test_sklearn_wrapper_classes_come_from_the_model(tmp_path: Path, make: Any) -> None:
    """A pickled XGBClassifier/LGBMClassifier serves the classes it was fitted with."""
    joblib.dump(make(False), tmp_path / "m.joblib")
    assert load(tmp_path / "m.joblib").metadata.classes == ["0", "1", "2"]


def save_regressor(kind: str, path: Path) -> tuple[Path, Any]:
    """A regressor of petal width from the other iris columns, in its native file (or, for a
    `-pickled` kind, the library's scikit-learn wrapper in joblib)."""
    x, y = bm.IRIS_X[:, :3], bm.IRIS_X[:, 3]
    if kind.endswith("-pickled"):
        wrapper: Any = (
            xgboost.XGBRegressor(n_estimators=10, random_state=bm.SEED)
            if kind.startswith("xgboost")
            else lightgbm.LGBMRegressor(n_estimators=10, random_state=bm.SEED, verbose=-1)
        )
        joblib.dump(wrapper.fit(x, y), path / "m.joblib")
        return path / "m.joblib", wrapper
    if kind == "xgboost":
        model: Any = xgboost.XGBRegressor(n_estimators=10, random_state=bm.SEED).fit(x, y)
        model.save_model(path / "m.json")
        return path / "m.json", model
    if kind == "lightgbm":
        model = lightgbm.LGBMRegressor(n_estimators=10, random_state=bm.SEED, verbose=-1)
        model.fit(x, y).booster_.save_model(path / "m.txt")
        return path / "m.txt", model
    loss = "Poisson" if kind == "catboost-poisson" else "RMSE"
    model = catboost.CatBoostRegressor(
        iterations=10, loss_function=loss, random_seed=bm.SEED, verbose=0,
        allow_writing_files=False,
    ).fit(x, y)  # fmt: skip
    model.save_model(str(path / "m.cbm"))
    return path / "m.cbm", model


@pytest.mark.parametrize(
    "kind",
    ["xgboost", "lightgbm", "catboost", "catboost-poisson", "xgboost-pickled", "lightgbm-pickled"],
)
def test_regressor_values_equal_the_library_predict(tmp_path: Path, kind: str) -> None:
    """A regression objective is served as values, equal to the library's own predict()
    (CatBoost's Poisson loss through its exponent, as CatBoostRegressor.predict does)."""
    path, model = save_regressor(kind, tmp_path)
    runtime = load(path)
    rows = bm.IRIS_ROWS[:, :3]
    output = runtime.predict(rows)
    assert not runtime.metadata.is_classifier
    assert output.probabilities is None
    np.testing.assert_array_equal(output.values, np.asarray(model.predict(rows), np.float64))
