"""scikit-learn estimators from pickle/joblib files or, safely, from skops files."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import sklearn
from sklearn.base import is_classifier, is_regressor

from modelserve.errors import ModelLoadError
from modelserve.inference.types import FloatArray, ModelMetadata, RawOutput


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
        self._has_proba = is_classifier(estimator) and hasattr(estimator, "predict_proba")
        self._use_predict = label_from == "predict" or not self._has_proba
        self._metadata = _read_metadata(estimator)

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    def predict(self, batch: FloatArray) -> RawOutput:
        # The server validated shape and finiteness already; skip sklearn's own re-check.
        with sklearn.config_context(assume_finite=True):
            probabilities = self.estimator.predict_proba(batch) if self._has_proba else None
            values = self.estimator.predict(batch) if self._use_predict else None
        return RawOutput(
            probabilities=None if probabilities is None else np.asarray(probabilities, np.float64),
            values=None if values is None else np.asarray(values),
        )


def load_pickle(path: Path, label_from: Literal["argmax", "predict"]) -> SklearnRuntime:
    """Load a joblib or plain pickle file. Pickles run code on load: only configured paths."""
    import joblib

    return SklearnRuntime(joblib.load(path), format="sklearn", label_from=label_from)


def load_skops(
    path: Path, trusted: list[str], label_from: Literal["argmax", "predict"]
) -> SklearnRuntime:
    """Load a .skops model file (see :func:`load_skops_object`)."""
    return SklearnRuntime(load_skops_object(path, trusted), format="skops", label_from=label_from)


def load_skops_object(path: Path, trusted: list[str]) -> Any:
    """Load a .skops file, refusing any type that is neither skops-safe nor listed as trusted."""
    import skops.io as sio

    untrusted = set(sio.get_untrusted_types(file=path)) - set(trusted)
    if untrusted:
        raise ModelLoadError(
            f"{path.name} contains types not in skops_trusted_types: {', '.join(sorted(untrusted))}"
        )
    return sio.load(path, trusted=list(trusted) or None)


def _read_metadata(estimator: Any) -> ModelMetadata:
    n_features = getattr(estimator, "n_features_in_", None)
    names = getattr(estimator, "feature_names_in_", None)
    classes = getattr(estimator, "classes_", None)
    return ModelMetadata(
        n_features=int(n_features) if n_features is not None else None,
        is_classifier=bool(is_classifier(estimator)) and not is_regressor(estimator),
        classes=[str(c) for c in classes] if classes is not None else None,
        feature_names=[str(n) for n in names] if names is not None else None,
    )
