"""Reference profiles: what the training data looked like, to compare live traffic against.

A profile holds, per feature, the mean, standard deviation, range and quantile bins (inner edges
and the share of training rows in each bin), plus the model's predicted-class mix and mean
confidence on that data. ``modelserve profile`` writes one as JSON; a model version loads it
with ``profile:`` in its config. Bins are by quantile, so every bin starts with about the same
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
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

PROFILE_FORMAT = "modelserve-profile/1"
DEFAULT_BINS = 10
MAX_PROFILED_FEATURES = 100

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class FeatureProfile:
    """One feature of the reference data."""

    name: str
    mean: float
    std: float
    min: float
    max: float
    edges: tuple[float, ...]
    """Inner bin edges, ascending; a value equal to an edge falls in the bin to its right."""
    proportions: tuple[float, ...]
    """Share of reference rows in each of the ``len(edges) + 1`` bins."""

    def bin_counts(self, values: FloatArray) -> npt.NDArray[np.int64]:
        """How many of ``values`` fall in each bin."""
        index = np.searchsorted(np.asarray(self.edges), values, side="right")
        return np.bincount(index, minlength=len(self.proportions)).astype(np.int64)


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
            "features": [
                {
                    "name": f.name,
                    "mean": f.mean,
                    "std": f.std,
                    "min": f.min,
                    "max": f.max,
                    "bin_edges": list(f.edges),
                    "proportions": list(f.proportions),
                }
                for f in self.features
            ],
            "class_mix": self.class_mix,
            "mean_confidence": self.mean_confidence,
        }
        return orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n"

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
    if bins < 2:
        raise ValueError("bins must be at least 2")
    names = list(feature_names) if feature_names else [str(i) for i in range(matrix.shape[1])]
    if len(names) != matrix.shape[1]:
        raise ValueError(f"{len(names)} feature names for {matrix.shape[1]} columns")
    quantiles = np.linspace(0, 1, bins + 1)[1:-1]
    features = []
    for column, name in enumerate(names[:MAX_PROFILED_FEATURES]):
        values = matrix[:, column]
        edges = np.unique(np.quantile(values, quantiles))
        counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
        features.append(
            FeatureProfile(
                name=name,
                mean=float(values.mean()),
                std=float(values.std()),
                min=float(values.min()),
                max=float(values.max()),
                edges=tuple(float(e) for e in edges),
                proportions=tuple(float(c) for c in counts / len(values)),
            )
        )
    class_mix = None
    if labels is not None:
        counted = Counter(labels)
        class_mix = {label: counted[label] / len(labels) for label in sorted(counted)}
    mean_confidence = float(np.mean(confidences)) if confidences else None
    return ReferenceProfile(
        rows=len(matrix),
        features=tuple(features),
        n_features=matrix.shape[1],
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
    features = []
    for item in body["features"]:
        edges = tuple(float(e) for e in item["bin_edges"])
        proportions = tuple(float(p) for p in item["proportions"])
        if len(proportions) != len(edges) + 1:
            raise ValueError(f"feature {item['name']!r}: need one more proportion than edges")
        if list(edges) != sorted(edges):
            raise ValueError(f"feature {item['name']!r}: bin_edges are not ascending")
        features.append(
            FeatureProfile(
                name=str(item["name"]),
                mean=float(item["mean"]),
                std=float(item["std"]),
                min=float(item["min"]),
                max=float(item["max"]),
                edges=edges,
                proportions=proportions,
            )
        )
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
