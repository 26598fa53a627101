"""An MLflow model signature's inputs → the feature schema (names, types, column order).

Two input kinds are understood: column-based (``[{"name": "x", "type": "double"}, ...]``, one
column per feature, in order) and a single 2-D numeric tensor (``{"type": "tensor",
"tensor-spec": {"dtype": "float64", "shape": [-1, 4]}}``, unnamed). Columns of numbers that
are all required keep the float path. A signature with ``string`` or ``boolean`` columns, or
with optional columns (``"required": false``), gives typed features instead: ``double``/``float``
→ ``float``, ``long``/``integer`` → ``int``, ``boolean`` → ``bool``, ``string`` → ``string``, an
optional column nullable. Other column types (``binary``, ``datetime``, arrays, objects) are
refused at load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from modelserve.errors import ModelLoadError
from modelserve.inference.types import FeatureSpec, FeatureType

NUMERIC_COLUMN_TYPES = {
    "double": "float64",
    "float": "float32",
    "long": "int64",
    "integer": "int32",
}
"""MLflow column types served, and the numpy dtype each becomes for a pyfunc model."""
TYPED_COLUMN_TYPES: dict[str, FeatureType] = {
    "double": "float",
    "float": "float",
    "long": "int",
    "integer": "int",
    "boolean": "bool",
    "string": "string",
}
"""Every MLflow column type served, and the typed feature each becomes."""
_NUMERIC_TENSOR_DTYPES = {"float64", "float32", "int64", "int32", "float16", "int16", "int8"}


@dataclass(frozen=True, slots=True)
class InputSchema:
    """What a signature says about the model's input."""

    n_features: int | None
    feature_names: list[str] | None
    feature_types: list[str] | None
    features: tuple[FeatureSpec, ...] | None = None
    """Typed features, when a column is a string, a boolean or optional."""


NO_SIGNATURE = InputSchema(None, None, None)


def read_input_schema(mlmodel: dict[str, Any]) -> InputSchema:
    """The input schema of an ``MLmodel`` mapping (``NO_SIGNATURE`` when it declares none)."""
    signature = mlmodel.get("signature")
    if not isinstance(signature, dict) or not signature.get("inputs"):
        return NO_SIGNATURE
    try:
        specs = json.loads(signature["inputs"])
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"the MLmodel signature inputs are not JSON: {exc}") from exc
    if not isinstance(specs, list) or not specs or not all(isinstance(s, dict) for s in specs):
        raise ModelLoadError("the MLmodel signature inputs are not a list of column specs")
    if specs[0].get("type") == "tensor":
        return _tensor_schema(specs)
    return _column_schema(specs)


def _column_schema(specs: list[dict[str, Any]]) -> InputSchema:
    names: list[str] = []
    types: list[str] = []
    features: list[FeatureSpec] = []
    for position, spec in enumerate(specs):
        name, kind = spec.get("name"), spec.get("type")
        if not isinstance(name, str) or not name:
            raise ModelLoadError(f"signature input {position} has no name")
        if not isinstance(kind, str) or kind not in TYPED_COLUMN_TYPES:
            raise ModelLoadError(
                f"signature input {name!r} is of type {kind!r}; served column types are"
                f" {', '.join(sorted(TYPED_COLUMN_TYPES))}"
            )
        names.append(name)
        types.append(kind)
        nullable = spec.get("required", True) is False
        features.append(FeatureSpec(name, TYPED_COLUMN_TYPES[kind], nullable=nullable))
    if len(set(names)) != len(names):
        raise ModelLoadError("the signature names one input twice")
    numeric = all(kind in NUMERIC_COLUMN_TYPES for kind in types)
    typed = None if numeric and not any(f.nullable for f in features) else tuple(features)
    return InputSchema(len(names), names, types, typed)


def _tensor_schema(specs: list[dict[str, Any]]) -> InputSchema:
    if len(specs) != 1:
        raise ModelLoadError(f"the signature has {len(specs)} input tensors; one is served")
    tensor = specs[0].get("tensor-spec") or {}
    dtype, shape = tensor.get("dtype"), tensor.get("shape")
    if dtype not in _NUMERIC_TENSOR_DTYPES:
        raise ModelLoadError(f"the signature's input tensor is {dtype!r}; only numeric is served")
    if not isinstance(shape, list) or len(shape) != 2:
        raise ModelLoadError(f"the signature's input tensor has shape {shape}; [-1, k] is served")
    width = shape[1]
    n_features = width if isinstance(width, int) and width > 0 else None
    return InputSchema(n_features, None, [dtype] * n_features if n_features else None)
