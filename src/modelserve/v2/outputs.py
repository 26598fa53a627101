"""A model's answer → V2 output tensors, with ``outputs`` selection and the classification
extension.

Classifiers answer ``label`` (BYTES, [rows]: labels go out as strings whatever their type in
training) and, when the model gives them, ``probabilities`` (FP64, [rows, classes]);
regressors answer ``value`` (FP64, [rows] or [rows, targets]). Asking for ``probabilities`` with
the ``classification`` parameter set to k returns the top k classes of each row as BYTES
``"score:index:label"`` strings, shape [rows, k], best first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from modelserve.errors import InvalidTensorError, UnknownTensorError
from modelserve.inference.types import FloatArray, IntArray
from modelserve.v2.datatypes import BYTES
from modelserve.v2.messages import RequestedOutput
from modelserve.v2.tensor import Codes, Tensor

LABEL: Final = "label"
PROBABILITIES: Final = "probabilities"
VALUE: Final = "value"
CLASSIFICATION: Final = "classification"


@dataclass(frozen=True, slots=True)
class ModelAnswer:
    """What the inference core computed for the rows of one request."""

    labels: Sequence[str] | None = None
    """One label per row (classifiers)."""
    probabilities: FloatArray | None = None
    """(rows, classes), columns in ``class_labels`` order (classifiers that give them)."""
    class_labels: Sequence[str] = ()
    values: FloatArray | None = None
    """(rows,) or (rows, targets) (regressors)."""
    label_ids: IntArray | None = None
    """Optionally ``labels`` as indices into ``label_names`` (see ``Outputs.label_ids``)."""
    label_names: Sequence[str] = ()


def available_outputs(answer: ModelAnswer) -> list[str]:
    names = []
    if answer.labels is not None:
        names.append(LABEL)
    if answer.probabilities is not None:
        names.append(PROBABILITIES)
    if answer.values is not None:
        names.append(VALUE)
    return names


def output_tensors(
    answer: ModelAnswer, requested: Sequence[RequestedOutput] | None
) -> list[Tensor]:
    """The tensors the client asked for (every output when ``requested`` is None)."""
    available = available_outputs(answer)
    wanted = requested if requested is not None else [RequestedOutput(n) for n in available]
    tensors = []
    for output in wanted:
        if output.name not in available:
            raise UnknownTensorError("output", output.name, available)
        classes = output.parameters.get(CLASSIFICATION)
        if classes is not None:
            tensors.append(_classification(answer, output.name, classes))
        else:
            tensors.append(_tensor(answer, output.name))
    return tensors


def _tensor(answer: ModelAnswer, name: str) -> Tensor:
    if name == LABEL:
        assert answer.labels is not None  # noqa: S101 - listed only when present
        if answer.label_ids is not None:  # each label encoded once, taken by index
            codes = Codes(tuple(label.encode() for label in answer.label_names), answer.label_ids)
            labels = codes.array(codes.table)
            return Tensor(LABEL, BYTES, labels.shape, labels, codes=codes)
        # A batch holds few distinct labels: each is encoded once.
        encoded = {label: label.encode() for label in dict.fromkeys(answer.labels)}
        labels = np.empty(len(answer.labels), dtype=object)
        labels[:] = list(map(encoded.__getitem__, answer.labels))
        return Tensor(LABEL, BYTES, labels.shape, labels)
    array = answer.probabilities if name == PROBABILITIES else answer.values
    assert array is not None  # noqa: S101 - listed only when present
    return Tensor(name, "FP64", array.shape, array)


def _classification(answer: ModelAnswer, name: str, classes: object) -> Tensor:
    probabilities = answer.probabilities
    if name != PROBABILITIES or probabilities is None:
        raise InvalidTensorError(name, f"the {CLASSIFICATION} parameter applies to {PROBABILITIES}")
    width = probabilities.shape[1]
    if type(classes) is not int or not classes >= 1:
        raise InvalidTensorError(name, f"{CLASSIFICATION} must be a positive integer")
    k = min(classes, width)
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    labels = list(answer.class_labels) or [str(i) for i in range(width)]
    cells = np.empty((probabilities.shape[0], k), dtype=object)
    for row, columns in enumerate(order.tolist()):
        scores = probabilities[row]
        cells[row] = [f"{float(scores[c])!r}:{c}:{labels[c]}".encode() for c in columns]
    return Tensor(name, BYTES, cells.shape, cells)
