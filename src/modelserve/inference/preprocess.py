"""Client features → a checked 2-D float64 array (width, finiteness, names, ranges)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np

from modelserve.errors import (
    FeatureCountError,
    InvalidFeatureValueError,
    InvalidInputError,
    MissingFeatureError,
    NonFiniteFeatureError,
    UnknownFeatureError,
)
from modelserve.inference.types import Batch, FloatArray, is_float

Row = Sequence[object] | Mapping[str, object]
"""A JSON row: numbers for float models, typed values (see :mod:`.typed`) for the others."""
_PYTHON_CHECK_MAX_VALUES = 64
_NUMBER_TYPES = (float, int)
_SHOWN_CHARS = 64
INTEGER_TYPES = frozenset({"long", "integer", "int64", "int32", "int16", "int8"})
"""Declared input types (MLflow column types and tensor dtypes) that take whole numbers only."""


def integer_columns(feature_types: Sequence[str] | None) -> list[int]:
    """Indexes of the columns whose declared type is an integer type."""
    return [i for i, kind in enumerate(feature_types or ()) if kind in INTEGER_TYPES]


def shown_value(value: object) -> str:
    """A value as an error message shows it: JSON spelling, bounded length."""
    text = "null" if value is None else str(value).lower() if type(value) is bool else repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."


def _is_named(row: Row) -> bool:
    """Whether a row maps names to values; plain lists skip the slow ABC isinstance check."""
    return type(row) is not list and isinstance(row, Mapping)


@dataclass(frozen=True, slots=True)
class OutOfRange:
    """A value outside the declared range: served, but reported."""

    row: int
    feature: str
    value: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class RangeReport:
    """The values of one request outside their declared ranges: a count per feature, and the
    first of them as an example (one summary per request, never one entry per value)."""

    counts: dict[str, int]
    rows: int
    """Rows with at least one value out of range."""
    example: OutOfRange


class FeatureSchema:
    """What a model version accepts: its width, optional names and optional ranges."""

    def __init__(
        self,
        n_features: int,
        feature_names: list[str] | None = None,
        ranges: Mapping[str, tuple[float, float]] | None = None,
        *,
        integer_columns: Sequence[int] = (),
    ) -> None:
        if feature_names is not None and len(feature_names) != n_features:
            raise ValueError(
                f"{len(feature_names)} feature names given for a model of {n_features} features"
            )
        self.n_features = n_features
        self.feature_names = feature_names
        self._index = {name: i for i, name in enumerate(feature_names or [])}
        self._integers = list(integer_columns)
        self._ranges: tuple[FloatArray, FloatArray] | None = None
        if ranges:
            names = feature_names or [str(i) for i in range(n_features)]
            low = np.full(n_features, -np.inf)
            high = np.full(n_features, np.inf)
            for name, (lo, hi) in ranges.items():
                if name not in names:
                    raise ValueError(f"feature_ranges names unknown feature {name!r}")
                low[names.index(name)], high[names.index(name)] = lo, hi
            self._ranges = (low, high)

    def rows_to_array(self, rows: Sequence[Row]) -> Batch:
        """The (n, n_features) array of JSON-style rows (lists of numbers, or name → number).

        Raises an InvalidInputError naming the problem; finiteness is :meth:`check`'s job.
        """
        try:
            if rows and _is_named(rows[0]):
                return np.array([self._ordered(row, i) for i, row in enumerate(rows)], np.float64)
            for i, row in enumerate(rows):
                if _is_named(row):
                    raise InvalidInputError(f"row {i} mixes named and positional features")
                if len(row) != self.n_features:
                    raise FeatureCountError(self.n_features, len(row), i if len(rows) > 1 else None)
            return np.array(rows, dtype=np.float64)
        except OverflowError:  # a JSON integer beyond float64 (typed values keep integers)
            raise InvalidInputError("feature values must be finite numbers") from None

    def to_array(self, rows: Sequence[Row]) -> Batch:
        """:meth:`rows_to_array`, then :meth:`check`."""
        return self.check(self.rows_to_array(rows))

    def check(self, batch: Batch) -> Batch:
        """``batch`` itself once it is a 2-D float64 array of this width with finite values.

        Every batch goes through here before the model sees it, whichever transport built it.
        """
        if not is_float(batch) or batch.ndim != 2:
            raise InvalidInputError(
                f"expected a 2-D float64 batch, got {batch.ndim}-D {batch.dtype}"
            )
        if batch.shape[1] != self.n_features:
            raise FeatureCountError(self.n_features, batch.shape[1])
        self._check_finite(batch)
        if self._integers:
            self._check_integers(batch)
        return batch

    def numeric(self, batch: Batch) -> FloatArray:
        """The batch as numbers for drift statistics: a float batch is that already."""
        if not is_float(batch):
            raise InvalidInputError(f"expected a float64 batch, got {batch.dtype}")
        return batch

    def out_of_range(self, matrix: Batch) -> RangeReport | None:
        """The values outside their declared ranges, summarised; ``None`` when all are inside."""
        if self._ranges is None:
            return None
        return self._outside(self.numeric(matrix), *self._ranges)

    def _outside(self, matrix: FloatArray, low: FloatArray, high: FloatArray) -> RangeReport | None:
        outside = (matrix < low) | (matrix > high)
        if not outside.any():
            return None
        per_feature = outside.sum(axis=0)
        row, col = (int(v) for v in np.argwhere(outside)[0])
        example = OutOfRange(
            row, self._name(col), float(matrix[row, col]), float(low[col]), float(high[col])
        )
        counts = {self._name(int(c)): int(per_feature[c]) for c in np.flatnonzero(per_feature)}
        return RangeReport(counts, int(outside.any(axis=1).sum()), example)

    def _ordered(self, row: Row, index: int) -> list[float]:
        if not isinstance(row, Mapping):
            raise InvalidInputError(f"row {index} mixes named and positional features")
        if self.feature_names is None:
            raise InvalidInputError(
                "this model declares no feature names; send features as a list of numbers"
            )
        if unknown := [name for name in row if name not in self._index]:
            raise UnknownFeatureError(unknown, self.feature_names)
        if missing := [name for name in self.feature_names if name not in row]:
            raise MissingFeatureError(missing)
        values = [row[name] for name in self.feature_names]
        if not all(type(value) in _NUMBER_TYPES for value in values):
            names = self.feature_names
            name, value = next(
                (n, v) for n, v in zip(names, values, strict=True) if type(v) not in _NUMBER_TYPES
            )
            raise InvalidFeatureValueError(index, name, "a number", shown_value(value))
        return cast(list[float], values)

    def _check_finite(self, matrix: FloatArray) -> None:
        # A numpy check costs a few microseconds whatever the size; a single row is cheaper to
        # check as Python floats, and this runs on every request.
        if matrix.size <= _PYTHON_CHECK_MAX_VALUES:
            if all(map(math.isfinite, matrix.ravel().tolist())):
                return
        elif np.isfinite(matrix).all():
            return
        finite = np.isfinite(matrix)
        row, col = (int(v) for v in np.argwhere(~finite)[0])
        raise NonFiniteFeatureError(row, col, self._name(col), float(matrix[row, col]))

    def _check_integers(self, matrix: FloatArray) -> None:
        """A column declared as an integer refuses 1.5 rather than let the model truncate it."""
        block = matrix[:, self._integers]
        fractional = np.argwhere(block != np.floor(block))
        if fractional.size:
            row, position = (int(v) for v in fractional[0])
            column = self._integers[position]
            raise InvalidInputError(
                f"feature {self._name(column)} of row {row} must be a whole number,"
                f" got {matrix[row, column]}"
            )

    def _name(self, column: int) -> str:
        return self.feature_names[column] if self.feature_names else str(column)
