"""CatBoost model files (.cbm) through catboost (the ``modelserve[catboost]`` extra).

A model trained with a classification loss answers ``predict(prediction_type="Probability")``,
exactly what ``CatBoostClassifier.predict_proba`` returns; any other loss is a regressor.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelserve.errors import ModelLoadError
from modelserve.inference.artifact import Artifact
from modelserve.inference.runtimes.extras import import_extra
from modelserve.inference.types import FloatArray, ModelMetadata, RawOutput

_CLASSIFICATION_LOSSES = {"Logloss", "CrossEntropy", "MultiClass", "MultiClassOneVsAll"}
_EXPONENT_LOSSES = {"Poisson", "Tweedie"}


class CatBoostRuntime:
    """A CatBoost model loaded from the verified bytes of a .cbm file."""

    format = "catboost"

    def __init__(self, artifact: Artifact) -> None:
        name = artifact.name
        catboost = import_extra("catboost", f"the CatBoost model {name}")
        self.model: Any = catboost.CatBoost()
        try:
            self.model.load_model(blob=artifact.data)
        except catboost.CatBoostError as exc:
            raise ModelLoadError(f"catboost could not load {name}: {exc}") from exc
        loss = str(self.model.get_all_params().get("loss_function", "")).split(":")[0]
        self._is_classifier = loss in _CLASSIFICATION_LOSSES
        # CatBoostRegressor.predict's own default for each loss.
        self._regression_type = "Exponent" if loss in _EXPONENT_LOSSES else "RawFormulaVal"
        if self.model.get_cat_feature_indices() or self.model.get_text_feature_indices():
            raise ModelLoadError(f"{name} has categorical or text features; only numeric ones")
        classes = getattr(self.model, "classes_", None) if self._is_classifier else None
        names = [str(n) for n in self.model.feature_names_ or []]
        self._metadata = ModelMetadata(
            n_features=len(names) or None,
            is_classifier=self._is_classifier,
            classes=[str(c) for c in classes] if classes is not None and len(classes) else None,
            # CatBoost names unnamed columns "0", "1", ...: not names worth serving.
            feature_names=None if names == [str(i) for i in range(len(names))] else names,
            platform="catboost_cbm",
        )

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    def predict(self, batch: FloatArray) -> RawOutput:
        # One thread per call: inference_threads calls run at once (see the XGBoost runtime).
        if self._is_classifier:
            probabilities = self.model.predict(batch, prediction_type="Probability", thread_count=1)
            return RawOutput(probabilities=np.asarray(probabilities, dtype=np.float64))
        values = self.model.predict(batch, self._regression_type, thread_count=1)
        return RawOutput(values=np.asarray(values, dtype=np.float64))
