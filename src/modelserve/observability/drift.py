"""Live drift signals: a bounded window of recent rows compared with the reference profile.

Adding rows is a copy into preallocated ring buffers (cheap enough for the request path);
the comparison (per-feature PSI, class-mix shift, mean confidence) runs only when asked, from
the periodic task or GET /stats.

PSI (population stability index) of a feature is ``sum((a - e) * ln(a / e))`` over its bins,
``e`` the reference share and ``a`` the recent share of rows in each bin (both floored at
``PSI_FLOOR`` so an empty bin does not make it infinite). Rules of thumb: below 0.1 stable,
0.1 to 0.2 moderate shift, above 0.2 a real shift.

A categorical feature's bins are its reference categories, one "other" bin for every value
the reference did not list (an unknown category the model ignores, a rare one) and one
"missing" bin for nulls; a numeric feature of a typed model has the "missing" bin too. So the
same PSI, with the same rules of thumb, covers category-frequency shift (a city that doubles
its share, a new city, more nulls) beside numeric shift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from modelserve.observability.profile import ReferenceProfile

PSI_FLOOR = 1e-4
MAX_CLASSES = 256
"""Distinct labels tracked per version; more (a misconfigured model) are pooled as ``other``."""

FloatArray = npt.NDArray[np.float64]


def psi(expected: Sequence[float] | FloatArray, actual: Sequence[float] | FloatArray) -> float:
    """Population stability index between two distributions over the same bins."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), PSI_FLOOR)
    a = np.maximum(np.asarray(actual, dtype=np.float64), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def total_variation(expected: dict[str, float], actual: dict[str, float]) -> float:
    """Half the L1 distance between two label mixes: the share of predictions that moved."""
    labels = set(expected) | set(actual)
    return 0.5 * sum(abs(expected.get(k, 0.0) - actual.get(k, 0.0)) for k in labels)


@dataclass(frozen=True, slots=True)
class DriftReport:
    """Drift figures of one version's recent window (``None``: not measurable yet)."""

    window_rows: int
    psi: dict[str, float]
    """PSI per feature; empty without a profile or with fewer than ``min_rows`` rows."""
    category_shares: dict[str, dict[str, float]]
    """Categorical features: the window's share of each reference category, "other" and
    "missing" (measured when PSI is)."""
    class_mix: dict[str, float]
    """Share of each predicted label in the window (classifiers)."""
    class_mix_shift: float | None
    mean_confidence: float | None


class DriftWindow:
    """The last ``capacity`` rows a version served (their first ``n_features`` columns), with
    their predicted labels and confidences."""

    def __init__(self, n_features: int, capacity: int) -> None:
        self.capacity = capacity
        self._rows = np.zeros((capacity, n_features))
        self._labels = np.full(capacity, -1, dtype=np.int16)
        self._confidences = np.full(capacity, np.nan)
        self._next = 0
        self._filled = 0
        self._label_index: dict[str, int] = {}
        self._label_names: list[str] = []

    @property
    def rows(self) -> int:
        return self._filled

    def add(
        self,
        matrix: FloatArray,
        labels: Sequence[str] | None = None,
        confidences: Sequence[float | None] | FloatArray | None = None,
        label_ids: npt.NDArray[np.intp] | None = None,
        label_names: Sequence[str] = (),
    ) -> None:
        """Remember ``matrix``'s rows (and their predicted labels/confidences) as the newest.

        ``label_ids`` (each row's label as an index into ``label_names``), when given, let
        the labels be mapped per distinct label and taken with one array operation."""
        n, width = len(matrix), self._rows.shape[1]
        if n == 0 or matrix.shape[1] < width:
            return
        matrix = matrix[:, :width]  # a view: only the profiled features are kept
        if n == 1:  # the common single-row request: no temporary arrays
            i = self._next
            self._rows[i] = matrix[0]
            self._labels[i] = self._id(labels[0]) if labels else -1
            confidence = confidences[0] if confidences else None
            self._confidences[i] = np.nan if confidence is None else confidence
            self._next = (i + 1) % self.capacity
            self._filled = min(self.capacity, self._filled + 1)
            return
        skip = max(0, n - self.capacity)  # only the newest rows can stay
        rows = matrix[skip:]
        if label_ids is not None:
            window_ids = self._ids_of(label_ids[skip:], label_names)
        elif labels is not None:
            window_ids = self._ids(labels[skip:])
        else:
            window_ids = np.full(len(rows), -1, np.int16)
        confidence_values = (
            # float64 conversion turns None into NaN
            np.array(confidences[skip:], dtype=np.float64)
            if confidences is not None
            else np.full(len(rows), np.nan)
        )
        start, count = self._next, len(rows)
        first = min(count, self.capacity - start)
        for target, source in (
            (slice(start, start + first), slice(0, first)),
            (slice(0, count - first), slice(first, count)),
        ):
            self._rows[target] = rows[source]
            self._labels[target] = window_ids[source]
            self._confidences[target] = confidence_values[source]
        self._next = (start + count) % self.capacity
        self._filled = min(self.capacity, self._filled + count)

    def report(self, profile: ReferenceProfile | None, min_rows: int) -> DriftReport:
        """Compare the window with ``profile``; PSI only once ``min_rows`` rows are in."""
        n = self._filled
        rows = self._rows[:n]
        psi_by_feature: dict[str, float] = {}
        shares: dict[str, dict[str, float]] = {}
        if profile is not None and n >= min(min_rows, self.capacity):
            for column, feature in enumerate(profile.features):
                actual = feature.bin_counts(rows[:, column]) / n
                psi_by_feature[feature.name] = round(psi(feature.proportions, actual), 6)
                if feature.kind == "categorical":
                    names = feature.bin_names()
                    shares[feature.name] = {
                        name: round(float(a), 6) for name, a in zip(names, actual, strict=True)
                    }
        class_mix = self._class_mix()
        shift = None
        if profile is not None and profile.class_mix and class_mix:
            shift = round(total_variation(profile.class_mix, class_mix), 6)
        confidences = self._confidences[:n]
        known = confidences[~np.isnan(confidences)]
        mean_confidence = round(float(known.mean()), 6) if len(known) else None
        return DriftReport(n, psi_by_feature, shares, class_mix, shift, mean_confidence)

    def _class_mix(self) -> dict[str, float]:
        labels = self._labels[: self._filled]
        labels = labels[labels >= 0]
        if not len(labels):
            return {}
        counts = np.bincount(labels, minlength=len(self._label_names))
        return {
            name: round(float(counts[i]) / len(labels), 6)
            for i, name in enumerate(self._label_names)
            if counts[i]
        }

    def _ids(self, labels: Sequence[str]) -> npt.NDArray[np.int16]:
        """The id of each label; each distinct label is looked up once, in order of appearance
        (the order in which new labels get their ids)."""
        ids = {label: self._id(label) for label in dict.fromkeys(labels)}
        return np.fromiter(map(ids.__getitem__, labels), dtype=np.int16, count=len(labels))

    def _ids_of(
        self, label_ids: npt.NDArray[np.intp], label_names: Sequence[str]
    ) -> npt.NDArray[np.int16]:
        """:meth:`_ids` of ``label_names[i] for i in label_ids``, with array operations: the
        labels present get their ids in order of first appearance, as there."""
        present, first = np.unique(label_ids, return_index=True)
        table = np.full(len(label_names), -1, dtype=np.int16)
        for position in np.argsort(first, kind="stable").tolist():
            label = int(present[position])
            table[label] = self._id(label_names[label])
        return table[label_ids]

    def _id(self, label: str) -> int:
        found = self._label_index.get(label)
        return self._new_label(label) if found is None else found

    def _new_label(self, label: str) -> int:
        if len(self._label_names) >= MAX_CLASSES - 1:
            label = "other"
            if label in self._label_index:
                return self._label_index[label]
        self._label_index[label] = len(self._label_names)
        self._label_names.append(label)
        return self._label_index[label]
