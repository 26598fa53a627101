"""Reference profiles: what the training data looked like, to compare live traffic against.

A profile holds, per feature, the mean, standard deviation, range and quantile bins (inner edges
and the share of training rows in each bin), plus the model's predicted-class mix and mean
confidence on that data. A categorical feature (a typed ``category``, ``string`` or ``bool``)
holds instead the share of each of its ``MAX_PROFILED_CATEGORIES`` most frequent values plus one
"other" bin for the rest; every feature of a typed model also holds its share of nulls, in a
last "missing" bin. Drift compares live shares with these bins by PSI, numeric or categorical.
``modelserve profile`` writes one as JSON; a model version loads it with ``profile:`` in its
config. Bins are by quantile, so every bin starts with about the same
share of rows; ties (discrete features) merge bins, and the shares record what really happened.
Only the first ``MAX_PROFILED_FEATURES`` features are profiled: drift memory and the number of
PSI series per version stay bounded however wide the model is.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import orjson

PROFILE_FORMAT = "modelserve-profile/1"
DEFAULT_BINS = 10
MAX_PROFILED_FEATURES = 100
MAX_PROFILED_CATEGORIES = 50
"""Most frequent values of a categorical feature given their own bin; the rest share one."""
_SHOWN_SHARES = 6
OTHER = "(other)"
MISSING = "(missing)"
"""Names of the "other" and "missing" bins where shares are shown by category."""

FloatArray = npt.NDArray[np.float64]
Category = str | int | float | bool
FeatureKind = Literal["numeric", "categorical"]


@dataclass(frozen=True, slots=True)
class FeatureProfile:
    """One feature of the reference data."""

    name: str
    mean: float | None
    """``None`` for a categorical feature (and a numeric one whose values are all null)."""
    std: float | None
    min: float | None
    max: float | None
    edges: tuple[float, ...]
    """Inner bin edges, ascending; a value equal to an edge falls in the bin to its right."""
    proportions: tuple[float, ...]
    """Share of reference rows in each bin: ``len(edges) + 1`` numeric ones, or one per
    category plus "other"; then, when ``missing`` is set, the "missing" bin."""
    kind: FeatureKind = "numeric"
    categories: tuple[Category, ...] = ()
    """A categorical feature's values with their own bin, most frequent first."""
    missing: float | None = None
    """Share of null values (typed models); ``None``: a float model, whose values never are."""

    def bin_counts(self, values: FloatArray) -> npt.NDArray[np.int64]:
        """How many of ``values`` fall in each bin.

        Categorical values come as codes: the index in ``categories``, ``len(categories)`` for
        any other value; NaN is a null (the "missing" bin).
        """
        size = len(self.proportions)
        if self.kind == "categorical":
            index = np.where(np.isnan(values), size - 1, values).astype(np.int64)
        else:
            index = np.searchsorted(np.asarray(self.edges), values, side="right")
            if self.missing is not None:
                index = np.where(np.isnan(values), size - 1, index)
        return np.bincount(index, minlength=size).astype(np.int64)

    def bin_names(self) -> list[str]:
        """A categorical feature's bins as shown: each category, then "other" (and "missing")."""
        names = [_shown(c) for c in self.categories] + [OTHER]
        return [*names, MISSING] if self.missing is not None else names

    def shares(self) -> dict[str, float]:
        """A categorical feature's reference share per bin name."""
        return dict(zip(self.bin_names(), self.proportions, strict=True))


def _shown(category: Category) -> str:
    """A category as JSON spells it (``true``, ``3``, ``Oslo``)."""
    return str(category).lower() if type(category) is bool else str(category)


@dataclass(frozen=True, slots=True)
class ReferenceProfile:
    """The reference a model version's live traffic is compared with."""

    rows: int
    features: tuple[FeatureProfile, ...]
    """The first ``MAX_PROFILED_FEATURES`` features of the model's input, in order."""
    n_features: int
    """Width of the model's input (can exceed the profiled features)."""
    class_mix: dict[str, float] | None = None
    """Share of each predicted label on the reference data (classifiers)."""
    mean_confidence: float | None = None
    """Mean top-1 probability on the reference data (classifiers with probabilities)."""
    created_at: str = ""
    source: dict[str, str] = field(default_factory=dict)
    """Where it came from (data file, model), for people reading the file."""

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def to_json(self) -> bytes:
        """The profile file's content (pretty-printed, stable key order)."""
        body: dict[str, Any] = {
            "format": PROFILE_FORMAT,
            "created_at": self.created_at,
            "source": self.source,
            "rows": self.rows,
            "n_features": self.n_features,
            "features": [_feature_json(f) for f in self.features],
            "class_mix": self.class_mix,
            "mean_confidence": self.mean_confidence,
        }
        return orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n"

    def describe(self) -> list[str]:
        """One line per profiled feature: numeric statistics, or category shares; nulls."""
        lines = [f"profile of {self.rows} rows:"]
        for f in self.features:
            if f.kind == "categorical":
                bins = [(k, v) for k, v in f.shares().items() if k != MISSING]
                shown = [f"{k} {v:.1%}" for k, v in bins[:_SHOWN_SHARES]]
                more = len(bins) - _SHOWN_SHARES
                text = f"categorical, {', '.join(shown)}" + (
                    f", ... {more} more" if more > 0 else ""
                )
            elif f.mean is None:
                text = "numeric, no values"
            else:
                text = (
                    f"numeric, mean {f.mean:.4g}, std {f.std:.4g}, range [{f.min:.4g}, {f.max:.4g}]"
                )
            null = f", {f.missing:.1%} null" if f.missing is not None else ""
            lines.append(f"  {f.name}: {text}{null}")
        return lines

    def check_fits(self, n_features: int, feature_names: Sequence[str] | None) -> None:
        """Raise ValueError unless the profile describes this model's inputs."""
        if self.n_features != n_features:
            raise ValueError(
                f"profile has {self.n_features} features, the model expects {n_features}"
            )
        profiled = len(self.features)
        if feature_names is not None and list(feature_names)[:profiled] != self.feature_names:
            raise ValueError(
                f"profile features {self.feature_names} differ from the model's "
                f"{list(feature_names)}"
            )


def _feature_json(feature: FeatureProfile) -> dict[str, Any]:
    body: dict[str, Any] = {"name": feature.name}
    if feature.kind == "categorical":
        body |= {"kind": "categorical", "categories": list(feature.categories)}
    else:
        body |= {
            "mean": feature.mean,
            "std": feature.std,
            "min": feature.min,
            "max": feature.max,
            "bin_edges": list(feature.edges),
        }
    body["proportions"] = list(feature.proportions)
    if feature.missing is not None:
        body["missing_share"] = feature.missing
    return body


def build_profile(
    matrix: FloatArray,
    feature_names: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    confidences: Sequence[float] | None = None,
    *,
    bins: int = DEFAULT_BINS,
    source: dict[str, str] | None = None,
) -> ReferenceProfile:
    """Profile ``matrix`` (rows x features) and, for classifiers, the predicted ``labels``."""
    if matrix.ndim != 2 or len(matrix) == 0:
        raise ValueError("the reference data must be a non-empty 2-D table")
    if not np.isfinite(matrix).all():
        raise ValueError("the reference data contains NaN or infinite values")
    _check_bins(bins)
    names = list(feature_names) if feature_names else [str(i) for i in range(matrix.shape[1])]
    if len(names) != matrix.shape[1]:
        raise ValueError(f"{len(names)} feature names for {matrix.shape[1]} columns")
    features = [
        _numeric(name, matrix[:, column], bins, len(matrix))
        for column, name in enumerate(names[:MAX_PROFILED_FEATURES])
    ]
    return _reference(len(matrix), features, matrix.shape[1], labels, confidences, source)


@dataclass(frozen=True, slots=True)
class TypedColumn:
    """One column of a typed model's reference data: plain Python values, ``None`` for null."""

    name: str
    kind: FeatureKind
    values: Sequence[Category | None]


def build_typed_profile(
    columns: Sequence[TypedColumn],
    labels: Sequence[str] | None = None,
    confidences: Sequence[float] | None = None,
    *,
    bins: int = DEFAULT_BINS,
    source: dict[str, str] | None = None,
) -> ReferenceProfile:
    """Profile a typed model's data: quantile bins for numbers, shares for categories, and
    the share of nulls of every feature."""
    rows = len(columns[0].values) if columns else 0
    if rows == 0 or any(len(c.values) != rows for c in columns):
        raise ValueError("the reference data must be a non-empty table of equal columns")
    _check_bins(bins)
    features = []
    for column in columns[:MAX_PROFILED_FEATURES]:
        present = [v for v in column.values if v is not None]
        missing = (rows - len(present)) / rows
        if column.kind == "categorical":
            features.append(_categorical(column.name, present, rows, missing))
        else:
            values = np.array(present, dtype=np.float64)
            features.append(_numeric(column.name, values, bins, rows, missing))
    return _reference(rows, features, len(columns), labels, confidences, source)


def _check_bins(bins: int) -> None:
    if bins < 2:
        raise ValueError("bins must be at least 2")


def _numeric(
    name: str, values: FloatArray, bins: int, rows: int, missing: float | None = None
) -> FeatureProfile:
    """Quantile bins of ``values`` (the non-null ones of ``rows``), shares of all rows."""
    if not len(values):
        return FeatureProfile(name, None, None, None, None, (), (0.0, 1.0), missing=missing)
    quantiles = np.linspace(0, 1, bins + 1)[1:-1]
    edges = np.unique(np.quantile(values, quantiles))
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    proportions = [float(c) for c in counts / rows]
    return FeatureProfile(
        name=name,
        mean=float(values.mean()),
        std=float(values.std()),
        min=float(values.min()),
        max=float(values.max()),
        edges=tuple(float(e) for e in edges),
        proportions=tuple(proportions if missing is None else [*proportions, missing]),
        missing=missing,
    )


def _categorical(
    name: str, present: Sequence[Category], rows: int, missing: float
) -> FeatureProfile:
    """The most frequent values' shares (ties in order of first appearance), then the rest's."""
    counted = Counter((type(v), v) for v in present)
    top = counted.most_common(MAX_PROFILED_CATEGORIES)
    kept = sum(n for _, n in top)
    shares = [n / rows for _, n in top] + [(len(present) - kept) / rows, missing]
    categories = tuple(value for (_, value), _ in top)
    return FeatureProfile(
        name, None, None, None, None, (), tuple(shares), "categorical", categories, missing
    )


def _reference(
    rows: int,
    features: list[FeatureProfile],
    n_features: int,
    labels: Sequence[str] | None,
    confidences: Sequence[float] | None,
    source: dict[str, str] | None,
) -> ReferenceProfile:
    class_mix = None
    if labels is not None:
        counted = Counter(labels)
        class_mix = {label: counted[label] / len(labels) for label in sorted(counted)}
    mean_confidence = float(np.mean(confidences)) if confidences else None
    return ReferenceProfile(
        rows=rows,
        features=tuple(features),
        n_features=n_features,
        class_mix=class_mix,
        mean_confidence=mean_confidence,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        source=dict(source or {}),
    )


def load_profile(path: Path) -> ReferenceProfile:
    """Read a profile file; ValueError (naming the file) when it is not a valid profile."""
    try:
        body = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot read profile {path}: {exc.strerror or exc}") from exc
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"profile {path} is not JSON: {exc}") from exc
    try:
        return _parse(body)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"profile {path} is not a {PROFILE_FORMAT} file: {exc}") from exc


def _parse(body: dict[str, Any]) -> ReferenceProfile:
    if body.get("format") != PROFILE_FORMAT:
        raise ValueError(f"format is {body.get('format')!r}")
    features = [_parse_feature(item) for item in body["features"]]
    if not features:
        raise ValueError("no features")
    class_mix = body.get("class_mix")
    confidence = body.get("mean_confidence")
    return ReferenceProfile(
        rows=int(body["rows"]),
        features=tuple(features),
        n_features=int(body.get("n_features", len(features))),
        class_mix={str(k): float(v) for k, v in class_mix.items()} if class_mix else None,
        mean_confidence=float(confidence) if confidence is not None else None,
        created_at=str(body.get("created_at", "")),
        source={str(k): str(v) for k, v in (body.get("source") or {}).items()},
    )


def _parse_feature(item: dict[str, Any]) -> FeatureProfile:
    name = str(item["name"])
    proportions = tuple(float(p) for p in item["proportions"])
    missing = None if item.get("missing_share") is None else float(item["missing_share"])
    extra = 0 if missing is None else 1
    if item.get("kind", "numeric") == "categorical":
        categories = tuple(item["categories"])
        if not all(type(c) in (str, int, float, bool) for c in categories):
            raise ValueError(f"feature {name!r}: categories must be strings, numbers or booleans")
        if len(proportions) != len(categories) + 1 + extra:
            raise ValueError(f"feature {name!r}: need a proportion per category, other, missing")
        return FeatureProfile(
            name, None, None, None, None, (), proportions, "categorical", categories, missing
        )
    edges = tuple(float(e) for e in item["bin_edges"])
    if len(proportions) != len(edges) + 1 + extra:
        raise ValueError(f"feature {name!r}: need one more proportion than edges")
    if list(edges) != sorted(edges):
        raise ValueError(f"feature {name!r}: bin_edges are not ascending")
    return FeatureProfile(
        name=name,
        mean=_optional_float(item.get("mean")),
        std=_optional_float(item.get("std")),
        min=_optional_float(item.get("min")),
        max=_optional_float(item.get("max")),
        edges=edges,
        proportions=proportions,
        missing=missing,
    )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
