"""Small classifiers trained on iris with string, integer and boolean targets, and their config.

Labels go out as BYTES on every transport whatever their type in training; these models let
the V2 tests check that for each kind (and compare answers with the library's predict_proba).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression

from tests.e2e.conftest import write_config

TARGETS: dict[str, Any] = {
    "strings": lambda y: np.array(["setosa", "versicolor", "virginica"])[y],
    "ints": lambda y: np.array([10, 20, 30])[y],
    "bools": lambda y: y == 0,
}
"""Model name → how its target is built from iris' class indices."""


def iris() -> tuple[np.ndarray, np.ndarray]:
    data = load_iris()
    return data.data.astype(np.float64), data.target


def build_label_models(out: Path, **server: Any) -> Path:
    """Write the classifiers (plus a regressor, ``petal``) and a config serving them."""
    out.mkdir(parents=True, exist_ok=True)
    x, y = iris()
    models: list[dict[str, Any]] = []
    for name, target in TARGETS.items():
        model = LogisticRegression(max_iter=500, random_state=0).fit(x, target(y))
        joblib.dump(model, out / f"{name}.joblib")
        models.append({"name": name, "path": str(out / f"{name}.joblib")})
    regressor = LinearRegression().fit(x[:, :3], x[:, 3])
    joblib.dump(regressor, out / "petal.joblib")
    models.append({"name": "petal", "path": str(out / "petal.joblib")})
    models[0]["feature_names"] = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    return write_config(out, {"models": models, "server": server})
