"""The /predict answer shape: :class:`Outputs` → one :class:`Prediction` per row.

The last stage of the /predict pipeline and nothing else's: the V2 adapters encode the same
:class:`Outputs` as tensors instead.
"""

from __future__ import annotations

from modelserve.errors import InvalidInputError
from modelserve.inference.types import Outputs, OutputSpec, Prediction


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
