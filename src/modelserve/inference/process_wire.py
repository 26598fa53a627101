"""The messages between a serving process and a model process (``isolation: process``).

Each message is one frame of a :class:`multiprocessing.connection.Connection` over a private
socket pair. Its first byte says what it is:

* ``L`` (parent → child, once): the verified files and the version's config, pickled. The
  child answers ``M`` (its runtime's format and metadata, pickled) or ``E``.
* ``P`` (parent → child): a batch to predict, as one array. The child answers ``O`` (the raw
  output: probabilities and values, each an array or absent) or ``E``.
* ``E``: a failure: the exception's class name and message, UTF-8, separated by a NUL.

An array is its dtype string, its shape and its bytes as they lie in memory, so a float batch
and its probabilities cross without pickling per element; an object array (string labels
from ``predict``) is pickled whole. Both ends are this package, started by the serving
process for its own model: nothing here comes from a client.
"""

from __future__ import annotations

import functools
import math
import pickle
import struct
from typing import TYPE_CHECKING, Any

import numpy as np

from modelserve import errors
from modelserve.inference.types import FloatArray, ModelMetadata, RawOutput

if TYPE_CHECKING:
    from modelserve.inference.loader import VerifiedFiles
    from modelserve.settings import ModelConfig

LOAD, LOADED, PREDICT, OUTPUT, ERROR = b"L", b"M", b"P", b"O", b"E"
_ABSENT, _RAW, _PICKLED = 0, 1, 2
_ARRAY = struct.Struct("<BBB")  # encoding, dtype string length, ndim
_DIM = struct.Struct("<Q")


class ModelProcessError(RuntimeError):
    """The model raised in its process (a runtime failure, answered like one in a thread)."""


def encode_load(files: VerifiedFiles, config: ModelConfig) -> bytes:
    return LOAD + pickle.dumps((files, config), protocol=pickle.HIGHEST_PROTOCOL)


def decode_load(message: bytes) -> tuple[VerifiedFiles, ModelConfig]:
    _expect(message, LOAD)
    files, config = pickle.loads(message[1:])  # the parent's own pipe
    return files, config


def encode_loaded(runtime_format: str, metadata: ModelMetadata) -> bytes:
    return LOADED + pickle.dumps((runtime_format, metadata), protocol=pickle.HIGHEST_PROTOCOL)


def decode_loaded(message: bytes) -> tuple[str, ModelMetadata]:
    """The child's format and metadata; its load failure raised as a ModelLoadError."""
    if message[:1] == ERROR:
        _, detail = _split_error(message)
        raise errors.ModelLoadError(detail)
    _expect(message, LOADED)
    runtime_format, metadata = pickle.loads(message[1:])
    return runtime_format, metadata


def encode_batch(batch: FloatArray) -> bytes:
    return b"".join((PREDICT, *_array_parts(batch)))


def decode_batch(message: bytes) -> FloatArray:
    _expect(message, PREDICT)
    batch, _ = _read_array(memoryview(message), 1)
    if batch is None:
        raise ValueError("a predict message without its batch")
    return np.asarray(batch, dtype=np.float64)


def encode_output(output: RawOutput) -> bytes:
    return b"".join((OUTPUT, *_array_parts(output.probabilities), *_array_parts(output.values)))


def decode_output(message: bytes) -> RawOutput:
    """The raw output of a call; the model's failure raised as it was raised in the child
    (a domain error as itself, anything else as a :class:`ModelProcessError`)."""
    if message[:1] == ERROR:
        raise _rebuild_error(*_split_error(message))
    _expect(message, OUTPUT)
    view = memoryview(message)
    probabilities, offset = _read_array(view, 1)
    values, _ = _read_array(view, offset)
    return RawOutput(probabilities=probabilities, values=values)


def encode_error(exc: BaseException) -> bytes:
    detail = exc.detail if isinstance(exc, errors.ModelserveError) else str(exc)
    return ERROR + f"{type(exc).__name__}\0{detail}".encode(errors="replace")


def _split_error(message: bytes) -> tuple[str, str]:
    name, _, detail = message[1:].decode(errors="replace").partition("\0")
    return name, detail


def _rebuild_error(name: str, detail: str) -> Exception:
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, errors.ModelserveError):
        error = cls.__new__(cls)  # its own __init__ takes the arguments it was built from
        errors.ModelserveError.__init__(error, detail)
        return error
    return ModelProcessError(f"{name}: {detail}")


def _expect(message: bytes, kind: bytes) -> None:
    if message[:1] != kind:
        raise ValueError(f"expected a {kind!r} message, got {message[:1]!r}")


def _array_parts(array: np.ndarray[Any, Any] | None) -> tuple[bytes | memoryview, ...]:
    if array is None:
        return (_ARRAY.pack(_ABSENT, 0, 0),)
    if array.dtype.hasobject:
        data = pickle.dumps(array, protocol=pickle.HIGHEST_PROTOCOL)
        return (_ARRAY.pack(_PICKLED, 0, 0), _DIM.pack(len(data)), data)
    array = np.ascontiguousarray(array)
    dtype = array.dtype.str.encode()
    shape = b"".join(_DIM.pack(n) for n in array.shape)
    return (_ARRAY.pack(_RAW, len(dtype), array.ndim), dtype, shape, array.data.cast("B"))


def _read_array(view: memoryview, offset: int) -> tuple[Any, int]:
    encoding, dtype_len, ndim = _ARRAY.unpack_from(view, offset)
    offset += _ARRAY.size
    if encoding == _ABSENT:
        return None, offset
    if encoding == _PICKLED:
        (size,) = _DIM.unpack_from(view, offset)
        offset += _DIM.size
        array = pickle.loads(view[offset : offset + size])
        return array, offset + size
    dtype = _dtype(bytes(view[offset : offset + dtype_len]))
    offset += dtype_len
    shape = struct.unpack_from(f"<{ndim}Q", view, offset)
    offset += ndim * _DIM.size
    count = math.prod(shape)
    # A copy: the caller may write into its arrays, and the message's buffer is read-only.
    array = np.frombuffer(view, dtype, count, offset).reshape(shape).copy()
    return array, offset + count * dtype.itemsize


@functools.cache
def _dtype(name: bytes) -> np.dtype[Any]:
    return np.dtype(name.decode())
