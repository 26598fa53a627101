"""V2 tensors ↔ numpy: JSON ``data`` (nested or flat, row-major) and raw little-endian bytes.

Every conversion is exact or refused: integers must be integral and in range for their
datatype, floats must not overflow it, BOOL must be true/false, and the element count must be
the product of the shape before anything is reshaped. Raw bytes become an array view of the
caller's buffer (no copy) wherever numpy allows; only BYTES tensors are copied out.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from modelserve.errors import InvalidTensorError
from modelserve.v2.datatypes import BYTES, is_float, is_integer, numpy_dtype

_LENGTH_PREFIX = struct.Struct("<I")
# numpy refuses (ValueError) arrays of more than 64 dimensions, and shapes whose sides' product
# overflows its sizes even when a side of 0 leaves no element; no body comes near these bounds.
MAX_DIMS = 32
MAX_SIDES_PRODUCT = 2**40
"""BYTES elements in raw form: a 4-byte little-endian length, then that many bytes."""

Parameters = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Codes:
    """A BYTES tensor's elements as indices into a table of its distinct elements (an
    answer's labels), so it is framed or decoded per distinct element, not per element."""

    table: tuple[bytes, ...]
    ids: npt.NDArray[np.intp]
    """Row-major, one per element: ``data.ravel()[i] == table[ids[i]]``."""

    def array(self, elements: Sequence[Any]) -> npt.NDArray[np.object_]:
        """``elements[i]`` (one per table entry) for every element, row-major, as an object
        array."""
        column = np.empty(len(elements), dtype=object)
        column[:] = elements
        taken: npt.NDArray[np.object_] = column[self.ids]
        return taken

    def take(self, elements: Sequence[Any]) -> list[Any]:
        """:meth:`array` as a list."""
        taken: list[Any] = self.array(elements).tolist()
        return taken


@dataclass(frozen=True, slots=True)
class Tensor:
    """A named, typed, shaped array. ``data`` has the shape and the datatype's numpy dtype;
    BYTES tensors hold ``bytes`` objects in an object array (and may carry their
    :class:`Codes`)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray
    parameters: Parameters = field(default_factory=dict)
    codes: Codes | None = None


def check_shape(name: str, shape: object) -> tuple[int, ...]:
    """The shape as a tuple of non-negative ints that numpy can build (at most ``MAX_DIMS``,
    the product of the non-zero sides at most ``MAX_SIDES_PRODUCT``), or InvalidTensorError."""
    if not isinstance(shape, list | tuple) or not all(
        type(dim) is int and dim >= 0 for dim in shape
    ):
        raise InvalidTensorError(
            name, f"shape must be a list of non-negative integers, got {shape!r}"
        )
    if len(shape) > MAX_DIMS:
        raise InvalidTensorError(
            name, f"shape has {len(shape)} dimensions, at most {MAX_DIMS} are accepted"
        )
    if math.prod(max(side, 1) for side in shape) > MAX_SIDES_PRODUCT:
        raise InvalidTensorError(
            name, f"shape {list(shape)} is too large: its sides multiply past 2**40"
        )
    return tuple(shape)


def element_count(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def from_json(
    name: str, datatype: str, shape: tuple[int, ...], data: object, parameters: Parameters
) -> Tensor:
    """A tensor from JSON ``data``: a flat row-major list or nested lists matching ``shape``."""
    dtype = numpy_dtype(datatype)
    if not isinstance(data, list):
        raise InvalidTensorError(name, f"data must be a list, got {type(data).__name__}")
    count = element_count(shape)
    if datatype == BYTES:
        array = _bytes_from_json(name, data)
    else:
        try:
            array = np.array(data)
        except ValueError:
            raise InvalidTensorError(
                name, "data is ragged: nested lists must have equal lengths"
            ) from None
    if array.ndim > 1 and array.shape != shape:
        raise InvalidTensorError(
            name, f"nested data has shape {list(array.shape)}, the tensor declares {list(shape)}"
        )
    if array.size != count:
        raise InvalidTensorError(
            name, f"shape {list(shape)} needs {count} elements, data has {array.size}"
        )
    if datatype != BYTES:
        array = _convert(name, datatype, dtype, array, data)
    return Tensor(name, datatype, shape, array.reshape(shape), parameters)


def _bytes_from_json(name: str, data: list[Any]) -> np.ndarray:
    flat = _flatten(data)
    array = np.empty(len(flat), dtype=object)
    for i, item in enumerate(flat):
        if not isinstance(item, str):
            raise InvalidTensorError(
                name, f"BYTES data must be strings, element {i} is {type(item).__name__}"
            )
        array[i] = item.encode()
    if flat is data:
        return array
    try:  # nested: numpy refuses ragged string lists, and gives the nesting's shape
        nested_shape = np.array(data).shape
    except ValueError:
        raise InvalidTensorError(
            name, "data is ragged: nested lists must have equal lengths"
        ) from None
    return array.reshape(nested_shape)


def _flatten(data: list[Any]) -> list[Any]:
    if not any(isinstance(item, list) for item in data):
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _convert(
    name: str, datatype: str, dtype: np.dtype[Any], array: np.ndarray, data: list[Any]
) -> np.ndarray:
    """Cast JSON-parsed values to ``dtype`` if and only if no value changes meaning."""
    kind = array.dtype.kind
    if array.size == 0:
        return np.empty(array.shape, dtype)
    if datatype == "BOOL":
        if kind != "b":
            raise InvalidTensorError(name, "BOOL data must be true or false")
        return array
    if is_integer(datatype):
        if kind not in "iu":
            # numpy turns integers past int64 mixed with negative ones into floats or objects;
            # Python's own ints say whether they are integers at all.
            return _exact_integers(name, datatype, dtype, data, array.shape)
        info = np.iinfo(dtype)
        low, high = array.min(), array.max()
        if low < info.min or high > info.max:
            raise InvalidTensorError(
                name,
                f"{datatype} holds [{info.min}, {info.max}], data has values in [{low}, {high}]",
            )
        return array.astype(dtype)
    if kind not in "iuf":
        raise InvalidTensorError(name, f"{datatype} data must be numbers")
    if array.dtype == dtype:  # JSON numbers parsed as float64 for FP64: nothing to cast
        converted = array
    else:
        with np.errstate(over="ignore"):  # an overflow is refused just below
            converted = array.astype(dtype)
    if not np.isfinite(converted).all():
        raise InvalidTensorError(name, f"a value overflows {datatype}")
    return converted


def _exact_integers(
    name: str, datatype: str, dtype: np.dtype[Any], data: list[Any], shape: tuple[int, ...]
) -> np.ndarray:
    values = _flatten(data)
    if not all(type(v) is int for v in values):
        raise InvalidTensorError(name, f"{datatype} data must be integers")
    info = np.iinfo(dtype)
    low, high = min(values), max(values)
    if low < info.min or high > info.max:
        raise InvalidTensorError(
            name, f"{datatype} holds [{info.min}, {info.max}], data has values in [{low}, {high}]"
        )
    return np.array(values, dtype=dtype).reshape(shape)


def from_raw(name: str, datatype: str, shape: tuple[int, ...], raw: memoryview | bytes) -> Tensor:
    """A tensor from raw row-major little-endian bytes; a view of ``raw`` unless BYTES."""
    dtype = numpy_dtype(datatype)
    count = element_count(shape)
    if datatype == BYTES:
        return Tensor(name, datatype, shape, _bytes_from_raw(name, raw, count).reshape(shape))
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise InvalidTensorError(
            name,
            f"shape {list(shape)} of {datatype} needs {expected} bytes of binary data, "
            f"got {len(raw)}",
        )
    array = np.frombuffer(raw, dtype=dtype, count=count)
    if datatype == "BOOL" and count and array.view(np.uint8).max() > 1:
        raise InvalidTensorError(name, "BOOL binary data must be bytes 0 or 1")
    if is_float(datatype) and not np.isfinite(array).all():
        raise InvalidTensorError(name, "data holds NaN or infinity")
    return Tensor(name, datatype, shape, array.reshape(shape))


def _bytes_from_raw(name: str, raw: memoryview | bytes, count: int) -> np.ndarray:
    view = memoryview(raw)
    array = np.empty(count, dtype=object)
    offset = 0
    for i in range(count):
        if offset + 4 > len(view):
            raise InvalidTensorError(name, f"binary BYTES data ends before element {i} of {count}")
        (length,) = _LENGTH_PREFIX.unpack_from(view, offset)
        offset += 4
        if offset + length > len(view):
            raise InvalidTensorError(
                name, f"BYTES element {i} declares {length} bytes, only {len(view) - offset} remain"
            )
        array[i] = bytes(view[offset : offset + length])
        offset += length
    if offset != len(view):
        raise InvalidTensorError(
            name, f"binary BYTES data has {len(view) - offset} bytes after its {count} elements"
        )
    return array


def to_raw(tensor: Tensor) -> bytes:
    """The raw form: row-major little-endian elements, BYTES with 4-byte length prefixes."""
    if tensor.datatype == BYTES:
        if tensor.codes is not None:
            table = tensor.codes.table
            return b"".join(tensor.codes.take([_LENGTH_PREFIX.pack(len(t)) + t for t in table]))
        items = _as_bytes(tensor.data)
        framed = {item: _LENGTH_PREFIX.pack(len(item)) + item for item in dict.fromkeys(items)}
        return b"".join(map(framed.__getitem__, items))
    return np.ascontiguousarray(tensor.data, dtype=numpy_dtype(tensor.datatype)).tobytes()


def to_json_data(tensor: Tensor) -> list[Any]:
    """The flat row-major ``data`` list (BYTES as UTF-8 strings)."""
    if tensor.datatype == BYTES:
        if tensor.codes is not None:
            return tensor.codes.take([item.decode() for item in tensor.codes.table])
        items = _as_bytes(tensor.data)
        text = {item: item.decode() for item in dict.fromkeys(items)}
        return list(map(text.__getitem__, items))
    flat: list[Any] = tensor.data.ravel().tolist()
    return flat


def _as_bytes(data: np.ndarray) -> Sequence[bytes]:
    """The elements of a BYTES tensor as bytes, row-major. Outputs hold bytes already, and
    few distinct ones (labels repeat), so the callers frame or decode each distinct one once."""
    items = data.ravel().tolist()
    if all(type(item) is bytes for item in dict.fromkeys(items)):
        return items
    return [item if isinstance(item, bytes) else str(item).encode() for item in items]
