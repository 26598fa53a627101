"""What a model version takes and gives, in protocol-neutral terms (V2 metadata is built on it).

Inputs and outputs are tensors with a name, a datatype (the Open Inference Protocol names:
``FP64``, ``BYTES``) and a shape whose first dimension is the batch (``-1``). A served version
takes one ``input`` tensor of shape ``[-1, n_features]`` (a version with typed features: one
``[-1]`` tensor per feature, of its type's datatype); it answers ``label`` (BYTES, one
per row) and ``probabilities`` (``[-1, n_classes]``) when it classifies with probabilities,
``label`` alone when it classifies without them, or ``value`` (``[-1]``, or ``[-1, k]`` for
k outputs) when it regresses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from modelserve.inference.types import FeatureSpec, ModelStatus, OutputSpec

PLATFORM_BY_FORMAT = {
    "sklearn": "sklearn_joblib",
    "skops": "sklearn_skops",
    "onnx": "onnx_onnxv1",
    "torchscript": "pytorch_torchscript",
}
"""The platform string of each format; a format not listed is named ``<format>``."""
BATCH = -1
INPUT = "input"
LABEL = "label"
PROBABILITIES = "probabilities"
VALUE = "value"


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output: name, datatype, shape (``-1`` = the batch dimension)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class VersionMetadata:
    """A model version as metadata endpoints describe it.

    ``inputs`` and ``outputs`` are empty until the version has loaded (they are learnt from
    the artifact and its warm-up).
    """

    name: str
    version: str
    versions: list[str]
    """Every configured version of the model."""
    platform: str
    status: ModelStatus
    task: str | None
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)
    feature_names: list[str] | None = None
    labels: list[str] | None = None
    """Probability columns of a classifier, in output order."""


def platform_of(fmt: str) -> str:
    return PLATFORM_BY_FORMAT.get(fmt, fmt)


def input_specs(n_features: int) -> list[TensorSpec]:
    return [TensorSpec(INPUT, "FP64", (BATCH, n_features))]


_DATATYPE_OF_TYPE = {"float": "FP64", "int": "INT64", "bool": "BOOL", "string": "BYTES"}


def feature_input_specs(features: Sequence[FeatureSpec]) -> list[TensorSpec]:
    """One ``[-1]`` tensor per typed feature: FP64, INT64, BOOL or BYTES (strings, categories
    of strings; categories of numbers take the numbers' datatype)."""
    return [TensorSpec(f.name, _datatype(f), (BATCH,)) for f in features]


def _datatype(feature: FeatureSpec) -> str:
    if feature.type != "category":
        return _DATATYPE_OF_TYPE[feature.type]
    kinds = {type(c) for c in feature.categories or ()}
    if kinds == {bool}:
        return "BOOL"
    if kinds == {int}:
        return "INT64"
    return "FP64" if kinds <= {int, float} else "BYTES"


def output_specs(spec: OutputSpec) -> list[TensorSpec]:
    if spec.class_labels is not None:
        return [
            TensorSpec(LABEL, "BYTES", (BATCH,)),
            TensorSpec(PROBABILITIES, "FP64", (BATCH, len(spec.class_labels))),
        ]
    if spec.is_classifier:
        return [TensorSpec(LABEL, "BYTES", (BATCH,))]
    shape = (BATCH,) if spec.value_width is None else (BATCH, spec.value_width)
    return [TensorSpec(VALUE, "FP64", shape)]
