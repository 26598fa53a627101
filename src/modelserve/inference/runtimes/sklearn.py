"""scikit-learn estimators from pickle/joblib bytes or, safely, from skops bytes."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import sklearn
from sklearn.base import is_classifier, is_regressor

from modelserve.errors import ModelLoadError
from modelserve.inference.artifact import Artifact
from modelserve.inference.runtimes.sklearn_features import sklearn_features
from modelserve.inference.types import FloatArray, ModelMetadata, RawOutput
from modelserve.settings import ModelConfig

if TYPE_CHECKING:
    import pandas as pd


class SklearnRuntime:
    """Wraps a fitted estimator (or Pipeline) behind the Runtime contract."""

    def __init__(
        self,
        estimator: Any,
        *,
        format: str = "sklearn",
        label_from: Literal["argmax", "predict"] = "argmax",
    ) -> None:
        if not hasattr(estimator, "predict"):
            raise ModelLoadError(f"{type(estimator).__name__} has no predict(); not a model")
        self.estimator = estimator
        self.format = format
        self._call_params = _one_thread_per_call(estimator)
        self._has_proba = is_classifier(estimator) and hasattr(estimator, "predict_proba")
        self._use_predict = label_from == "predict" or not self._has_proba
        self._metadata = _read_metadata(estimator)

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    def predict(self, batch: FloatArray) -> RawOutput:
        # The server validated shape and finiteness already; skip sklearn's own re-check.
        with sklearn.config_context(assume_finite=True):
            params = self._call_params
            probabilities = (
                self.estimator.predict_proba(batch, **params) if self._has_proba else None
            )
            values = self.estimator.predict(batch, **params) if self._use_predict else None
        return _raw(probabilities, values)

    def predict_frame(self, frame: pd.DataFrame) -> RawOutput:
        """Predict a DataFrame of typed columns (NaN where null: no finiteness shortcut)."""
        params = self._call_params
        probabilities = self.estimator.predict_proba(frame, **params) if self._has_proba else None
        values = self.estimator.predict(frame, **params) if self._use_predict else None
        return _raw(probabilities, values)


def _raw(probabilities: Any, values: Any) -> RawOutput:
    return RawOutput(
        probabilities=None if probabilities is None else np.asarray(probabilities, np.float64),
        values=None if values is None else np.asarray(values),
    )


def load_pickle(artifact: Artifact, config: ModelConfig) -> SklearnRuntime:
    """A joblib or plain pickle model. Unpickling runs code: only configured, pinned files."""
    return SklearnRuntime(
        load_pickle_object(artifact), format="sklearn", label_from=config.label_from
    )


def load_pickle_object(artifact: Artifact) -> Any:
    """Unpickle an artifact's bytes with joblib (which also reads plain pickles)."""
    import joblib

    return joblib.load(io.BytesIO(artifact.data))


def load_skops(artifact: Artifact, config: ModelConfig) -> SklearnRuntime:
    """A .skops model (see :func:`load_skops_object`)."""
    return SklearnRuntime(
        load_skops_object(artifact, config.skops_trusted_types),
        format="skops",
        label_from=config.label_from,
    )


def load_skops_object(artifact: Artifact, trusted: list[str]) -> Any:
    """Load .skops bytes, refusing any type that is neither skops-safe nor listed as trusted."""
    import skops.io as sio

    untrusted = set(sio.get_untrusted_types(data=artifact.data)) - set(trusted)
    if untrusted:
        raise ModelLoadError(
            f"{artifact.name} contains types not in skops_trusted_types: "
            f"{', '.join(sorted(untrusted))}"
        )
    return sio.loads(artifact.data, trusted=list(trusted) or None)


_THREADED_WRAPPERS = {"xgboost": "n_jobs", "lightgbm": "n_jobs"}
"""Libraries whose sklearn wrappers predict on every core unless their parameter says not to."""
_PER_CALL_THREADS = {"catboost": {"thread_count": 1}}
"""Libraries whose fitted wrappers refuse new parameters: the thread count goes with each call."""


def _one_thread_per_call(estimator: Any) -> dict[str, Any]:
    """XGBoost/LightGBM/CatBoost wrappers (alone or as a Pipeline's steps) use one thread.

    inference_threads calls run at once, so a version then uses at most that many cores.
    Returns the keyword arguments every predict call must pass (CatBoost's thread count; a
    Pipeline hands them to its final step).
    """
    steps = [step for _, step in getattr(estimator, "steps", [])] or [estimator]
    for step in steps:
        param = _THREADED_WRAPPERS.get(_library(step))
        if param is not None and hasattr(step, "set_params"):
            step.set_params(**{param: 1})
    return dict(_PER_CALL_THREADS.get(_library(steps[-1]), {}))


def _library(estimator: Any) -> str:
    return type(estimator).__module__.split(".")[0]


def _read_metadata(estimator: Any) -> ModelMetadata:
    n_features = getattr(estimator, "n_features_in_", None)
    names = getattr(estimator, "feature_names_in_", None)
    classes = getattr(estimator, "classes_", None)
    return ModelMetadata(
        n_features=int(n_features) if n_features is not None else None,
        is_classifier=bool(is_classifier(estimator)) and not is_regressor(estimator),
        classes=[str(c) for c in classes] if classes is not None else None,
        feature_names=[str(n) for n in names] if names is not None else None,
        features=sklearn_features(estimator),
    )
