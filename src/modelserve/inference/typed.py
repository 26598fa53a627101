"""Typed features: named values of declared types → a checked batch → one DataFrame per call.

A version whose schema has typed features (strings, categories, integers, booleans, nulls)
gets a :class:`TypedFeatureSchema` and a :class:`FrameRuntime` when it is loaded; every other
version keeps the plain float path untouched. Each value is checked against its
:class:`~modelserve.inference.types.FeatureSpec` and made canonical (``41`` and ``41.0`` of
a float feature are the same value, ``-0.0`` is ``0.0``), so a batch of typed rows is a 2-D
object array of plain Python values: the batcher slices and concatenates it, the prediction
cache hashes its rows, and :meth:`TypedFeatureSchema.to_frame` turns each model call's rows
into a pandas DataFrame with the training dtypes (categoricals as ``pd.Categorical`` with
the training categories, nulls as NaN or None).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from modelserve.errors import (
    FeatureCountError,
    InvalidFeatureValueError,
    InvalidInputError,
    ModelLoadError,
    NullFeatureError,
    UnknownCategoryError,
    UnknownFeatureError,
)
from modelserve.inference.preprocess import FeatureSchema, RangeReport, Row, shown_value
from modelserve.inference.runtimes.base import Runtime
from modelserve.inference.types import (
    Batch,
    FeatureSpec,
    FloatArray,
    ModelMetadata,
    RawOutput,
    TypedBatch,
    is_float,
    is_typed,
)
from modelserve.observability.profile import FeatureKind, FeatureProfile, ReferenceProfile

if TYPE_CHECKING:
    import pandas as pd

    from modelserve.settings import ModelConfig

TypedValue = str | int | float | bool | None
_SHOWN_CATEGORIES = 5
_NUMBER_TYPES = (int, float)
_ABSENT = object()
"""A named row without the feature (not the same as ``null`` in an error message)."""
CATEGORICAL_TYPES = frozenset({"category", "string", "bool"})
"""Feature types whose drift is a shift of value frequencies, not of a distribution."""


def profile_kind(spec: FeatureSpec) -> FeatureKind:
    """How a reference profile describes the feature: by category shares or numeric bins."""
    return "categorical" if spec.type in CATEGORICAL_TYPES else "numeric"


class FramePredictor(Protocol):
    """A runtime that can also predict a pandas DataFrame (scikit-learn pipelines)."""

    def predict_frame(self, frame: pd.DataFrame) -> RawOutput: ...


class _Column:
    """Checks and canonicalises one feature's values."""

    def __init__(self, spec: FeatureSpec, profiled: FeatureProfile | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.convert: Callable[[object], TypedValue] = getattr(self, f"_to_{spec.type}")
        categories = spec.categories or ()
        self._allowed = {(type(c), c) for c in categories}
        self._kinds = {type(c) for c in categories}
        self._codes: dict[tuple[type, object], float] = {
            (type(c), c): float(i) for i, c in enumerate(categories)
        }
        self._vocabulary: dict[tuple[type, object], float] | None = None
        self._other = math.nan
        if profiled is not None and profiled.kind == "categorical":
            self._vocabulary = {(type(c), c): float(i) for i, c in enumerate(profiled.categories)}
            self._other = float(len(profiled.categories))
        self.expected: str = spec.type
        if spec.categories is not None:
            shown = ", ".join(repr(c) for c in categories[:_SHOWN_CATEGORIES])
            more = "" if len(categories) <= _SHOWN_CATEGORIES else f", ... ({len(categories)})"
            self.expected = f"one of {shown}{more}"

    def value(self, row: int, value: object) -> TypedValue:
        if value is None or value is _ABSENT:
            if not self.spec.nullable:
                got = "null" if value is None else "nothing (the feature is missing)"
                raise NullFeatureError(row, self.name, f"{self.expected} (not nullable)", got)
            return None
        try:
            return self.convert(value)
        except (TypeError, ValueError, OverflowError):
            error = UnknownCategoryError if self._is_unknown(value) else InvalidFeatureValueError
            raise error(row, self.name, self.expected, shown_value(value)) from None

    def _is_unknown(self, value: object) -> bool:
        return self.spec.categories is not None and type(value) in self._kinds

    def _to_float(self, value: object) -> float:
        if type(value) not in _NUMBER_TYPES or not math.isfinite(value):  # type: ignore[arg-type]  # int or float here
            raise TypeError
        return float(value) + 0.0  # type: ignore[arg-type]  # +0.0: -0.0 and 0.0 are one value

    def _to_int(self, value: object) -> int:
        if type(value) is int:
            return value
        if type(value) is float and value.is_integer():
            return int(value)
        raise TypeError

    def _to_bool(self, value: object) -> bool:
        if type(value) is not bool:
            raise TypeError
        return value

    def _to_string(self, value: object) -> str:
        if type(value) is not str:
            raise TypeError
        return value

    def _to_category(self, value: object) -> TypedValue:
        key = (type(value), value)
        if key in self._allowed:
            return cast(TypedValue, value)
        if float in self._kinds and type(value) is int and (float, float(value)) in self._allowed:
            return float(value)
        whole = type(value) is float and value.is_integer()
        if whole and int in self._kinds and (int, int(cast(float, value))) in self._allowed:
            return int(cast(float, value))
        if self.spec.unknown == "ignore" and type(value) in self._kinds:
            return cast(TypedValue, value)  # the encoder ignores it; it stays in the cache key
        raise ValueError

    def code(self, value: object) -> float:
        """A number for drift statistics: the value, 0/1, the category's index, or NaN.

        With a profile, a categorical value's code is its bin in the profile (the index of
        its category, or the "other" bin); NaN is a null.
        """
        if value is None:
            return math.nan
        if self._vocabulary is not None:
            return self._vocabulary.get((type(value), value), self._other)
        if self.spec.type == "string":
            return math.nan
        if self.spec.type == "category":
            return self._codes.get((type(value), value), math.nan)
        return float(cast(float, value))


class TypedFeatureSchema(FeatureSchema):
    """A :class:`FeatureSchema` whose columns have types: rows of JSON values, not floats."""

    def __init__(
        self, features: Sequence[FeatureSpec], profile: ReferenceProfile | None = None
    ) -> None:
        """``profile``: the version's reference profile, whose bins drift codes follow."""
        names = [spec.name for spec in features]
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        ranges = {spec.name: spec.range for spec in features if spec.range is not None}
        super().__init__(len(names), names, ranges or None)
        self.features = tuple(features)
        profiled: list[FeatureProfile | None] = list(profile.features) if profile else []
        profiled += [None] * (len(features) - len(profiled))
        for spec, feature in zip(features, profiled, strict=True):
            if feature is not None and feature.kind != profile_kind(spec):
                raise ValueError(
                    f"the profile describes {spec.name} as {feature.kind} but it is a"
                    f" {spec.type} feature: rebuild it with `modelserve profile`"
                )
        self._columns = [
            _Column(spec, feature) for spec, feature in zip(features, profiled, strict=True)
        ]

    def rows_to_array(self, rows: Sequence[Row]) -> TypedBatch:
        """Check every value of ``rows`` (name → value, or values in column order).

        Returns the rows as a :data:`~modelserve.inference.types.TypedBatch` of canonical
        values (every later stage only slices, concatenates and hashes it). Raises an
        :class:`~modelserve.errors.InvalidFeatureValueError` naming row, feature, expected
        type and got value.
        """
        width = self.n_features
        batch: TypedBatch = np.empty((len(rows), width), dtype=object)
        columns = self._columns
        names = self.feature_names or []
        for i, row in enumerate(rows):
            if isinstance(row, Mapping):
                if len(row) > width or any(name not in self._index for name in row):
                    unknown = [str(name) for name in row if name not in self._index]
                    raise UnknownFeatureError(unknown, names)
                values: Sequence[object] = [row.get(name, _ABSENT) for name in names]
            else:
                if len(row) != width:
                    raise FeatureCountError(width, len(row), i if len(rows) > 1 else None)
                values = row
            batch[i] = [
                column.value(i, value) for column, value in zip(columns, values, strict=True)
            ]
        return batch

    def to_array(self, rows: Sequence[Row]) -> TypedBatch:
        """:meth:`rows_to_array`, then :meth:`check`."""
        return self.check(self.rows_to_array(rows))

    def check(self, batch: Batch) -> TypedBatch:
        """A batch :meth:`rows_to_array` built, or a float matrix (V2 tensors) checked per value."""
        if batch.ndim != 2 or batch.shape[1] != self.n_features:
            raise FeatureCountError(self.n_features, batch.shape[-1] if batch.ndim else 0)
        if is_typed(batch):
            return batch
        if not is_float(batch):
            raise InvalidInputError(f"expected named typed features, got a {batch.dtype} batch")
        rows = [[None if math.isnan(v) else v for v in row] for row in batch.tolist()]
        return self.rows_to_array(rows)

    def out_of_range(self, matrix: Batch) -> RangeReport | None:
        if self._ranges is None:
            return None
        return self._outside(self.numeric(matrix), *self._ranges)

    def numeric(self, batch: Batch) -> FloatArray:
        """The batch as numbers for drift and ranges (category index, 0/1, NaN for missing)."""
        out = np.empty(batch.shape, dtype=np.float64)
        for j, column in enumerate(self._columns):
            out[:, j] = [column.code(v) for v in batch[:, j]]
        return out

    def example_rows(self) -> list[list[TypedValue]]:
        """One valid row for the warm-up call: a first category, zero, false, or null."""
        row: list[TypedValue] = []
        for spec in self.features:
            low, high = spec.range or (0.0, 0.0)
            middle = (low + high) / 2
            defaults: dict[str, TypedValue] = {
                "float": middle,
                "int": round(middle),
                "bool": False,
                "string": "",
            }
            value = defaults.get(spec.type)
            if spec.categories is not None:
                value = spec.categories[0]
            row.append(value)
        return [row]

    def to_frame(self, batch: TypedBatch) -> pd.DataFrame:
        """One DataFrame of ``batch``'s rows with the training dtypes."""
        import pandas as pd

        data: dict[str, Any] = {}
        for j, spec in enumerate(self.features):
            values = batch[:, j]
            data[spec.name] = _column_data(pd, spec, values)
        return pd.DataFrame(data, columns=self.feature_names)


def _column_data(pd: Any, spec: FeatureSpec, values: Any) -> Any:
    has_null = spec.nullable and any(v is None for v in values)
    if spec.type == "category":
        return pd.Categorical(values, categories=list(spec.categories or ()))
    if spec.type == "float" or (spec.type == "int" and has_null):
        return np.array(values, dtype=np.float64)  # None → NaN, what imputers expect
    if spec.type == "int":
        return np.array(values, dtype=np.int64)
    if spec.type == "bool" and not has_null:
        return np.array(values, dtype=bool)
    return values  # strings and nullable booleans stay Python objects (None where null)


class FrameRuntime:
    """A runtime fed typed batches: each model call's rows become one DataFrame."""

    def __init__(self, inner: Runtime, schema: TypedFeatureSchema) -> None:
        predict_frame = getattr(inner, "predict_frame", None)
        if predict_frame is None:
            raise ModelLoadError(
                f"the {inner.format} runtime takes float features only; remove `features`"
            )
        self.inner = inner
        self.format = inner.format
        self._predict_frame: Callable[[pd.DataFrame], RawOutput] = predict_frame
        self._schema = schema

    @property
    def metadata(self) -> ModelMetadata:
        return self.inner.metadata

    def predict(self, batch: Batch) -> RawOutput:
        """One DataFrame of the typed rows; a float batch is refused (it cannot be one)."""
        if not is_typed(batch):
            raise InvalidInputError(f"expected typed rows, got a {batch.dtype} batch")
        return self._predict_frame(self._schema.to_frame(batch))


def model_call(runtime: Runtime) -> Callable[[Batch], RawOutput]:
    """What the batcher calls for a version: the typed runtime itself, or a float runtime
    behind a check that it gets float rows (a typed batch never reaches it)."""
    if isinstance(runtime, FrameRuntime):
        return runtime.predict
    predict = runtime.predict

    def predict_floats(batch: Batch) -> RawOutput:
        if not is_float(batch):
            raise InvalidInputError(f"expected a float64 batch, got {batch.dtype}")
        return predict(batch)

    return predict_floats


def typed_features(config: ModelConfig, meta: ModelMetadata) -> tuple[FeatureSpec, ...] | None:
    """The version's typed features: from ``features`` in its config, else from the model.

    ``None`` means plain floats. Configured features must name the model's own columns.
    """
    if config.features is None:
        return meta.features
    features = tuple(
        FeatureSpec(
            f.name,
            f.type,
            tuple(f.categories) if f.categories is not None else None,
            f.unknown,
            f.nullable,
            f.range,
        )
        for f in config.features
    )
    names = [f.name for f in features]
    if meta.feature_names is not None and sorted(names) != sorted(meta.feature_names):
        raise ModelLoadError(
            f"features name {', '.join(names)} but the model takes {', '.join(meta.feature_names)}"
        )
    if meta.n_features is not None and len(names) != meta.n_features:
        raise ModelLoadError(f"{len(names)} features configured, the model takes {meta.n_features}")
    return features
