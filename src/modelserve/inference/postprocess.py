"""Raw model outputs → per-row predictions: labels, confidence, probabilities, rounding."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from modelserve.errors import NonFiniteOutputError
from modelserve.inference.types import Prediction, RawOutput


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
            _require_finite(raw.probabilities)
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
        labels = self.labels or [str(i) for i in range(probabilities.shape[1])]
        best = probabilities.argmax(axis=1)
        confidences = probabilities[np.arange(len(best)), best]
        values = raw.values.tolist() if raw.values is not None else None
        out = []
        for i, row in enumerate(probabilities.tolist()):
            label = labels[best[i]] if values is None else self._label_of_value(values[i])
            if top_k is not None and top_k < len(row):
                order = sorted(range(len(row)), key=row.__getitem__, reverse=True)[:top_k]
                probs = {labels[j]: row[j] for j in order}
            else:
                probs = dict(zip(labels, row, strict=False))
            out.append(Prediction(label, float(confidences[i]), probs))
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
