"""Turning raw model scores into class probabilities."""

from __future__ import annotations

import numpy as np

from modelserve.inference.types import FloatArray


def softmax(logits: FloatArray) -> FloatArray:
    """Row-wise softmax, shifted by the row maximum for numerical stability."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    result: FloatArray = shifted / shifted.sum(axis=1, keepdims=True)
    return result


def to_probabilities(scores: FloatArray) -> FloatArray:
    """Keep rows that already are distributions; softmax anything else (logits)."""
    if scores.ndim == 1:
        scores = scores.reshape(-1, 1)
    if np.all(scores >= 0) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-4):
        return scores
    return softmax(scores)
