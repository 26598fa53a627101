"""FeatureSchema: client rows → a checked (n, n_features) float64 array."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from modelserve.errors import (
    FeatureCountError,
    InvalidInputError,
    MissingFeatureError,
    NonFiniteFeatureError,
    UnknownFeatureError,
)
from modelserve.inference.preprocess import (
    FeatureSchema,
    OutOfRange,
    RangeReport,
    integer_columns,
)

NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
RANGES = {"sepal_length": (4.0, 8.0), "petal_width": (0.0, 3.0)}


def named_schema() -> FeatureSchema:
    return FeatureSchema(4, NAMES, RANGES)


def test_to_array_positional_rows_give_float64_matrix() -> None:
    """Positional rows become a float64 matrix of the same values."""
    matrix = FeatureSchema(4).to_array([[5.1, 3.5, 1.4, 0.2], [6, 3, 5, 2]])
    assert matrix.dtype == np.float64
    assert matrix.tolist() == [[5.1, 3.5, 1.4, 0.2], [6.0, 3.0, 5.0, 2.0]]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[1.0, 2.0, 3.0]], "expected 4 features, got 3"),
        ([[1.0, 2.0, 3.0, 4.0, 5.0]], "expected 4 features, got 5"),
        ([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]], "expected 4 features, got 2 in row 1"),
        ([[]], "expected 4 features, got 0"),
    ],
    ids=["too-few", "too-many", "second-row-short", "empty-row"],
)
def test_to_array_wrong_width_says_expected_and_got(rows: list[list[float]], message: str) -> None:
    """A row of the wrong width raises FeatureCountError saying expected vs got (and the row)."""
    with pytest.raises(FeatureCountError, match=message):
        FeatureSchema(4).to_array(rows)


@pytest.mark.parametrize(
    ("value", "shown"),
    [(math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf")],
    ids=["nan", "inf", "minus-inf"],
)
def test_to_array_non_finite_names_row_and_column(value: float, shown: str) -> None:
    """NaN and ±Inf are refused with the row, column and feature name of the first one."""
    rows = [[5.1, 3.5, 1.4, 0.2], [5.1, 3.5, value, 0.2]]
    with pytest.raises(NonFiniteFeatureError) as info:
        named_schema().to_array(rows)
    assert (info.value.row, info.value.column) == (1, 2)
    assert "row 1, column 2 ('petal_length')" in info.value.detail
    assert info.value.detail.endswith(shown)


def test_to_array_non_finite_without_names_gives_column_index() -> None:
    """Without feature names the message still names row and column."""
    with pytest.raises(NonFiniteFeatureError, match="row 0, column 3"):
        FeatureSchema(4).to_array([[1.0, 2.0, 3.0, math.inf]])


def test_to_array_named_features_follow_model_order() -> None:
    """Named features are placed in the model's column order, whatever the object's order."""
    row = {"petal_width": 0.2, "sepal_width": 3.5, "petal_length": 1.4, "sepal_length": 5.1}
    assert named_schema().to_array([row]).tolist() == [[5.1, 3.5, 1.4, 0.2]]


def test_to_array_unknown_feature_names_it_and_the_expected_ones() -> None:
    """An unknown name is refused, listing it and the names the model expects."""
    row = dict.fromkeys(NAMES, 1.0) | {"colour": 2.0}
    with pytest.raises(
        UnknownFeatureError, match=r"unknown feature.*colour.*expected sepal_length"
    ):
        named_schema().to_array([row])


def test_to_array_missing_feature_names_it() -> None:
    """A missing name is refused, listing what is missing."""
    row = {name: 1.0 for name in NAMES if name != "sepal_width"}
    with pytest.raises(MissingFeatureError, match=r"missing feature.*sepal_width"):
        named_schema().to_array([row])


def test_to_array_named_rows_need_declared_names() -> None:
    """An object of features for a model without names is refused with a hint."""
    with pytest.raises(InvalidInputError, match="declares no feature names"):
        FeatureSchema(2).to_array([{"a": 1.0, "b": 2.0}])


@pytest.mark.parametrize(
    "rows",
    [
        [[5.1, 3.5, 1.4, 0.2], dict.fromkeys(NAMES, 1.0)],
        [dict.fromkeys(NAMES, 1.0), [5.1, 3.5, 1.4, 0.2]],
    ],
    ids=["list-then-object", "object-then-list"],
)
def test_to_array_mixed_row_kinds_are_refused(
    rows: Sequence[Sequence[float] | Mapping[str, float]],
) -> None:
    """A batch mixing positional and named rows is refused, naming the offending row."""
    with pytest.raises(InvalidInputError, match="row 1 mixes named and positional"):
        named_schema().to_array(rows)


def test_out_of_range_summarises_values_outside_their_range() -> None:
    """One report per matrix: a count per feature, rows affected, and the first value found."""
    schema = named_schema()
    matrix = schema.to_array([[5.0, 3.0, 1.0, 0.5], [9.5, 3.0, 1.0, -1.0], [9.0, 3.0, 1.0, 0.5]])
    assert schema.out_of_range(matrix) == RangeReport(
        counts={"sepal_length": 2, "petal_width": 1},
        rows=2,
        example=OutOfRange(row=1, feature="sepal_length", value=9.5, low=4.0, high=8.0),
    )


def test_out_of_range_bounds_are_plain_floats() -> None:
    """The example's bounds are Python floats, so logs show numbers, not numpy reprs."""
    schema = named_schema()
    report = schema.out_of_range(schema.to_array([[100.0, 3.0, 1.0, 0.5]]))
    assert report is not None
    assert type(report.example.low) is float
    assert type(report.example.high) is float


def test_out_of_range_values_are_not_clipped() -> None:
    """Reporting never changes the values the model sees."""
    schema = named_schema()
    matrix = schema.to_array([[100.0, 3.0, 1.0, 0.5]])
    schema.out_of_range(matrix)
    assert matrix[0, 0] == 100.0


def test_out_of_range_empty_without_declared_ranges() -> None:
    """Without ranges nothing is ever out of range."""
    schema = FeatureSchema(4, NAMES)
    assert schema.out_of_range(schema.to_array([[1e9, -1e9, 0.0, 0.0]])) is None


@pytest.mark.parametrize(
    ("names", "ranges", "message"),
    [
        (["a", "b"], None, "2 feature names given for a model of 4 features"),
        (NAMES, {"colour": (0.0, 1.0)}, "unknown feature 'colour'"),
    ],
    ids=["names-width-mismatch", "range-for-unknown-name"],
)
def test_feature_schema_refuses_inconsistent_declarations(
    names: list[str], ranges: dict[str, tuple[float, float]] | None, message: str
) -> None:
    """Names that do not fit the width, or ranges for unknown names, are configuration errors."""
    with pytest.raises(ValueError, match=message):
        FeatureSchema(4, names, ranges)


def test_schema_refuses_a_fraction_in_an_integer_column() -> None:
    """A column declared as an integer (an MLflow `long`) refuses 2.5 and names the feature."""
    schema = FeatureSchema(
        4, NAMES, integer_columns=integer_columns(["double", "long", "double", "double"])
    )
    with pytest.raises(InvalidInputError, match="sepal_width of row 1 must be a whole number"):
        schema.to_array([[5.1, 3.0, 1.4, 0.2], [5.1, 2.5, 1.4, 0.2]])


def test_schema_accepts_whole_numbers_in_an_integer_column() -> None:
    """Whole numbers (sent as 3 or 3.0) pass an integer column unchanged."""
    schema = FeatureSchema(4, NAMES, integer_columns=[1])
    assert schema.to_array([[5.1, 3, 1.4, 0.2]]).tolist() == [[5.1, 3.0, 1.4, 0.2]]
