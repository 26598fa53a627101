"""Model doubles. They are real picklable estimators, so e2e servers can load them from files
(the server process imports this module: e2e tests put the repository root on PYTHONPATH)."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from modelserve.inference.types import FloatArray, ModelMetadata, RawOutput

LABELS = ["setosa", "versicolor", "virginica"]


class SlowClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Sleeps ``delay_s`` per call, then answers class 0 with certainty."""

    def __init__(self, delay_s: float = 1.0, n_features: int = 4) -> None:
        self.delay_s = delay_s
        self.n_features = n_features

    def fit(self, x: Any, y: Any) -> SlowClassifier:
        self.classes_ = np.arange(3)
        self.n_features_in_ = self.n_features
        return self

    def predict_proba(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        time.sleep(self.delay_s)
        out = np.zeros((len(x), 3))
        out[:, 0] = 1.0
        return out

    def predict(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        return np.asarray(self.predict_proba(x).argmax(axis=1))


class BusyClassifier(SlowClassifier):
    """Computes in Python, holding the GIL, for ``delay_s`` per call (a CPU-bound model)."""

    def predict_proba(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        deadline = time.perf_counter() + self.delay_s
        while time.perf_counter() < deadline:
            pass
        out = np.zeros((len(x), 3))
        out[:, 0] = 1.0
        return out


class FailingClassifier(SlowClassifier):
    """Raises when any row's first feature equals ``poison`` (so one batch fails, not all)."""

    def __init__(self, poison: float = 666.0, n_features: int = 4) -> None:
        super().__init__(0.0, n_features)
        self.poison = poison

    def predict_proba(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if np.any(x[:, 0] == self.poison):
            raise RuntimeError("poisoned row: secret internal detail")
        return super().predict_proba(x)


class SumRegressor(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """Predicts the sum of the features, so every caller can check its own answer."""

    def __init__(self, n_features: int = 4) -> None:
        self.n_features = n_features

    def fit(self, x: Any, y: Any) -> SumRegressor:
        self.n_features_in_ = self.n_features
        return self

    def predict(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.asarray(x.sum(axis=1))


class EchoRuntime:
    """Runtime returning each row's first feature as its value; records every batch size."""

    format = "fake"

    def __init__(self, n_features: int = 4, delay_s: float = 0.0) -> None:
        self._metadata = ModelMetadata(n_features=n_features, is_classifier=False)
        self.delay_s = delay_s
        self.batch_sizes: list[int] = []
        self._lock = threading.Lock()

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    def predict(self, batch: FloatArray) -> RawOutput:
        with self._lock:
            self.batch_sizes.append(len(batch))
        if self.delay_s:
            time.sleep(self.delay_s)
        return RawOutput(values=batch[:, 0].copy())


class FailingRuntime(EchoRuntime):
    """Fails any batch containing a row whose first feature is negative."""

    def predict(self, batch: FloatArray) -> RawOutput:
        if np.any(batch[:, 0] < 0):
            raise RuntimeError("negative input: internal detail")
        return super().predict(batch)
