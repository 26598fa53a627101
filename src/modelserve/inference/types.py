"""Plain data passed between inference stages: numpy in, numpy out, no web types."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


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


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """What a runtime knows about its model after loading."""

    n_features: int | None
    is_classifier: bool
    classes: list[str] | None = None
    feature_names: list[str] | None = None


@dataclass(frozen=True, slots=True)
class Prediction:
    """One row's post-processed answer."""

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
    load_ms: float | None = None
    warmup_ms: float | None = None
