"""V2 tensors ↔ numpy: every datatype, JSON and raw forms, exact conversion or a clear refusal."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modelserve.errors import InvalidTensorError, UnknownDatatypeError
from modelserve.v2 import tensor
from modelserve.v2.datatypes import DATATYPES, NUMPY_DTYPES

NUMERIC = [name for name in DATATYPES if name != "BYTES"]
SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5)


def _arrays(datatype: str) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(
        NUMPY_DTYPES[datatype],
        SHAPES,
        elements={"allow_nan": False, "allow_infinity": False}
        if datatype.startswith("FP")
        else None,
    )


def _bytes_arrays(elements: st.SearchStrategy[bytes]) -> st.SearchStrategy[np.ndarray]:
    def build(shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
        count = int(np.prod(shape))
        return st.lists(elements, min_size=count, max_size=count).map(
            lambda items: _object_array(items, shape)
        )

    return SHAPES.flatmap(build)


def _object_array(items: list[bytes], shape: tuple[int, ...]) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array.reshape(shape)


@pytest.mark.parametrize("datatype", NUMERIC)
@settings(max_examples=40)
@given(data=st.data())
def test_tensor_raw_round_trip_is_exact(datatype: str, data: st.DataObject) -> None:
    """Raw bytes of any array of any numeric datatype come back as the same array."""
    array = data.draw(_arrays(datatype))
    original = tensor.Tensor("x", datatype, array.shape, array)
    decoded = tensor.from_raw("x", datatype, array.shape, tensor.to_raw(original))
    assert decoded.data.dtype == NUMPY_DTYPES[datatype]
    np.testing.assert_array_equal(decoded.data, array)


@pytest.mark.parametrize("datatype", NUMERIC)
@settings(max_examples=40)
@given(data=st.data())
def test_tensor_json_round_trip_is_exact(datatype: str, data: st.DataObject) -> None:
    """JSON data of any array of any numeric datatype converts back to the same values."""
    array = data.draw(_arrays(datatype))
    original = tensor.Tensor("x", datatype, array.shape, array)
    decoded = tensor.from_json("x", datatype, array.shape, tensor.to_json_data(original), {})
    assert decoded.data.dtype == NUMPY_DTYPES[datatype]
    np.testing.assert_array_equal(decoded.data, array)


@given(_bytes_arrays(st.binary(max_size=20)))
def test_tensor_bytes_raw_round_trip(array: np.ndarray) -> None:
    """BYTES elements survive their 4-byte length-prefixed raw form, empty ones included."""
    original = tensor.Tensor("x", "BYTES", array.shape, array)
    decoded = tensor.from_raw("x", "BYTES", array.shape, tensor.to_raw(original))
    assert decoded.data.shape == array.shape
    assert decoded.data.ravel().tolist() == array.ravel().tolist()


@given(_bytes_arrays(st.text(max_size=10).map(str.encode)))
def test_tensor_bytes_json_round_trip(array: np.ndarray) -> None:
    """BYTES elements go out as UTF-8 strings in JSON and come back as the same bytes."""
    original = tensor.Tensor("x", "BYTES", array.shape, array)
    decoded = tensor.from_json("x", "BYTES", array.shape, tensor.to_json_data(original), {})
    assert decoded.data.ravel().tolist() == array.ravel().tolist()


@given(st.binary(max_size=64), st.integers(0, 8))
def test_tensor_bytes_raw_garbage_is_refused_cleanly(raw: bytes, count: int) -> None:
    """Arbitrary bytes decode as BYTES or fail with InvalidTensorError, never anything else."""
    try:
        decoded = tensor.from_raw("x", "BYTES", (count,), raw)
    except InvalidTensorError:
        return
    assert len(decoded.data) == count


def test_tensor_raw_decoding_does_not_copy() -> None:
    """A numeric raw tensor is a view of the request buffer."""
    body = np.arange(6, dtype="<f4").tobytes()
    view = memoryview(body)
    decoded = tensor.from_raw("x", "FP32", (2, 3), view)
    assert np.shares_memory(decoded.data, np.frombuffer(body, dtype=np.uint8))


def test_tensor_nested_and_flat_json_are_the_same() -> None:
    """Nested data in the declared shape equals the flat row-major list."""
    nested = tensor.from_json("x", "INT32", (2, 2), [[1, 2], [3, 4]], {})
    flat = tensor.from_json("x", "INT32", (2, 2), [1, 2, 3, 4], {})
    np.testing.assert_array_equal(nested.data, flat.data)


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "message"),
    [
        ("FP32", (2, 2), [1.0, 2.0, 3.0], "needs 4 elements, data has 3"),
        ("FP32", (2, 2), [[1.0, 2.0, 3.0, 4.0]], "nested data has shape [1, 4]"),
        ("FP32", (2, 2), [[1.0, 2.0], [3.0]], "ragged"),
        ("INT8", (1,), [128], "INT8 holds [-128, 127]"),
        ("UINT8", (1,), [-1], "UINT8 holds [0, 255]"),
        ("INT32", (1,), [1.5], "INT32 data must be integers"),
        ("FP64", (1,), [True], "FP64 data must be numbers"),
        ("FP64", (1,), ["1.0"], "FP64 data must be numbers"),
        ("BOOL", (1,), [1], "BOOL data must be true or false"),
        ("FP16", (1,), [1e6], "a value overflows FP16"),
        ("BYTES", (1,), [3], "BYTES data must be strings"),
        ("BYTES", (2, 2), [["a", "b"], ["c"]], "ragged"),
    ],
    ids=[
        "too-few",
        "nested-wrong-shape",
        "ragged",
        "int8-overflow",
        "uint-negative",
        "int-from-float",
        "float-from-bool",
        "float-from-string",
        "bool-from-int",
        "fp16-overflow",
        "bytes-from-number",
        "bytes-ragged",
    ],
)
def test_tensor_json_refuses_inexact_data(
    datatype: str, shape: tuple[int, ...], data: list[object], message: str
) -> None:
    """Data that does not fit the datatype or shape is an InvalidTensorError saying why."""
    with pytest.raises(InvalidTensorError, match=message.replace("[", r"\[").replace("]", r"\]")):
        tensor.from_json("x", datatype, shape, data, {})


@pytest.mark.parametrize(
    ("datatype", "raw", "message"),
    [
        ("FP32", b"\0" * 7, "needs 8 bytes of binary data, got 7"),
        ("BOOL", b"\x00\x02", "BOOL binary data must be bytes 0 or 1"),
        ("FP64", np.array([1.0, np.nan]).tobytes(), "NaN or infinity"),
        ("BYTES", b"\x05\0\0\0abc", "declares 5 bytes, only 3 remain"),
        ("BYTES", b"\x01\0\0\0a\x01\0\0\0bz", "1 bytes after its 2 elements"),
    ],
    ids=["short", "bool-not-0-1", "nan", "bytes-short", "bytes-trailing"],
)
def test_tensor_raw_refuses_bad_lengths_and_values(datatype: str, raw: bytes, message: str) -> None:
    """Raw data whose length or values do not fit is an InvalidTensorError saying why."""
    with pytest.raises(InvalidTensorError, match=message):
        tensor.from_raw("x", datatype, (2,), raw)


def test_tensor_unknown_datatype_lists_the_valid_ones() -> None:
    """An unknown datatype is refused with the list of datatypes the protocol defines."""
    with pytest.raises(UnknownDatatypeError, match="expected one of BOOL, UINT8"):
        tensor.from_json("x", "FLOAT", (1,), [1.0], {})


@pytest.mark.parametrize(
    "shape", [[-1, 2], [1.0], "2", None], ids=["negative", "float", "str", "none"]
)
def test_tensor_shape_must_be_non_negative_ints(shape: object) -> None:
    """A request shape is a list of non-negative integers (-1 appears only in metadata)."""
    with pytest.raises(InvalidTensorError, match="shape must be a list of non-negative integers"):
        tensor.check_shape("x", shape)


@pytest.mark.parametrize(
    ("shape", "refusal"),
    [([1] * 65, "shape has 65 dimensions, at most 32"), ([0, 2**63], "too large")],
    ids=["past-64-dimensions", "side-past-int64"],
)
def test_tensor_shape_numpy_cannot_build_is_refused(shape: list[int], refusal: str) -> None:
    """Shapes numpy refuses with a ValueError, even of 0 elements, are a clean refusal."""
    with pytest.raises(InvalidTensorError, match=refusal):
        tensor.from_json("x", "FP64", tensor.check_shape("x", shape), [], {})


def test_tensor_shape_within_the_bounds_builds() -> None:
    """MAX_DIMS dimensions, and sides whose product is MAX_SIDES_PRODUCT, still build."""
    deepest = tensor.check_shape("x", [1] * tensor.MAX_DIMS)
    assert tensor.from_json("x", "FP64", deepest, [1.0], {}).data.ndim == tensor.MAX_DIMS
    widest = tensor.check_shape("x", [0, tensor.MAX_SIDES_PRODUCT])
    assert tensor.from_json("x", "FP64", widest, [], {}).data.shape == (0, 2**40)


def test_tensor_bytes_output_with_repeated_and_non_bytes_elements_encodes_each() -> None:
    """Repeated labels and non-bytes elements (1 and True are equal in Python) keep their text."""
    labels = np.array([b"setosa", b"virginica", b"setosa"] * 400, dtype=object)
    mixed = np.array([1, True, "x"] * 20, dtype=object)
    for data, texts in (
        (labels, ["setosa", "virginica", "setosa"] * 400),
        (mixed, ["1", "True", "x"] * 20),
    ):
        bytes_tensor = tensor.Tensor("label", "BYTES", data.shape, data)
        assert tensor.to_json_data(bytes_tensor) == texts
        decoded = tensor.from_raw("label", "BYTES", data.shape, tensor.to_raw(bytes_tensor))
        assert decoded.data.tolist() == [text.encode() for text in texts]
