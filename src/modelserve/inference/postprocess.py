"""Raw model outputs → :class:`Outputs`: labels, finite probabilities, clipped/rounded values.

This is the postprocess stage every transport shares; turning :class:`Outputs` into a
particular answer shape (the /predict JSON, V2 tensors) is the adapters' formatting step
(:mod:`modelserve.inference.formatting` for /predict).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from modelserve.errors import NonFiniteOutputError
from modelserve.inference.types import Outputs, RawOutput

_NUMPY_CHECK_FROM_ROWS = 16
"""From this many rows the checks and the label lookup are numpy calls, not a loop per row."""
_DISTINCT_BY_EQUALITY = "iubUS"
"""Array kinds whose equal elements print the same: ints, bools, strings (not floats, where
0.0 == -0.0, nor objects, where 1 == True), so each distinct value is labelled once."""


class Postprocessor:
    """Turns one model version's raw outputs into :class:`Outputs`."""

    def __init__(
        self,
        *,
        is_classifier: bool,
        labels: list[str] | None,
        classes: list[str] | None = None,
        round_to: int | None = None,
        clip: tuple[float, float] | None = None,
    ) -> None:
        self.is_classifier = is_classifier
        self.labels = labels
        self.classes = classes
        # predict() returns class values; map them to configured label names by position.
        self._label_of_class = (
            dict(zip(classes, labels, strict=False)) if classes and labels else {}
        )
        self.round_to = round_to
        self.clip = clip

    def column_labels(self, n_classes: int) -> list[str]:
        """Names of the probability columns: the labels, else "0", "1", ..."""
        return self.labels or [str(i) for i in range(n_classes)]

    def answer_labels(self, n_classes: int | None) -> frozenset[str] | None:
        """Every label this version can answer with: the probability columns' names and the
        (renamed) model classes; ``None`` when neither is known (labels are then whatever
        ``predict()`` returns)."""
        names = set(self.column_labels(n_classes)) if n_classes is not None else set()
        names |= set(self._label_of_class.values()) or set(self.classes or ())
        return frozenset(names) if names else None

    def apply(self, raw: RawOutput) -> Outputs:
        """The outputs of every row of ``raw``; NonFiniteOutputError rather than a NaN answer."""
        if raw.probabilities is not None:
            return self._classify(raw.probabilities, raw.values)
        if raw.values is None:
            raise ValueError("runtime returned neither probabilities nor values")
        if self.is_classifier:
            return Outputs(labels=self._labels_of_values(raw.values))
        values = np.asarray(raw.values, dtype=np.float64)
        _require_finite(values)
        if self.clip is not None:
            values = np.clip(values, *self.clip)
        if self.round_to is not None:
            values = np.round(values, self.round_to)
        return Outputs(values=values)

    def _classify(
        self, probabilities: npt.NDArray[np.float64], values: npt.NDArray[np.generic] | None
    ) -> Outputs:
        # Single rows stay in plain Python, where each numpy call (argmax, fancy indexing,
        # isfinite) costs more than the row; larger batches go through numpy once, not per row.
        if len(probabilities) < _NUMPY_CHECK_FROM_ROWS:
            rows = probabilities.tolist()
            for i, row in enumerate(rows):
                if not all(map(math.isfinite, row)):
                    raise NonFiniteOutputError(i)
            if values is not None:
                return Outputs(labels=self._labels_of_values(values), probabilities=probabilities)
            names = self.column_labels(probabilities.shape[1])
            labels = [names[row.index(max(row))] for row in rows]
            return Outputs(labels=labels, probabilities=probabilities)
        _require_finite(probabilities)
        if values is not None:
            return Outputs(labels=self._labels_of_values(values), probabilities=probabilities)
        columns = tuple(self.column_labels(probabilities.shape[1]))
        # argmax picks the first of equal maxima, as row.index(max(row)) does.
        ids = np.argmax(probabilities, axis=1)
        best: list[str] = np.array(columns, dtype=object)[ids].tolist()
        top = probabilities[np.arange(len(ids)), ids]  # cheaper than max(axis=1) on few columns
        return Outputs(
            best, probabilities, label_ids=ids, label_names=columns, top_probabilities=top
        )

    def _labels_of_values(self, values: npt.NDArray[np.generic]) -> list[str]:
        """The label of each predicted class value, computed once per distinct value."""
        items = values.tolist()
        if values.dtype.kind not in _DISTINCT_BY_EQUALITY or len(items) < _NUMPY_CHECK_FROM_ROWS:
            return [self._label_of_value(item) for item in items]
        named = {item: self._label_of_value(item) for item in dict.fromkeys(items)}
        return list(map(named.__getitem__, items))

    def _label_of_value(self, value: object) -> str:
        text = str(value)
        return self._label_of_class.get(text, text)


def _require_finite(output: npt.NDArray[np.float64]) -> None:
    """JSON has no NaN: a non-finite output would reach clients as null or a made-up argmax."""
    finite = np.isfinite(output)
    if not finite.all():
        row = int(np.argwhere(~finite)[0][0])
        raise NonFiniteOutputError(row)
