"""XGBoost ``Booster`` files (.json, .ubj) through xgboost (the ``modelserve[xgboost]`` extra).

Probabilities follow ``XGBClassifier.predict_proba``: ``binary:logistic`` gives two columns
``[1 - p, p]``, ``multi:softprob`` one column per class, ``multi:softmax`` the softmax of the
margins. Any other objective is a regressor (the prediction itself).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from modelserve.errors import ModelLoadError
from modelserve.inference.artifact import Artifact
from modelserve.inference.runtimes.extras import import_extra
from modelserve.inference.runtimes.scores import softmax
from modelserve.inference.runtimes.trees import binary_columns
from modelserve.inference.types import FloatArray, ModelMetadata, RawOutput

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
        )

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    def predict(self, batch: FloatArray) -> RawOutput:
        return predict_booster(self.booster, self.objective, batch)


def predict_booster(booster: Any, objective: str, batch: FloatArray) -> RawOutput:
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
