"""The /predict answer shape: :class:`Outputs` → one :class:`Prediction` per row.

The last stage of the /predict pipeline and nothing else's: the V2 adapters encode the same
:class:`Outputs` as tensors instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelserve.errors import InvalidInputError
from modelserve.inference.types import FloatArray, Outputs, OutputSpec, Prediction


def check_top_k(spec: OutputSpec, top_k: int | None) -> None:
    """Refuse a ``top_k`` that cannot apply: on a regressor, or above the class count."""
    if top_k is None:
        return
    if not spec.is_classifier:
        raise InvalidInputError("top_k applies to classifiers only; this model is a regressor")
    classes = len(spec.class_labels) if spec.class_labels is not None else None
    if classes is not None and top_k > classes:
        raise InvalidInputError(
            f"top_k must be at most {classes} (this model has {classes} classes), got {top_k}"
        )


def format_predictions(
    outputs: Outputs, spec: OutputSpec, top_k: int | None = None
) -> list[Prediction]:
    """Label, confidence and probabilities per row.

    Probabilities are listed most probable first (ties in the model's class order), with or
    without ``top_k``, which keeps the first k (the request's, else the configured default).
    """
    if outputs.labels is None:
        values = [] if outputs.values is None else outputs.values.tolist()
        return [Prediction(prediction=value) for value in values]
    if outputs.probabilities is None or spec.class_labels is None:
        return [Prediction(prediction=label) for label in outputs.labels]
    names = spec.class_labels
    k = top_k if top_k is not None else spec.default_top_k
    answers = []
    for label, row in zip(outputs.labels, outputs.probabilities.tolist(), strict=True):
        order = sorted(range(len(row)), key=row.__getitem__, reverse=True)
        probabilities = {names[j]: row[j] for j in order[:k]}
        answers.append(Prediction(label, max(row), probabilities))
    return answers


@dataclass(frozen=True, slots=True)
class BatchAnswer:
    """Every row's answer, column by column (the /predict-batch shape), as arrays where the
    values are numbers: serialised once, with no object per row."""

    predictions: list[str] | FloatArray
    confidences: FloatArray | None
    probabilities: list[dict[str, float] | None] | None
    """Only when asked for: as :func:`format_predictions` gives them, row by row."""


def format_batch(
    outputs: Outputs, spec: OutputSpec, top_k: int | None = None, *, probabilities: bool = False
) -> BatchAnswer:
    """:func:`format_predictions` for many rows, computed per column with numpy."""
    n = len(outputs)
    if outputs.labels is None:
        values = outputs.values if outputs.values is not None else np.empty(0)
        return BatchAnswer(values, None, [None] * n if probabilities else None)
    matrix = outputs.probabilities
    if matrix is None or spec.class_labels is None:
        return BatchAnswer(outputs.labels, None, [None] * n if probabilities else None)
    confidences = outputs.confidence_array()
    if not probabilities:
        return BatchAnswer(outputs.labels, confidences, None)
    k = top_k if top_k is not None else spec.default_top_k
    # A stable sort of the negated row: most probable first, ties in the model's class order.
    order = np.argsort(-matrix, axis=1, kind="stable")[:, :k]
    names = np.asarray(spec.class_labels, dtype=object)[order].tolist()
    values = np.take_along_axis(matrix, order, axis=1).tolist()
    rows: list[dict[str, float] | None] = [
        dict(zip(row_names, row_values, strict=True))
        for row_names, row_values in zip(names, values, strict=True)
    ]
    return BatchAnswer(outputs.labels, confidences, rows)
