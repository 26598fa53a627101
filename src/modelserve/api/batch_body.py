"""A /predict-batch body read straight into a float64 array when it is plain numbers.

Validating ``list[list[float]]`` with Pydantic builds a Python float per value, and the rows
are then copied into an array: most of the request's parsing time at 1000 rows. A body of
positional rows of numbers is parsed by orjson and becomes one array in one numpy call; named
rows of numbers skip Pydantic too. Anything else (not JSON, another shape, a string, ``true``,
``null``, ``NaN``, ragged rows) is validated by :class:`BatchPredictRequest` exactly as
before, so every error keeps its status, message and position: the fast path only accepts
bodies Pydantic would accept as numbers, and reads them into the same values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import orjson

from modelserve.api.schemas import BatchPredictRequest
from modelserve.errors import FeatureCountError
from modelserve.inference.preprocess import FeatureSchema, Row
from modelserve.inference.typed import TypedFeatureSchema
from modelserve.inference.types import Batch, FloatArray

_NUMBER_KINDS = "if"
"""numpy kinds of an array built from JSON numbers only (int64, float64)."""
_BOOLEANS = (b"true", b"false")
"""numpy reads true as 1.0 beside floats; Pydantic refuses a boolean where a number goes."""


@dataclass(frozen=True, slots=True)
class BatchRows:
    """The rows of one /predict-batch body, as parsed; :meth:`to_array` builds the batch."""

    body: bytes
    rows: Sequence[Row]
    matrix: FloatArray | None = None
    """Positional rows of numbers of one width, already as an array."""
    validated: bool = True
    """``rows`` came from :class:`BatchPredictRequest` (else from orjson, numbers only)."""

    def __len__(self) -> int:
        return len(self.rows)

    def converts(self, schema: FeatureSchema) -> bool:
        """Whether :meth:`to_array` builds the batch row by row (else it is ready)."""
        return self.matrix is None or isinstance(schema, TypedFeatureSchema)

    def to_array(self, schema: FeatureSchema) -> Batch:
        """The (n, n_features) batch for ``schema`` (errors as ``schema.rows_to_array``)."""
        if isinstance(schema, TypedFeatureSchema):
            # Typed values see the rows exactly as Pydantic gives them (41 as 41.0).
            rows = self.rows if self.validated else parse_validated(self.body).rows
            return schema.rows_to_array(rows)
        if self.matrix is None:
            return schema.rows_to_array(self.rows)
        if self.matrix.shape[1] != schema.n_features:
            # Every row has this width: the first one is the one rows_to_array names.
            row = 0 if len(self.matrix) > 1 else None
            raise FeatureCountError(schema.n_features, self.matrix.shape[1], row)
        return self.matrix


def parse_validated(body: bytes) -> BatchRows:
    """The body through :class:`BatchPredictRequest` (raises its ``ValidationError``)."""
    return BatchRows(body, BatchPredictRequest.model_validate_json(body).batch)


def parse_batch(body: bytes) -> BatchRows:
    """The rows of ``body``: straight into an array when they are numbers (see the module
    docstring), else validated by :class:`BatchPredictRequest` (raises its ValidationError)."""
    fast = _numbers(body)
    return fast if fast is not None else parse_validated(body)


def _numbers(body: bytes) -> BatchRows | None:
    """``body`` as rows of numbers, or ``None`` when Pydantic must decide."""
    if any(word in body for word in _BOOLEANS):
        return None
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(document) is not dict or len(document) != 1:
        return None
    rows = document.get("batch")
    if type(rows) is not list or not rows:
        return None
    if all(type(row) is list for row in rows):
        matrix = _number_array(rows, ndim=2)
        return None if matrix is None else BatchRows(body, rows, matrix, validated=False)
    if all(type(row) is dict for row in rows):
        values = [value for row in rows for value in row.values()]
        if _number_array(values, ndim=1) is None:
            return None
        return BatchRows(body, rows, validated=False)
    return None


def _number_array(values: list[object], *, ndim: int) -> FloatArray | None:
    """``values`` as a float64 array of ``ndim`` dimensions when every innermost element is
    a JSON number, else ``None``."""
    try:
        array = np.array(values)
    except (ValueError, OverflowError):  # ragged rows, or an integer beyond int64
        return None
    if array.ndim != ndim or array.dtype.kind not in _NUMBER_KINDS:
        return None
    return array.astype(np.float64, copy=False)
