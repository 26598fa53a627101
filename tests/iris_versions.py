"""Several real versions of an iris model, and the config that serves them (versions tests).

Picklable: e2e servers import this module (the repository root is on their PYTHONPATH).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt
import yaml
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from tests.fakes import SlowClassifier

LABELS = ["setosa", "versicolor", "virginica"]
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SETOSA_ROW = [5.1, 3.5, 1.4, 0.2]
GATE = threading.Event()
"""While clear, every GatedClassifier call waits (at most GATE_TIMEOUT_S) for it to be set."""
GATE.set()
GATE_TIMEOUT_S = 20.0


def iris() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    data = load_iris()
    return data.data.astype(np.float64), data.target


def logistic(c: float = 1.0) -> LogisticRegression:
    """LogisticRegression on raw iris features; answers setosa for SETOSA_ROW."""
    x, y = iris()
    return LogisticRegression(C=c, max_iter=2000).fit(x, y)


def forest() -> RandomForestClassifier:
    """A small RandomForest on iris."""
    x, y = iris()
    return RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(x, y)


def shifted() -> LogisticRegression:
    """Trained on labels shifted by one class: answers versicolor for SETOSA_ROW."""
    x, y = iris()
    return LogisticRegression(max_iter=2000).fit(x, (y + 1) % 3)


def scaler_and_model() -> tuple[StandardScaler, LogisticRegression]:
    """A scaler and a model fitted on its output (served as pre-processor + model)."""
    x, y = iris()
    scaler = StandardScaler().fit(x)
    return scaler, LogisticRegression(C=0.5, max_iter=2000).fit(scaler.transform(x), y)


class GatedClassifier(SlowClassifier):
    """Answers class 0, after waiting for GATE (so a test decides when it finishes)."""

    def __init__(self, n_features: int = 4) -> None:
        super().__init__(0.0, n_features)

    def predict_proba(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        GATE.wait(GATE_TIMEOUT_S)
        return super().predict_proba(x)


def dump(estimator: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(estimator, path)
    return path


def version_entry(name: str, version: str, path: Path, **extra: Any) -> dict[str, Any]:
    """One `models:` entry of a config file, with the iris labels and feature names."""
    return {
        "name": name,
        "version": version,
        "path": str(path),
        "labels": list(LABELS),
        "feature_names": list(FEATURES),
        **extra,
    }


def write_config(path: Path, models: list[dict[str, Any]], **top: Any) -> Path:
    """A modelserve YAML file; quiet access log so servers under load write little."""
    config = {"server": {"access_log": False}, "models": models, **top}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
