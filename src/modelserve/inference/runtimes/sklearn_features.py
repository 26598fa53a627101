"""The typed feature schema a fitted scikit-learn Pipeline or ColumnTransformer implies.

``feature_names_in_`` gives the columns; the fitted steps that see each column tell its type:
a ``OneHotEncoder``/``OrdinalEncoder`` makes it a ``category`` with the encoder's
``categories_`` (unknown values follow ``handle_unknown``), an imputer makes it nullable.
Other columns are floats. Steps are followed only while they keep columns one to one
(imputers, scalers), so an encoder after a PCA is never credited with the PCA's inputs. A
LightGBM or XGBoost scikit-learn wrapper fitted on pandas ``category`` columns gets the schema
its booster stores (see those runtimes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from modelserve.inference.types import Category, FeatureSpec

_IMPUTERS = frozenset({"SimpleImputer", "KNNImputer", "IterativeImputer"})
_ENCODERS = frozenset({"OneHotEncoder", "OrdinalEncoder"})
_ONE_TO_ONE = frozenset(
    {
        "StandardScaler",
        "MinMaxScaler",
        "MaxAbsScaler",
        "RobustScaler",
        "PowerTransformer",
        "QuantileTransformer",
        "FunctionTransformer",
    }
)
_ENCODER_ACCEPTS_UNKNOWN = frozenset({"ignore", "infrequent_if_exist", "use_encoded_value"})


@dataclass
class _Facts:
    nullable: bool = False
    categories: tuple[Category, ...] | None = None
    unknown: Literal["error", "ignore"] = "error"


def sklearn_features(estimator: Any) -> tuple[FeatureSpec, ...] | None:
    """The typed schema of ``estimator``, or ``None`` when it takes plain floats.

    ``None`` also when the estimator was not fitted on named columns (a numpy array).
    """
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        return None
    columns = [str(name) for name in names]
    boosted = _boosted_features(estimator, columns)
    if boosted is not None:
        return boosted
    facts = {name: _Facts() for name in columns}
    _visit(estimator, columns, facts)
    specs = tuple(_spec(name, facts[name]) for name in columns)
    if all(spec.type == "float" and not spec.nullable for spec in specs):
        return None
    return specs


def _boosted_features(estimator: Any, columns: list[str]) -> tuple[FeatureSpec, ...] | None:
    """An LGBM*/XGB* scikit-learn wrapper's native categorical features, read from its booster."""
    module = type(estimator).__module__
    if module.startswith("lightgbm.") and hasattr(estimator, "booster_"):
        from modelserve.inference.runtimes.lightgbm import lightgbm_features

        return lightgbm_features(estimator.booster_.model_to_string().encode(), columns)
    if module.startswith("xgboost.") and hasattr(estimator, "get_booster"):
        from modelserve.inference.runtimes.xgboost import xgboost_features

        return xgboost_features(estimator.get_booster())
    return None


def _visit(step: Any, columns: list[str], facts: dict[str, _Facts]) -> bool:
    """Record what ``step`` says about ``columns``; True when its output keeps them 1:1."""
    kind = type(step).__name__
    if kind == "Pipeline":
        for _, inner in step.steps:
            if inner in (None, "passthrough"):
                continue
            if not _visit(inner, columns, facts):
                return False
        return True
    if kind == "ColumnTransformer":
        for _, inner, selected in step.transformers_:
            if isinstance(inner, str):  # "drop" / "passthrough": floats as far as we know
                continue
            _visit(inner, _selected(step, selected, columns), facts)
        return False
    if kind in _IMPUTERS:
        for name in columns:
            facts[name].nullable = True
        return True
    if kind in _ENCODERS:
        accepts = str(getattr(step, "handle_unknown", "error")) in _ENCODER_ACCEPTS_UNKNOWN
        for name, values in zip(columns, step.categories_, strict=False):
            present = [_python(v) for v in values]
            facts[name].nullable |= any(_is_missing(v) for v in present)
            facts[name].categories = tuple(v for v in present if not _is_missing(v))
            facts[name].unknown = "ignore" if accepts else "error"
        return False
    return kind in _ONE_TO_ONE


def _selected(transformer: Any, selected: Any, columns: list[str]) -> list[str]:
    """The column names a ColumnTransformer entry selects (names, indices, masks, slices)."""
    names = [str(n) for n in getattr(transformer, "feature_names_in_", columns)]
    if isinstance(selected, str):
        return [selected]
    if isinstance(selected, slice):
        return names[selected]
    if callable(selected):
        return []  # a selector was resolved at fit time into _columns; nothing to credit
    picked: list[str] = []
    items = list(selected)
    if items and all(isinstance(item, bool) for item in items):
        return [name for name, keep in zip(names, items, strict=False) if keep]
    for item in items:
        picked.append(names[int(item)] if not isinstance(item, str) else item)
    return picked


def _python(value: Any) -> Any:
    """A numpy scalar as the Python value JSON clients send."""
    return value.item() if hasattr(value, "item") else value


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _spec(name: str, facts: _Facts) -> FeatureSpec:
    if facts.categories is None:
        return FeatureSpec(name, "float", nullable=facts.nullable)
    return FeatureSpec(
        name, "category", facts.categories, unknown=facts.unknown, nullable=facts.nullable
    )
