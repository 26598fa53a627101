"""Raw model outputs → per-row predictions: labels, confidence, probabilities, rounding."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from modelserve.errors import NonFiniteOutputError
from modelserve.inference.types import Prediction, RawOutput

_NUMPY_CHECK_FROM_ROWS = 16
"""From this many rows the finiteness check is one numpy call rather than a Python loop."""


class OutputFormatter:
    """Formats one model version's raw outputs for clients."""

    def __init__(
        self,
        *,
        is_classifier: bool,
        labels: list[str] | None,
        classes: list[str] | None = None,
        top_k: int | None = None,
        round_to: int | None = None,
        clip: tuple[float, float] | None = None,
    ) -> None:
        self.is_classifier = is_classifier
        self.labels = labels
        # predict() returns class values; map them to configured label names by position.
        self._label_of_class = (
            dict(zip(classes, labels, strict=False)) if classes and labels else {}
        )
        self.top_k = top_k
        self.round_to = round_to
        self.clip = clip

    def format(self, raw: RawOutput, top_k: int | None = None) -> list[Prediction]:
        """One Prediction per row of ``raw``; NonFiniteOutputError rather than a NaN answer."""
        if raw.probabilities is not None:
            return self._classify(raw, top_k if top_k is not None else self.top_k)
        if raw.values is None:
            raise ValueError("runtime returned neither probabilities nor values")
        if self.is_classifier:
            return [Prediction(prediction=self._label_of_value(v)) for v in raw.values.tolist()]
        values = np.asarray(raw.values, dtype=np.float64)
        _require_finite(values)
        return self._regress(values)

    def _classify(self, raw: RawOutput, top_k: int | None) -> list[Prediction]:
        probabilities = raw.probabilities
        assert probabilities is not None  # noqa: S101 - narrowed by the caller
        # One conversion to Python floats, then plain Python: most calls format a single row,
        # where each numpy call (argmax, fancy indexing, isfinite) costs more than the row.
        rows = probabilities.tolist()
        small = len(rows) < _NUMPY_CHECK_FROM_ROWS
        if not small:
            _require_finite(probabilities)
        labels = self.labels or [str(i) for i in range(probabilities.shape[1])]
        values = raw.values.tolist() if raw.values is not None else None
        out = []
        for i, row in enumerate(rows):
            if small and not all(map(math.isfinite, row)):
                raise NonFiniteOutputError(i)
            confidence = max(row)
            if values is None:
                label = labels[row.index(confidence)]
            else:
                label = self._label_of_value(values[i])
            if top_k is not None and top_k < len(row):
                order = sorted(range(len(row)), key=row.__getitem__, reverse=True)[:top_k]
                probs = {labels[j]: row[j] for j in order}
            else:
                probs = dict(zip(labels, row, strict=False))
            out.append(Prediction(label, confidence, probs))
        return out

    def _label_of_value(self, value: object) -> str:
        text = str(value)
        return self._label_of_class.get(text, text)

    def _regress(self, values: npt.NDArray[np.float64]) -> list[Prediction]:
        if self.clip is not None:
            values = np.clip(values, *self.clip)
        if self.round_to is not None:
            values = np.round(values, self.round_to)
        return [Prediction(prediction=v) for v in values.tolist()]


def _require_finite(output: npt.NDArray[np.float64]) -> None:
    """JSON has no NaN: a non-finite output would reach clients as null or a made-up argmax."""
    finite = np.isfinite(output)
    if not finite.all():
        row = int(np.argwhere(~finite)[0][0])
        raise NonFiniteOutputError(row)
