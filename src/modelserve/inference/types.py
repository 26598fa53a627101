"""Plain data passed between inference stages: numpy in, numpy out, no web types."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeGuard

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
TypedBatch = npt.NDArray[np.object_]
"""A checked batch of typed rows: a 2-D object array of canonical Python values (strings,
numbers, booleans, ``None``), one column per typed feature (see :mod:`.typed`)."""
Batch = FloatArray | TypedBatch
"""What flows from preprocess through cache, batch and shadow to the model call: a float
version's float64 matrix, or a typed version's :data:`TypedBatch`."""
FeatureType = Literal["float", "int", "bool", "string", "category"]
Category = str | int | float | bool

_NUMPY_FROM_ROWS = 16
"""From this many rows one numpy call beats a Python loop over the rows."""


def is_typed(batch: Batch) -> TypeGuard[TypedBatch]:
    """Whether ``batch`` holds typed rows (an object array)."""
    return batch.dtype.char == "O"


def is_float(batch: Batch) -> TypeGuard[FloatArray]:
    """Whether ``batch`` is a float64 matrix (what every float runtime takes)."""
    return batch.dtype.char == "d"


class ModelStatus(enum.StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    UNLOADED = "unloaded"


@dataclass(frozen=True, slots=True)
class RawOutput:
    """What a runtime returns for a batch of n rows.

    ``probabilities`` is (n, n_classes) for classifiers; ``values`` is (n,) class indices or
    labels from predict() for classifiers, or (n,) / (n, k) numbers for regressors.
    """

    probabilities: FloatArray | None = None
    values: npt.NDArray[np.generic] | None = None

    def rows(self, start: int, stop: int) -> RawOutput:
        """The slice of this output that belongs to rows [start, stop)."""
        return RawOutput(
            probabilities=None if self.probabilities is None else self.probabilities[start:stop],
            values=None if self.values is None else self.values[start:stop],
        )


PredictFn = Callable[[Batch], RawOutput]
"""A model call: a batch's rows in, their raw outputs out (run in an inference thread)."""


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One typed input column: its name, type, allowed categories, nullability and range."""

    name: str
    type: FeatureType = "float"
    categories: tuple[Category, ...] | None = None
    """The allowed values of a ``category`` feature, in training order."""
    unknown: Literal["error", "ignore"] = "error"
    """What a category outside ``categories`` gets: a 400, or passed on as missing."""
    nullable: bool = False
    range: tuple[float, float] | None = None

    def describe(self) -> str:
        """``city: category (Bergen, Oslo; unknown ignored), nullable`` and the like."""
        text = f"{self.name}: {self.type}"
        if self.categories is not None:
            shown = ", ".join(str(c) for c in self.categories[:_SHOWN_CATEGORIES])
            more = len(self.categories) - _SHOWN_CATEGORIES
            shown += f", ... {more} more" if more > 0 else ""
            text += f" ({shown}; unknown {'refused' if self.unknown == 'error' else 'ignored'})"
        if self.range is not None:
            text += f" in [{self.range[0]:g}, {self.range[1]:g}]"
        return text + (", nullable" if self.nullable else "")


_SHOWN_CATEGORIES = 10


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """What a runtime knows about its model after loading."""

    n_features: int | None
    is_classifier: bool
    classes: list[str] | None = None
    feature_names: list[str] | None = None
    platform: str | None = None
    """Artifact kind in ``<library>_<format>`` form (``xgboost_json``, ``mlflow_sklearn``)."""
    feature_types: list[str] | None = None
    """Declared type of each input column (an MLflow signature's ``double``, ``long``, ...)."""
    features: tuple[FeatureSpec, ...] | None = None
    """Typed input columns, when the model takes a DataFrame with non-float or nullable ones."""


@dataclass(frozen=True, slots=True)
class Outputs:
    """Post-processed outputs of n rows, as arrays: what every transport encodes its answer from.

    Classifiers have ``labels`` (the predicted label of each row) and, when the model gives
    them, ``probabilities`` (n, n_classes) with columns in :attr:`OutputSpec.class_labels`
    order. Regressors have ``values``: (n,) for one output, (n, k) for several, already
    clipped and rounded as configured. Every number is finite.
    """

    labels: list[str] | None = None
    probabilities: FloatArray | None = None
    values: FloatArray | None = None
    label_ids: IntArray | None = None
    """Optionally the labels as indices into ``label_names`` (``labels[i] ==
    label_names[label_ids[i]]``), so a large answer is counted, remembered and encoded per
    distinct label with array operations instead of per row."""
    label_names: tuple[str, ...] = ()
    top_probabilities: FloatArray | None = None
    """Optionally the top-1 probability of each row, when postprocess computed it already."""

    def __len__(self) -> int:
        if self.labels is not None:
            return len(self.labels)
        return 0 if self.values is None else len(self.values)

    def confidences(self) -> list[float] | None:
        """Top-1 probability per row (classifiers with probabilities), else ``None``."""
        if self.probabilities is None:
            return None
        if len(self.probabilities) < _NUMPY_FROM_ROWS:
            return [max(row) for row in self.probabilities.tolist()]
        confidences: list[float] = self.confidence_array().tolist()
        return confidences

    def confidence_values(self) -> list[float] | FloatArray | None:
        """:meth:`confidences`, as an array from a few rows on (what the metrics and the
        drift window take without a per-row conversion)."""
        if self.probabilities is None or len(self.probabilities) < _NUMPY_FROM_ROWS:
            return self.confidences()
        return self.confidence_array()

    def confidence_array(self) -> FloatArray:
        """Top-1 probability per row as an array (empty without probabilities)."""
        if self.top_probabilities is not None:
            return self.top_probabilities
        if self.probabilities is None:
            return np.empty(0)
        top: FloatArray = self.probabilities.max(axis=1)
        return top


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """What a loaded version answers, learnt from its warm-up: kinds and shapes of outputs."""

    is_classifier: bool
    class_labels: list[str] | None
    """Names of the probability columns (configured labels, model classes, or "0", "1", ...);
    ``None`` when the model gives no probabilities."""
    value_width: int | None = None
    """Regressors: k for (n, k) outputs, ``None`` for one value per row."""
    default_top_k: int | None = None
    """``top_k`` from the configuration, used when a request names none."""
    answer_labels: frozenset[str] | None = None
    """Classifiers: every label an answer can carry; ``None`` when that cannot be known."""

    @property
    def has_probabilities(self) -> bool:
        return self.class_labels is not None


@dataclass(frozen=True, slots=True)
class Prediction:
    """One row's formatted answer (the /predict JSON shape)."""

    prediction: str | float | list[float]
    confidence: float | None = None
    probabilities: dict[str, float] | None = None


@dataclass(slots=True)
class ModelInfo:
    """Public description of one model version (what GET /models shows)."""

    name: str
    version: str
    format: str
    status: ModelStatus
    reason: str | None = None
    is_default: bool = False
    task: str | None = None
    n_features: int | None = None
    feature_names: list[str] | None = None
    labels: list[str] | None = None
    platform: str | None = None
    feature_types: list[str] | None = None
    features: tuple[FeatureSpec, ...] | None = None
    """Typed features, when the version takes them (else floats in ``feature_names`` order)."""
    load_ms: float | None = None
    warmup_ms: float | None = None
