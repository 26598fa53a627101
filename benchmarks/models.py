"""The benchmark models, their request rows, and the in-process ceiling.

Both models are fitted on scikit-learn's bundled iris data with a fixed seed and saved with
joblib, so every server in a run loads the very same files. The in-process ceiling times
``predict_proba`` in this process: what a server could reach if HTTP cost nothing.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

SEED = 7
LABELS = ["setosa", "versicolor", "virginica"]
N_ROWS = 10_000
"""Distinct request rows: enough that a prediction cache, if one were on, rarely repeats."""


@dataclass(frozen=True)
class ModelFile:
    """A saved benchmark model."""

    name: str
    path: Path
    description: str


def build_models(work_dir: Path) -> dict[str, ModelFile]:
    """Fit ``logreg`` and ``forest`` on iris and save them under ``work_dir/models``."""
    out = work_dir / "models"
    out.mkdir(parents=True, exist_ok=True)
    x, y = load_iris(return_X_y=True)
    logreg = Pipeline(
        [("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=1000, random_state=SEED))]
    ).fit(x, y)
    forest = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=SEED).fit(x, y)
    specs = {
        "logreg": (logreg, "Pipeline(StandardScaler, LogisticRegression): cheap per call"),
        "forest": (forest, "RandomForestClassifier(100 trees, max_depth 8): costly per call"),
    }
    files: dict[str, ModelFile] = {}
    for name, (model, description) in specs.items():
        path = out / f"{name}.joblib"
        joblib.dump(model, path)
        files[name] = ModelFile(name=name, path=path.resolve(), description=description)
    return files


def request_rows(n_rows: int = N_ROWS) -> npt.NDArray[np.float64]:
    """Iris rows with small seeded jitter, rounded to 2 decimals: realistic and distinct."""
    x, _ = load_iris(return_X_y=True)
    rng = np.random.default_rng(SEED)
    picks = x[rng.integers(0, len(x), size=n_rows)]
    jitter = rng.normal(0.0, 0.05, size=picks.shape)
    rows: npt.NDArray[np.float64] = np.round(np.clip(picks + jitter, 0.1, None), 2)
    return rows


def write_rows_csv(rows: npt.NDArray[np.float64], path: Path) -> Path:
    """Write rows as comma-separated lines, the format the wrk Lua scripts read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (",".join(f"{v:.2f}" for v in row) for row in rows)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def in_process_rows_per_s(
    model: Any,
    rows: npt.NDArray[np.float64],
    batch_size: int,
    repeats: int = 5,
    budget_s: float = 1.0,
) -> float:
    """Median over ``repeats`` of rows/s for ``predict_proba`` on ``batch_size``-row batches.

    Each repeat calls the model for at most ``budget_s`` seconds (and at most 100,000 calls),
    so the loop is bounded in time and count whatever the model costs.
    """
    batches = [rows[i : i + batch_size] for i in range(0, len(rows) - batch_size + 1, batch_size)]
    model.predict_proba(batches[0])  # warm caches and lazy state before timing
    rates: list[float] = []
    for _ in range(repeats):
        calls = 0
        start = time.perf_counter()
        elapsed = 0.0
        while elapsed < budget_s and calls < 100_000:
            model.predict_proba(batches[calls % len(batches)])
            calls += 1
            elapsed = time.perf_counter() - start
        rates.append(calls * batch_size / elapsed)
    return statistics.median(rates)


class SleepingClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Sleeps ``delay_s`` per call, then answers class 0: a model call that holds an
    inference thread without using a core (a remote or I/O-bound model)."""

    def __init__(self, delay_s: float = 1.0) -> None:
        self.delay_s = delay_s

    def fit(self, x: Any, y: Any) -> SleepingClassifier:
        self.classes_ = np.arange(len(LABELS))
        self.n_features_in_ = 4
        return self

    def predict_proba(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        time.sleep(self.delay_s)
        out = np.zeros((len(x), len(LABELS)))
        out[:, 0] = 1.0
        return out

    def predict(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        return np.asarray(self.predict_proba(x).argmax(axis=1))
