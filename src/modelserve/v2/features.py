"""V2 input tensors → the (rows, features) float64 matrix a model takes.

Two layouts are accepted: one tensor named ``input`` of shape [rows, n_features], or, for a
model with feature names, one tensor per feature of shape [rows] or [rows, 1] (the "columnar"
style MLServer clients send). Any numeric datatype is accepted when every value converts to
float64 exactly; BYTES is refused.

A version with typed features takes the columnar layout with each tensor's own datatype
(:func:`typed_rows`): BYTES as UTF-8 strings, BOOL, integers and floats as sent (NaN counts as
null); the version's schema then checks every value as it checks JSON rows.
"""

from __future__ import annotations

import math
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


def is_matrix(inputs: Sequence[Tensor]) -> bool:
    """Whether the request sends the single ``[rows, n_features]`` tensor."""
    return len(inputs) == 1 and inputs[0].name == MATRIX_INPUT


def typed_rows(inputs: Sequence[Tensor], names: Sequence[str]) -> list[list[object]]:
    """The rows of one tensor per feature, as plain Python values, for a typed schema."""
    known = [MATRIX_INPUT, *names]
    by_name = _by_name(inputs, names, known)
    rows = by_name[names[0]].shape[0] if by_name[names[0]].shape else 0
    columns = [_values(by_name[name], rows) for name in names]
    return [list(row) for row in zip(*columns, strict=True)]


def _values(tensor: Tensor, rows: int) -> list[object]:
    if tensor.shape not in ((rows,), (rows, 1)):
        raise InvalidTensorError(
            tensor.name,
            f"expected shape [{rows}] or [{rows}, 1] like the other features, "
            f"got {list(tensor.shape)}",
        )
    flat = tensor.data.reshape(rows)
    if tensor.datatype == BYTES:
        try:
            return [item.decode() for item in flat]
        except UnicodeDecodeError:
            raise InvalidTensorError(tensor.name, "BYTES values must be UTF-8 text") from None
    values: list[object] = flat.tolist()
    if flat.dtype.kind == "f":
        return [None if math.isnan(v) else v for v in values]  # type: ignore[arg-type]  # floats
    return values


def _by_name(inputs: Sequence[Tensor], names: Sequence[str], known: list[str]) -> dict[str, Tensor]:
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
    return by_name


def _matrix(tensor: Tensor, n_features: int) -> FloatArray:
    if len(tensor.shape) != 2 or tensor.shape[1] != n_features:
        raise InvalidTensorError(
            tensor.name,
            f"expected shape [-1, {n_features}] (rows, features), got {list(tensor.shape)}",
        )
    return _as_float64(tensor)


def _columns(inputs: Sequence[Tensor], names: Sequence[str], known: list[str]) -> FloatArray:
    by_name = _by_name(inputs, names, known)
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
