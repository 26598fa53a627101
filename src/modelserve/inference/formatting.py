"""The /predict answer shape: :class:`Outputs` → one :class:`Prediction` per row.

The last stage of the /predict pipeline and nothing else's: the V2 adapters encode the same
:class:`Outputs` as tensors instead.
"""

from __future__ import annotations

from modelserve.inference.types import Outputs, OutputSpec, Prediction


def format_predictions(
    outputs: Outputs, spec: OutputSpec, top_k: int | None = None
) -> list[Prediction]:
    """Label, confidence and probabilities per row (the ``top_k`` most probable, if given)."""
    if outputs.labels is None:
        values = [] if outputs.values is None else outputs.values.tolist()
        return [Prediction(prediction=value) for value in values]
    if outputs.probabilities is None or spec.class_labels is None:
        return [Prediction(prediction=label) for label in outputs.labels]
    names = spec.class_labels
    k = top_k if top_k is not None else spec.default_top_k
    answers = []
    for label, row in zip(outputs.labels, outputs.probabilities.tolist(), strict=True):
        if k is not None and k < len(row):
            order = sorted(range(len(row)), key=row.__getitem__, reverse=True)[:k]
            probabilities = {names[j]: row[j] for j in order}
        else:
            probabilities = dict(zip(names, row, strict=False))
        answers.append(Prediction(label, max(row), probabilities))
    return answers
