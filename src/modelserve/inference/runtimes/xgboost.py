"""XGBoost ``Booster`` files (.json, .ubj) through xgboost (the ``modelserve[xgboost]`` extra).

Probabilities follow ``XGBClassifier.predict_proba``: ``binary:logistic`` gives two columns
``[1 - p, p]``, ``multi:softprob`` one column per class, ``multi:softmax`` the softmax of the
margins. Any other objective is a regressor (the prediction itself).

A model trained with ``enable_categorical`` on a DataFrame of pandas ``category`` columns keeps
each column's categories (XGBoost 3.1 and later): those columns become ``category`` features
with the training categories (an unknown value is refused), ``int`` columns ``int``, the others
``float``; every column is nullable, as XGBoost routes missing values itself. Each model call
then gets one DataFrame, which XGBoost recodes onto the training categories. Reading the
categories needs pyarrow (the ``parquet`` extra).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from modelserve.errors import ModelLoadError
from modelserve.inference.artifact import Artifact
from modelserve.inference.runtimes.extras import import_extra
from modelserve.inference.runtimes.scores import softmax
from modelserve.inference.runtimes.trees import binary_columns
from modelserve.inference.types import Category, FeatureSpec, FloatArray, ModelMetadata, RawOutput

if TYPE_CHECKING:
    import pandas as pd

_BINARY = {"binary:logistic"}
_PROBABILITIES = {"multi:softprob"}
_MARGINS = {"multi:softmax"}


class XGBoostRuntime:
    """A Booster loaded from the verified bytes of a native model file."""

    format = "xgboost"

    def __init__(self, artifact: Artifact, *, classifier_hint: bool | None) -> None:
        xgb = import_extra("xgboost", f"the XGBoost model {artifact.name}")
        self.booster: Any = xgb.Booster()
        try:
            self.booster.load_model(bytearray(artifact.data))
        except xgb.core.XGBoostError as exc:
            reason = _first_line(exc)
            raise ModelLoadError(f"xgboost could not load {artifact.name}: {reason}") from exc
        # One thread per call: inference_threads calls run at once, so a version uses at most
        # that many cores (xgboost's default is every core, per call).
        self.booster.set_param({"nthread": 1})
        learner = json.loads(self.booster.save_config())["learner"]
        self.objective: str = learner["objective"]["name"]
        is_classifier = self.objective in _BINARY | _PROBABILITIES | _MARGINS or bool(
            classifier_hint and self.objective.startswith(("binary:", "multi:"))
        )
        self._metadata = ModelMetadata(
            n_features=int(self.booster.num_features()),
            is_classifier=is_classifier,
            classes=_sklearn_classes(self.booster),
            feature_names=self.booster.feature_names,
            platform="xgboost_json" if _is_json(artifact.data) else "xgboost_ubj",
            features=xgboost_features(self.booster),
        )

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    def predict(self, batch: FloatArray) -> RawOutput:
        return predict_booster(self.booster, self.objective, batch)

    def predict_frame(self, frame: pd.DataFrame) -> RawOutput:
        """A model with categorical features: XGBoost recodes the DataFrame's categories."""
        return predict_booster(self.booster, self.objective, frame)


def xgboost_features(booster: Any) -> tuple[FeatureSpec, ...] | None:
    """The typed schema of a model with categorical features (``None``: floats only)."""
    types = booster.feature_types
    if not types or "c" not in types:
        return None
    names = booster.feature_names
    if names is None:
        raise ModelLoadError("the model has categorical features but no feature names")
    try:
        stored = booster.get_categories(export_to_arrow=True).to_arrow()
    except AttributeError as exc:
        raise ModelLoadError(
            "reading a model's categories needs XGBoost 3.1 or later (or list `features`)"
        ) from exc
    except ImportError as exc:
        raise ModelLoadError(
            "reading an XGBoost model's categories needs pyarrow: pip install 'modelserve[parquet]'"
        ) from exc
    categories: dict[str, tuple[Category, ...]] = {
        str(name): tuple(values.to_pylist()) for name, values in stored if values is not None
    }
    specs = []
    for name, kind in zip(names, types, strict=True):
        if kind == "c":
            if name not in categories:
                raise ModelLoadError(
                    f"the model does not store the categories of {name} (train it with"
                    " XGBoost 3.1 or later, or list `features` in its config)"
                )
            specs.append(FeatureSpec(name, "category", categories[name], nullable=True))
        else:
            specs.append(FeatureSpec(name, "int" if kind == "int" else "float", nullable=True))
    return tuple(specs)


def predict_booster(booster: Any, objective: str, batch: FloatArray | pd.DataFrame) -> RawOutput:
    """What ``XGBClassifier.predict_proba`` (or ``XGBRegressor.predict``) answers for ``batch``."""
    if objective in _MARGINS:
        margins = booster.inplace_predict(batch, predict_type="margin")
        return RawOutput(probabilities=softmax(np.asarray(margins, dtype=np.float64)))
    out = booster.inplace_predict(batch)
    if objective in _BINARY:
        return RawOutput(probabilities=binary_columns(out))
    if objective in _PROBABILITIES:
        return RawOutput(probabilities=np.asarray(out, dtype=np.float64))
    values = np.asarray(out, dtype=np.float64)
    return RawOutput(values=values[:, 0] if values.ndim == 2 and values.shape[1] == 1 else values)


def _sklearn_classes(booster: Any) -> list[str] | None:
    """The class labels an ``XGBClassifier`` saved beside the trees, if it saved any."""
    saved = booster.attr("scikit_learn")
    if not saved:
        return None
    try:
        classes = json.loads(saved).get("classes_")
    except (ValueError, AttributeError):
        return None
    return [str(c) for c in classes] if isinstance(classes, list) and classes else None


def _is_json(data: bytes) -> bool:
    """JSON opens with ``{`` then a quote or space; UBJSON's ``{`` is followed by a type marker."""
    head = data.lstrip()[:2]
    return head[:1] == b"{" and (len(head) < 2 or head[1:] in b'" \t\r\n}')


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
