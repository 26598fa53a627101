"""A scikit-learn, XGBoost or LightGBM model → the bytes of an equivalent ONNX model.

scikit-learn estimators and pipelines go through skl2onnx; XGBoost and LightGBM models (native
files or their sklearn wrappers) through onnxmltools. Both are in the ``modelserve[optimize]``
extra. The ONNX model takes one float32 tensor ``[n, n_features]`` and, for classifiers,
answers a ``label`` and a plain ``probabilities`` matrix (no ZipMap: it is slower to serve).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib

from modelserve.inference.artifact import read_artifact
from modelserve.inference.loader import FORMATS, detect_format
from modelserve.inference.runtimes.extras import import_extra

OPSET = 15
"""ONNX opset of the converted graph: the highest onnxmltools' tree converters support."""


class ConversionError(ValueError):
    """The model cannot be converted (an unsupported kind, or the converter failed)."""


@dataclass(frozen=True, slots=True)
class Conversion:
    """An ONNX model and what made it."""

    onnx: bytes
    source: str
    """What was converted, e.g. ``sklearn RandomForestClassifier`` or ``xgboost Booster``."""
    converter: str
    float32_splits: bool
    """The original compares features in float32 too (scikit-learn trees, XGBoost); LightGBM
    compares in float64, so an input within float32 rounding of a threshold may split apart."""


_ONNXMLTOOLS: dict[str, tuple[str, dict[str, Any], bool]] = {
    "xgboost": ("convert_xgboost", {}, True),
    "lightgbm": ("convert_lightgbm", {"zipmap": False}, False),
}
"""Library → onnxmltools' converter, its options, and whether the library splits in float32."""


def convert_to_onnx(path: Path, n_features: int, sha256: str | None = None) -> Conversion:
    """Convert the model file at ``path`` (its format detected as the server detects it)."""
    fmt = detect_format(path)
    runs_code = fmt in FORMATS and FORMATS[fmt].runs_code
    data = read_artifact(path, sha256, runs_code=runs_code, require_sha256=False).data
    if fmt in _ONNXMLTOOLS:
        return _onnxmltools(_native_booster(fmt, data), fmt, f"{fmt} Booster", n_features)
    if fmt != "sklearn":
        raise ConversionError(
            f"optimize converts scikit-learn, XGBoost and LightGBM models, not {fmt}"
        )
    model = joblib.load(io.BytesIO(data))  # a pickle: only files the user names are loaded
    library = type(model).__module__.split(".")[0]
    source = f"{library} {type(model).__name__}"
    if library in _ONNXMLTOOLS:
        return _onnxmltools(model, library, source, n_features)
    if library != "sklearn":
        raise ConversionError(
            f"optimize converts scikit-learn, XGBoost and LightGBM models, not {source}"
        )
    return _sklearn(model, source, n_features)


def _native_booster(fmt: str, data: bytes) -> Any:
    """The Booster of a native XGBoost (.json/.ubj) or LightGBM (.txt) model file."""
    library = import_extra(fmt, f"optimizing this {fmt} model")
    if fmt == "xgboost":
        booster = library.Booster()
        booster.load_model(bytearray(data))
        return booster
    return library.Booster(model_str=data.decode("utf-8"))


def _sklearn(model: Any, source: str, n_features: int) -> Conversion:
    import_extra("skl2onnx", "optimizing a scikit-learn model")
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    try:
        onx = to_onnx(
            model,
            initial_types=[("input", FloatTensorType([None, n_features]))],
            options={"zipmap": False},
            target_opset=OPSET,
        )
    except Exception as exc:
        raise ConversionError(f"skl2onnx cannot convert {source}: {exc}") from exc
    return Conversion(onx.SerializeToString(), source, "skl2onnx", float32_splits=True)


def _onnxmltools(model: Any, library: str, source: str, n_features: int) -> Conversion:
    """An XGBoost or LightGBM model (a Booster or an sklearn wrapper) through onnxmltools."""
    onnxmltools = import_extra("onnxmltools", f"optimizing this {library} model")
    from onnxmltools.convert.common.data_types import FloatTensorType

    converter, options, float32_splits = _ONNXMLTOOLS[library]
    try:
        onx = getattr(onnxmltools, converter)(
            model,
            initial_types=[("input", FloatTensorType([None, n_features]))],
            target_opset=OPSET,
            **options,
        )
    except Exception as exc:
        raise ConversionError(f"onnxmltools cannot convert {source}: {exc}") from exc
    return Conversion(onx.SerializeToString(), source, "onnxmltools", float32_splits=float32_splits)
