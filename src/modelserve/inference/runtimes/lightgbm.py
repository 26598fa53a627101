"""LightGBM text model files (.txt) through lightgbm (the ``modelserve[lightgbm]`` extra).

Probabilities follow ``LGBMClassifier.predict_proba``: a ``binary`` objective gives two columns
``[1 - p, p]``, ``multiclass``/``multiclassova`` one column per class. Any other objective is a
regressor. A native file does not store class labels: configure ``labels`` for names.

A model trained on a DataFrame with pandas ``category`` columns stores each one's categories
(``pandas_categorical``) and their positions (``categorical_feature``): those columns become
``category`` features with the training categories (an unknown value is refused), the others
``float``; every column is nullable, as LightGBM routes missing values itself. Each model call
then gets one DataFrame, which LightGBM maps onto the training categories.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from modelserve.errors import ModelLoadError
from modelserve.inference.artifact import Artifact
from modelserve.inference.runtimes.extras import import_extra
from modelserve.inference.runtimes.trees import binary_columns
from modelserve.inference.types import Category, FeatureSpec, FloatArray, ModelMetadata, RawOutput

if TYPE_CHECKING:
    import pandas as pd

_OBJECTIVE = re.compile(rb"^objective=(\S+)", re.MULTILINE)
_CATEGORICAL = re.compile(rb"^\[categorical_feature: ([0-9,]*)\]", re.MULTILINE)
_PANDAS_CATEGORIES = re.compile(rb"^pandas_categorical:(.*)$", re.MULTILINE)
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
            features=lightgbm_features(artifact.data, names),
        )

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    def predict(self, batch: FloatArray) -> RawOutput:
        return predict_booster(self.booster, self.objective, batch)

    def predict_frame(self, frame: pd.DataFrame) -> RawOutput:
        """A model with pandas categorical features: LightGBM recodes the DataFrame's
        categories onto the training ones."""
        return predict_booster(self.booster, self.objective, frame)


def lightgbm_features(model_text: bytes, names: Sequence[str]) -> tuple[FeatureSpec, ...] | None:
    """The typed schema of a model with pandas categorical columns (``None``: floats only)."""
    found = _PANDAS_CATEGORIES.search(model_text)
    categories = json.loads(found.group(1)) if found else None
    if not categories:
        return None
    positions = _CATEGORICAL.search(model_text)
    indexes = [int(i) for i in positions.group(1).split(b",") if i] if positions else []
    if len(indexes) != len(categories):
        raise ModelLoadError(
            f"the model has {len(indexes)} categorical features but pandas categories for"
            f" {len(categories)}: list `features` in its config"
        )
    by_index: dict[int, tuple[Category, ...]] = {
        i: tuple(values) for i, values in zip(indexes, categories, strict=True)
    }
    return tuple(
        FeatureSpec(name, "category", by_index[i], nullable=True)
        if i in by_index
        else FeatureSpec(name, "float", nullable=True)
        for i, name in enumerate(names)
    )


def predict_booster(booster: Any, objective: str, batch: FloatArray | pd.DataFrame) -> RawOutput:
    """What ``LGBMClassifier.predict_proba`` (or ``LGBMRegressor.predict``) answers."""
    # One thread per call: inference_threads calls run at once (see the XGBoost runtime).
    out = np.asarray(booster.predict(batch, num_threads=1), dtype=np.float64)
    if objective == "binary":
        return RawOutput(probabilities=binary_columns(out))
    if objective in _MULTICLASS:
        return RawOutput(probabilities=out)
    return RawOutput(values=out)
