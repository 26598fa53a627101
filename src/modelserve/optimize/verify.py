"""Prove a converted model answers like the original on a sample, or say where it does not.

Classifiers: the predicted class of every row must be identical, and every probability within
``tolerance`` (absolute) of the original's. A row whose two most likely classes the original
scores within ``tolerance`` of each other is a tie: either class is within the tolerance, so
such rows are counted apart and do not fail the check. Regressors: every value within
``tolerance`` relative to the original's magnitude (absolute below 1).

Without ``--data`` the sample is drawn uniformly from the range the model's own trees split
on (every threshold of every tree, widened by 10% on each side). For models that compare in
float32 like ONNX Runtime (scikit-learn trees, XGBoost) a quarter of the rows also sit exactly
on thresholds, the boundary cases. LightGBM compares in float64: a value strictly between a
threshold and its float32 rounding (a gap of about 1e-7 relative) goes the other way in ONNX
Runtime, so rows placed on the float32 thresholds would disagree by construction and are not
drawn; real data (``--data``) shows whether traffic comes that close.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from modelserve.inference.runtimes.base import Runtime
from modelserve.inference.types import FloatArray

_TREE_OPS = {"TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble"}
_EDGE_SHARE = 0.25
"""Share of a drawn sample placed exactly on split thresholds."""


class VerificationError(ValueError):
    """The converted model cannot be compared with the original at all."""


@dataclass(frozen=True, slots=True)
class Verification:
    """How closely the converted model matched the original on the sample."""

    rows: int
    tolerance: float
    worst_difference: float
    class_mismatches: int
    ties: int

    @property
    def passed(self) -> bool:
        return self.class_mismatches == 0 and self.worst_difference <= self.tolerance

    def describe(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        text = (
            f"verification {verdict} on {self.rows} rows: worst difference"
            f" {self.worst_difference:.3g} (tolerance {self.tolerance:g}),"
            f" {self.class_mismatches} rows with a different class"
        )
        return text + (f", {self.ties} tied rows not compared" if self.ties else "")


def verify(
    original: Runtime, candidate: Runtime, sample: FloatArray, tolerance: float
) -> Verification:
    """Run both runtimes on ``sample`` and compare their answers."""
    want, got = original.predict(sample), candidate.predict(sample)
    if want.probabilities is not None:
        if got.probabilities is None or got.probabilities.shape != want.probabilities.shape:
            raise VerificationError("the converted model does not answer the same probabilities")
        reference, answer = want.probabilities, got.probabilities
        worst = float(np.max(np.abs(reference - answer), initial=0.0))
        top_two = np.sort(reference, axis=1)[:, -2:] if reference.shape[1] > 1 else None
        tied = (
            np.zeros(len(reference), bool)
            if top_two is None
            else (top_two[:, 1] - top_two[:, 0]) <= tolerance
        )
        differs = reference.argmax(axis=1) != answer.argmax(axis=1)
        mismatches = int(np.count_nonzero(differs & ~tied))
        return Verification(len(sample), tolerance, worst, mismatches, int(np.count_nonzero(tied)))
    if want.values is None or got.values is None:
        raise VerificationError("the converted model does not answer values like the original")
    reference = np.asarray(want.values, np.float64).reshape(len(sample), -1)
    answer = np.asarray(got.values, np.float64).reshape(len(sample), -1)
    if reference.shape != answer.shape:
        raise VerificationError("the converted model answers a different output shape")
    scale = np.maximum(np.abs(reference), 1.0)
    worst = float(np.max(np.abs(reference - answer) / scale, initial=0.0))
    return Verification(len(sample), tolerance, worst, 0, 0)


def draw_sample(
    onnx_model: bytes, n_features: int, rows: int, seed: int, *, on_thresholds: bool
) -> FloatArray:
    """Rows from the ranges the converted trees split on (see the module docstring)."""
    thresholds = split_thresholds(onnx_model, n_features)
    rng = np.random.default_rng(seed)
    low = np.array([min(t, default=0.0) for t in thresholds])
    high = np.array([max(t, default=1.0) for t in thresholds])
    margin = np.maximum((high - low) * 0.1, 1e-3)
    sample = rng.uniform(low - margin, high + margin, size=(rows, n_features))
    edges = int(rows * _EDGE_SHARE) if on_thresholds else 0
    for i in range(edges):
        column = i % n_features
        if thresholds[column]:
            sample[i, column] = thresholds[column][rng.integers(len(thresholds[column]))]
    return sample


def split_thresholds(onnx_model: bytes, n_features: int) -> list[list[float]]:
    """Every split threshold of every tree, per input column.

    Raises VerificationError when the trees do not read the model input directly (a pipeline
    that scales first): their thresholds are not in input units, so ``--data`` is needed.
    """
    graph = onnx.load_from_string(onnx_model).graph
    inputs = {i.name for i in graph.input}
    passthrough = {node.output[0]: node.input[0] for node in graph.node if node.op_type == "Cast"}
    per_feature: list[set[float]] = [set() for _ in range(n_features)]
    trees = [node for node in graph.node if node.op_type in _TREE_OPS]
    if not trees:
        raise VerificationError("no tree ensemble in the converted model: give --data")
    for node in trees:
        source = node.input[0]
        while source in passthrough:
            source = passthrough[source]
        if source not in inputs:
            raise VerificationError(
                "the trees read a transformed input (a pipeline step before them): give --data"
            )
        attributes = {a.name: a for a in node.attribute}
        if "nodes_featureids" not in attributes:
            raise VerificationError(f"{node.op_type} without nodes_featureids: give --data")
        features = list(attributes["nodes_featureids"].ints)
        values = list(attributes["nodes_values"].floats) if "nodes_values" in attributes else []
        modes = [m.decode() for m in attributes["nodes_modes"].strings]
        for feature, value, mode in zip(features, values, modes, strict=False):
            if mode != "LEAF" and 0 <= feature < n_features:
                per_feature[feature].add(float(value))
    return [sorted(values) for values in per_feature]
