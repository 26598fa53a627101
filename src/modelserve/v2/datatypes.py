"""V2 tensor datatypes and their numpy dtypes (always little-endian, as the protocol says)."""

from __future__ import annotations

from typing import Final

import numpy as np

from modelserve.errors import UnknownDatatypeError

BYTES: Final = "BYTES"

NUMPY_DTYPES: Final[dict[str, np.dtype[np.generic]]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    BYTES: np.dtype(np.object_),
}
"""Every datatype the protocol defines, in the order the specification lists them."""

DATATYPES: Final = tuple(NUMPY_DTYPES)


def numpy_dtype(datatype: str) -> np.dtype[np.generic]:
    """The numpy dtype of a V2 datatype, or UnknownDatatypeError naming the valid ones."""
    try:
        return NUMPY_DTYPES[datatype]
    except KeyError:
        raise UnknownDatatypeError(datatype, DATATYPES) from None


def is_integer(datatype: str) -> bool:
    return datatype.startswith(("INT", "UINT"))


def is_float(datatype: str) -> bool:
    return datatype.startswith("FP")
