"""Shared by the gradient-boosting runtimes: one number per row → two class columns."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from modelserve.inference.types import FloatArray


def binary_columns(positive: npt.NDArray[Any]) -> FloatArray:
    """``[1 - p, p]`` per row, as the libraries' ``predict_proba`` answers for binary models.

    ``1 - p`` is computed in the library's own dtype (float32 for XGBoost) before widening, so
    the served numbers are the library's to the last bit.
    """
    p = np.asarray(positive).reshape(-1)
    return np.column_stack((1 - p, p)).astype(np.float64)
