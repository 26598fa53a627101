"""Make a model version's reference profile from its training data (``modelserve profile``).

The data is read from CSV (with a header row), NumPy ``.npy``, or Parquet (needs the
``parquet`` extra). When the model declares feature names, those columns are taken by name
and any others (a target column, ids) are ignored; otherwise the first ``n_features`` columns
are used. The model predicts every row, exactly as served, for the reference class mix.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from modelserve.inference.types import FloatArray
from modelserve.inference.version import build_version
from modelserve.observability.profile import DEFAULT_BINS, ReferenceProfile, build_profile
from modelserve.settings import ModelConfig

_CHUNK_ROWS = 4096


def profile_model(
    config: ModelConfig, data: Path, bins: int = DEFAULT_BINS, *, require_sha256: bool = False
) -> ReferenceProfile:
    """Load the version of ``config``, read ``data`` and profile both (blocking).

    ``require_sha256`` comes from the configuration the model was taken from, if any.
    """
    prepared = build_version(
        config.model_copy(update={"profile": None}), require_sha256=require_sha256
    )
    names = prepared.schema.feature_names
    matrix = read_table(data, names, prepared.schema.n_features)
    labels: list[str] | None = None
    confidences: list[float] | None = None
    if prepared.spec.is_classifier:
        labels, confidences = [], []
        for start in range(0, len(matrix), _CHUNK_ROWS):
            chunk = matrix[start : start + _CHUNK_ROWS]
            outputs = prepared.postprocessor.apply(prepared.runtime.predict(chunk))
            labels.extend(outputs.labels or [])
            confidences.extend(outputs.confidences() or [])
    return build_profile(
        matrix,
        names,
        labels,
        confidences or None,
        bins=bins,
        source={"data": data.name, "model": f"{config.name}:{config.version}"},
    )


def read_table(path: Path, feature_names: list[str] | None, n_features: int) -> FloatArray:
    """The feature columns of a CSV, .npy or Parquet file as a float64 matrix."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        matrix = _read_npy(path, n_features)
    elif suffix == ".parquet":
        matrix = _read_parquet(path, feature_names, n_features)
    elif suffix in (".csv", ".txt"):
        matrix = _read_csv(path, feature_names, n_features)
    else:
        raise ValueError(f"unsupported data file {path.name}: use .csv, .npy or .parquet")
    if len(matrix) == 0:
        raise ValueError(f"{path.name} has no rows")
    if not np.isfinite(matrix).all():
        raise ValueError(f"{path.name} has empty, NaN or infinite feature values")
    return matrix


def _columns(header: list[str], feature_names: list[str] | None, n_features: int) -> list[int]:
    if feature_names:
        missing = [name for name in feature_names if name not in header]
        if missing:
            raise ValueError(f"data lacks feature column(s) {', '.join(missing)}")
        return [header.index(name) for name in feature_names]
    if len(header) < n_features:
        raise ValueError(f"data has {len(header)} columns, the model needs {n_features}")
    return list(range(n_features))


def _read_csv(path: Path, feature_names: list[str] | None, n_features: int) -> FloatArray:
    with path.open(newline="") as handle:
        header = [name.strip() for name in next(csv.reader(handle), [])]
    columns = _columns(header, feature_names, n_features)
    try:
        matrix = np.loadtxt(path, delimiter=",", skiprows=1, usecols=columns, ndmin=2)
    except ValueError as exc:
        raise ValueError(f"{path.name}: feature columns must be numbers ({exc})") from exc
    return np.asarray(matrix, dtype=np.float64)


def _read_npy(path: Path, n_features: int) -> FloatArray:
    array = np.load(path, allow_pickle=False)
    if array.ndim != 2 or array.shape[1] < n_features:
        raise ValueError(f"{path.name} has shape {array.shape}; need rows x {n_features}")
    return np.asarray(array[:, :n_features], dtype=np.float64)


def _read_parquet(path: Path, feature_names: list[str] | None, n_features: int) -> FloatArray:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ValueError(
            "reading Parquet needs pyarrow: pip install 'modelserve[parquet]' (or use CSV/.npy)"
        ) from exc
    table = pq.read_table(path)
    columns = _columns(table.column_names, feature_names, n_features)
    return np.column_stack(
        [table.column(i).to_numpy().astype(np.float64) for i in columns]
    ).reshape(table.num_rows, len(columns))


def select_model(models: list[ModelConfig], spec: str) -> ModelConfig:
    """The configured version ``spec`` names: ``NAME`` (its default version) or ``NAME:VERSION``."""
    name, _, version = spec.partition(":")
    candidates = [m for m in models if m.name == name]
    if not candidates:
        known = ", ".join(sorted({m.name for m in models})) or "none"
        raise ValueError(f"no model {name!r} in the config; configured: {known}")
    if version:
        for model in candidates:
            if model.version == version:
                return model
        raise ValueError(f"model {name!r} has no version {version!r}")
    return next((m for m in candidates if m.default), candidates[0])
