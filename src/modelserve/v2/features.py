"""V2 input tensors → the (rows, features) float64 matrix a model takes.

Two layouts are accepted: one tensor named ``input`` of shape [rows, n_features], or, for a
model with feature names, one tensor per feature of shape [rows] or [rows, 1] (the "columnar"
style MLServer clients send). Any numeric datatype is accepted when every value converts to
float64 exactly; BYTES is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np

from modelserve.errors import InvalidTensorError, UnknownTensorError
from modelserve.inference.types import FloatArray
from modelserve.v2.datatypes import BYTES
from modelserve.v2.tensor import Tensor

MATRIX_INPUT: Final = "input"
"""The name of the single [rows, n_features] input tensor in model metadata."""

_WIDE_INTEGERS: Final = ("INT64", "UINT64")
"""Integer datatypes float64 cannot hold exactly beyond 2**53."""
_EXACT_INTEGER_LIMIT: Final = 2**53


def feature_matrix(
    inputs: Sequence[Tensor], n_features: int, feature_names: Sequence[str] | None
) -> FloatArray:
    """The rows to predict, or an InvalidInputError naming the input and what was expected."""
    if len(inputs) == 1 and inputs[0].name == MATRIX_INPUT:
        return _matrix(inputs[0], n_features)
    known = [MATRIX_INPUT, *(feature_names or ())]
    if not feature_names:
        unknown = next((t.name for t in inputs if t.name != MATRIX_INPUT), MATRIX_INPUT)
        if unknown == MATRIX_INPUT:
            raise InvalidTensorError(MATRIX_INPUT, "send it as the only input")
        raise UnknownTensorError("input", unknown, known)
    return _columns(inputs, feature_names, known)


def _matrix(tensor: Tensor, n_features: int) -> FloatArray:
    if len(tensor.shape) != 2 or tensor.shape[1] != n_features:
        raise InvalidTensorError(
            tensor.name,
            f"expected shape [-1, {n_features}] (rows, features), got {list(tensor.shape)}",
        )
    return _as_float64(tensor)


def _columns(inputs: Sequence[Tensor], names: Sequence[str], known: list[str]) -> FloatArray:
    by_name: dict[str, Tensor] = {}
    for tensor in inputs:
        if tensor.name not in names:
            raise UnknownTensorError("input", tensor.name, known)
        by_name[tensor.name] = tensor
    if missing := [name for name in names if name not in by_name]:
        raise InvalidTensorError(
            missing[0],
            f"missing: one input per feature is expected ({', '.join(names)}), "
            f"or a single {MATRIX_INPUT!r} tensor",
        )
    rows = by_name[names[0]].shape[0] if by_name[names[0]].shape else 0
    matrix = np.empty((rows, len(names)), dtype=np.float64)
    for column, name in enumerate(names):
        tensor = by_name[name]
        if tensor.shape not in ((rows,), (rows, 1)):
            raise InvalidTensorError(
                name,
                f"expected shape [{rows}] or [{rows}, 1] like the other features, "
                f"got {list(tensor.shape)}",
            )
        matrix[:, column] = _as_float64(tensor).reshape(rows)
    return matrix


def _as_float64(tensor: Tensor) -> FloatArray:
    if tensor.datatype == BYTES:
        raise InvalidTensorError(tensor.name, "the model takes numbers; BYTES is not accepted")
    data = tensor.data
    if tensor.datatype in _WIDE_INTEGERS and data.size:
        low, high = int(data.min()), int(data.max())
        if max(-low, high) > _EXACT_INTEGER_LIMIT:
            raise InvalidTensorError(
                tensor.name,
                f"{tensor.datatype} values beyond ±2**53 have no exact float64 form",
            )
    return data.astype(np.float64)
