"""Make a model version's reference profile from its training data (``modelserve profile``).

The data is read from CSV (with a header row), NumPy ``.npy``, or Parquet (needs the
``parquet`` extra). When the model declares feature names, those columns are taken by name
and any others (a target column, ids) are ignored; otherwise the first ``n_features`` columns
are used. The model predicts every row, exactly as served, for the reference class mix.

A model with typed features reads its columns by name from CSV or Parquet, each value checked
as a request's would be (an empty CSV cell is a null); categories, strings and booleans get
category shares, numbers quantile bins, and every feature its share of nulls.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelserve.errors import InvalidInputError
from modelserve.inference.preprocess import Row
from modelserve.inference.typed import TypedFeatureSchema, profile_kind
from modelserve.inference.types import Batch, FeatureSpec, FloatArray, ModelInfo
from modelserve.inference.version import PreparedVersion, build_version
from modelserve.observability.profile import (
    DEFAULT_BINS,
    ReferenceProfile,
    TypedColumn,
    build_profile,
    build_typed_profile,
)
from modelserve.settings import ModelConfig

_CHUNK_ROWS = 4096


def profile_model(
    config: ModelConfig, data: Path, bins: int = DEFAULT_BINS, *, require_sha256: bool = False
) -> ReferenceProfile:
    """Load the version of ``config``, read ``data`` and profile both (blocking).

    ``require_sha256`` comes from the configuration the model was taken from, if any.
    """
    return profile_version(config, data, bins, require_sha256=require_sha256)[0]


def profile_version(
    config: ModelConfig, data: Path, bins: int = DEFAULT_BINS, *, require_sha256: bool = False
) -> tuple[ReferenceProfile, ModelInfo]:
    """:func:`profile_model`, and the loaded version's description (its typed schema)."""
    prepared = build_version(
        config.model_copy(update={"profile": None}), require_sha256=require_sha256
    )
    return _profile(prepared, config, data, bins), prepared.info


def _profile(
    prepared: PreparedVersion, config: ModelConfig, data: Path, bins: int
) -> ReferenceProfile:
    source = {"data": data.name, "model": f"{config.name}:{config.version}"}
    schema = prepared.schema
    if isinstance(schema, TypedFeatureSchema):
        try:
            batch = schema.rows_to_array(read_typed_rows(data, schema.features))
        except InvalidInputError as exc:
            raise ValueError(f"{data.name}: {exc.detail}") from exc
        labels, confidences = _predicted(prepared, batch)
        columns = [
            TypedColumn(spec.name, profile_kind(spec), batch[:, j].tolist())
            for j, spec in enumerate(schema.features)
        ]
        return build_typed_profile(columns, labels, confidences, bins=bins, source=source)
    names = schema.feature_names
    matrix = read_table(data, names, schema.n_features)
    labels, confidences = _predicted(prepared, matrix)
    return build_profile(matrix, names, labels, confidences, bins=bins, source=source)


def _predicted(
    prepared: PreparedVersion, batch: Batch
) -> tuple[list[str] | None, list[float] | None]:
    """A classifier's predicted label and confidence of every row, computed as served."""
    if not prepared.spec.is_classifier:
        return None, None
    labels: list[str] = []
    confidences: list[float] = []
    predict = prepared.model_call
    for start in range(0, len(batch), _CHUNK_ROWS):
        chunk = batch[start : start + _CHUNK_ROWS]
        outputs = prepared.postprocessor.apply(predict(chunk))
        labels.extend(outputs.labels or [])
        confidences.extend(outputs.confidences() or [])
    return labels, confidences or None


def read_typed_rows(path: Path, features: Sequence[FeatureSpec]) -> list[Row]:
    """The rows of a CSV or Parquet file as named typed values (the schema checks them)."""
    names = [spec.name for spec in features]
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        rows = _typed_parquet(path, names)
    elif suffix in (".csv", ".txt"):
        rows = _typed_csv(path, features)
    else:
        raise ValueError(f"typed features are read from .csv or .parquet, not {path.name}")
    if not rows:
        raise ValueError(f"{path.name} has no rows")
    return rows


def _typed_csv(path: Path, features: Sequence[FeatureSpec]) -> list[Row]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        _columns(header, [spec.name for spec in features], len(features))
        reader.fieldnames = header
        return [
            {spec.name: _cell(spec, record[spec.name], i) for spec in features}
            for i, record in enumerate(reader)
        ]


def _cell(spec: FeatureSpec, text: str | None, row: int) -> object:
    """A CSV cell as the JSON value a client would send for it (empty: null)."""
    text = (text or "").strip()
    if not text:
        return None
    kind = spec.type
    if spec.categories is not None:
        spelled = {str(c).lower() if type(c) is bool else str(c): c for c in spec.categories}
        return spelled.get(text, text)
    try:
        if kind == "bool":
            return {"true": True, "1": True, "false": False, "0": False}[text.lower()]
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except (KeyError, ValueError):
        raise ValueError(f"row {row}: {spec.name} is a {kind} feature, got {text!r}") from None
    return text


def _typed_parquet(path: Path, names: list[str]) -> list[Row]:
    table = _parquet_module().read_table(path)
    _columns(table.column_names, names, len(names))
    return [
        {name: None if isinstance(v, float) and math.isnan(v) else v for name, v in row.items()}
        for row in table.select(names).to_pylist()
    ]


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


def _parquet_module() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ValueError(
            "reading Parquet needs pyarrow: pip install 'modelserve[parquet]' (or use CSV/.npy)"
        ) from exc
    return pq


def _read_parquet(path: Path, feature_names: list[str] | None, n_features: int) -> FloatArray:
    table = _parquet_module().read_table(path)
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
