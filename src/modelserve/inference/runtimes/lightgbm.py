"""LightGBM text model files (.txt) through lightgbm (the ``modelserve[lightgbm]`` extra).

Probabilities follow ``LGBMClassifier.predict_proba``: a ``binary`` objective gives two columns
``[1 - p, p]``, ``multiclass``/``multiclassova`` one column per class. Any other objective is a
regressor. A native file does not store class labels: configure ``labels`` for names.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from modelserve.errors import ModelLoadError
from modelserve.inference.artifact import Artifact
from modelserve.inference.runtimes.extras import import_extra
from modelserve.inference.runtimes.trees import binary_columns
from modelserve.inference.types import FloatArray, ModelMetadata, RawOutput

_OBJECTIVE = re.compile(rb"^objective=(\S+)", re.MULTILINE)
_AUTO_NAME = re.compile(r"Column_\d+")
_MULTICLASS = {"multiclass", "multiclassova"}


class LightGBMRuntime:
    """A Booster built from the verified text of a LightGBM model file."""

    format = "lightgbm"

    def __init__(self, artifact: Artifact) -> None:
        lgb = import_extra("lightgbm", f"the LightGBM model {artifact.name}")
        try:
            self.booster: Any = lgb.Booster(model_str=artifact.data.decode("utf-8"))
        except (UnicodeDecodeError, lgb.basic.LightGBMError) as exc:
            raise ModelLoadError(f"lightgbm could not load {artifact.name}: {exc}") from exc
        found = _OBJECTIVE.search(artifact.data)
        self.objective = found.group(1).decode() if found else "regression"
        names = [str(n) for n in self.booster.feature_name()]
        self._metadata = ModelMetadata(
            n_features=int(self.booster.num_feature()),
            is_classifier=self.objective == "binary" or self.objective in _MULTICLASS,
            # Names LightGBM made up for unnamed columns would only confuse named requests.
            feature_names=None if all(_AUTO_NAME.fullmatch(n) for n in names) else names,
            platform="lightgbm_txt",
        )

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    def predict(self, batch: FloatArray) -> RawOutput:
        return predict_booster(self.booster, self.objective, batch)


def predict_booster(booster: Any, objective: str, batch: FloatArray) -> RawOutput:
    """What ``LGBMClassifier.predict_proba`` (or ``LGBMRegressor.predict``) answers."""
    # One thread per call: inference_threads calls run at once (see the XGBoost runtime).
    out = np.asarray(booster.predict(batch, num_threads=1), dtype=np.float64)
    if objective == "binary":
        return RawOutput(probabilities=binary_columns(out))
    if objective in _MULTICLASS:
        return RawOutput(probabilities=out)
    return RawOutput(values=out)
