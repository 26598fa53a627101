"""V2 inputs → the feature matrix: one [rows, features] tensor or one tensor per feature."""

from __future__ import annotations

import numpy as np
import pytest

from modelserve.errors import InvalidTensorError, UnknownTensorError
from modelserve.v2 import tensor
from modelserve.v2.features import feature_matrix

NAMES = ["sepal_length", "sepal_width"]


def _input(name: str, datatype: str, shape: tuple[int, ...], data: list[object]) -> tensor.Tensor:
    return tensor.from_json(name, datatype, shape, data, {})


@pytest.mark.parametrize(
    ("datatype", "data"),
    [
        ("FP64", [1.5, 2.0, 3.0, 4.25]),
        ("FP32", [1.5, 2.0, 3.0, 4.25]),
        ("FP16", [1.5, 2.0, 3.0, 4.25]),
        ("INT8", [1, 2, 3, 4]),
        ("INT64", [1, 2, 3, 2**53]),
        ("UINT32", [1, 2, 3, 4]),
        ("BOOL", [True, False, True, True]),
    ],
    ids=["fp64", "fp32", "fp16", "int8", "int64-at-2**53", "uint32", "bool"],
)
def test_features_matrix_accepts_every_exact_numeric_datatype(
    datatype: str, data: list[object]
) -> None:
    """A [rows, features] input of any numeric datatype becomes the same float64 values."""
    matrix = feature_matrix([_input("input", datatype, (2, 2), data)], 2, None)
    assert matrix.dtype == np.float64
    np.testing.assert_array_equal(matrix.ravel(), np.array(data, dtype=np.float64))


def test_features_int64_beyond_float64_precision_is_refused() -> None:
    """An INT64 value float64 cannot hold exactly is refused, not rounded."""
    with pytest.raises(InvalidTensorError, match="beyond ±2\\*\\*53"):
        feature_matrix([_input("input", "INT64", (1, 2), [1, 2**53 + 1])], 2, None)


def test_features_bytes_input_is_refused() -> None:
    """A model of numbers does not take BYTES."""
    with pytest.raises(InvalidTensorError, match="BYTES is not accepted"):
        feature_matrix([_input("input", "BYTES", (1, 2), ["1", "2"])], 2, None)


@pytest.mark.parametrize(
    ("shape", "data"), [((4,), [1, 2, 3, 4]), ((2, 3), [1] * 6)], ids=["flat", "wrong-width"]
)
def test_features_matrix_shape_must_be_rows_by_features(
    shape: tuple[int, ...], data: list[object]
) -> None:
    """A wrong shape is a 400 that names the expected one."""
    with pytest.raises(InvalidTensorError, match="expected shape \\[-1, 2\\]"):
        feature_matrix([_input("input", "FP64", shape, data)], 2, None)


def test_features_columnar_inputs_are_ordered_by_the_model_names() -> None:
    """One input per named feature, in any order, fills the columns in the model's order."""
    matrix = feature_matrix(
        [
            _input("sepal_width", "FP32", (2,), [3.5, 3.0]),
            _input("sepal_length", "INT32", (2, 1), [5, 4]),
        ],
        2,
        NAMES,
    )
    np.testing.assert_array_equal(matrix, [[5.0, 3.5], [4.0, 3.0]])


def test_features_columnar_missing_feature_is_named() -> None:
    """A missing feature input is named in the error."""
    with pytest.raises(InvalidTensorError, match="'sepal_width': missing"):
        feature_matrix([_input("sepal_length", "FP64", (1,), [5.0])], 2, NAMES)


def test_features_columnar_unequal_rows_are_refused() -> None:
    """Feature inputs must all have the same number of rows."""
    with pytest.raises(InvalidTensorError, match="like the other features"):
        feature_matrix(
            [
                _input("sepal_length", "FP64", (2,), [5.0, 4.0]),
                _input("sepal_width", "FP64", (1,), [3.0]),
            ],
            2,
            NAMES,
        )


@pytest.mark.parametrize("names", [None, NAMES], ids=["unnamed-model", "named-model"])
def test_features_unknown_input_lists_the_known_ones(names: list[str] | None) -> None:
    """An input name the model does not know is refused with the names it does."""
    with pytest.raises(UnknownTensorError, match="unknown input 'x'; this model has input"):
        feature_matrix([_input("x", "FP64", (1, 2), [1.0, 2.0])], 2, names)
