"""PSI and the rolling drift window against a reference profile."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_iris

from modelserve.observability.drift import DriftWindow, psi, total_variation
from modelserve.observability.profile import (
    ReferenceProfile,
    TypedColumn,
    build_profile,
    build_typed_profile,
)

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS = np.asarray(load_iris().data, dtype=np.float64)


@pytest.fixture(scope="module")
def iris_profile() -> ReferenceProfile:
    labels = [["setosa", "versicolor", "virginica"][t] for t in load_iris().target]
    return build_profile(IRIS, FEATURES, labels, [0.9] * len(labels))


def _sample(rows: int, seed: int = 0) -> np.ndarray:
    return IRIS[np.random.default_rng(seed).integers(0, len(IRIS), rows)]


def test_psi_is_zero_for_identical_distributions() -> None:
    """Identical bin shares give a PSI of exactly zero."""
    assert psi([0.25, 0.25, 0.5], [0.25, 0.25, 0.5]) == 0.0


def test_psi_is_finite_when_a_bin_empties() -> None:
    """An empty bin is floored, so PSI stays a (large) finite number."""
    value = psi([0.5, 0.5], [1.0, 0.0])

    assert np.isfinite(value)
    assert value > 1


def test_total_variation_is_the_share_that_moved() -> None:
    """Moving 30% of predictions from one label to another gives 0.3."""
    assert total_variation({"a": 0.5, "b": 0.5}, {"a": 0.2, "b": 0.8}) == pytest.approx(0.3)


def test_window_psi_is_near_zero_for_traffic_drawn_from_the_training_data(
    iris_profile: ReferenceProfile,
) -> None:
    """1000 rows resampled from iris stay well under the 0.2 threshold on every feature."""
    window = DriftWindow(4, capacity=1000)
    window.add(_sample(1000))

    report = window.report(iris_profile, min_rows=100)

    assert set(report.psi) == set(FEATURES)
    assert max(report.psi.values()) < 0.05


def test_window_psi_crosses_the_threshold_for_shifted_traffic(
    iris_profile: ReferenceProfile,
) -> None:
    """Adding 1.5 cm to petal length pushes that feature's PSI over 0.2, and only that one."""
    window = DriftWindow(4, capacity=1000)
    window.add(_sample(1000) + np.array([0.0, 0.0, 1.5, 0.0]))

    report = window.report(iris_profile, min_rows=100)

    assert report.psi["petal_length"] > 0.2
    assert max(v for k, v in report.psi.items() if k != "petal_length") < 0.05


def test_window_keeps_only_the_newest_rows(iris_profile: ReferenceProfile) -> None:
    """After shifted rows are pushed out by normal ones, PSI returns near zero."""
    window = DriftWindow(4, capacity=200)
    window.add(_sample(200) + 5.0)
    for seed in range(4):
        window.add(_sample(70, seed))  # 280 rows in pieces: the ring wraps

    report = window.report(iris_profile, min_rows=100)

    assert window.rows == 200
    assert max(report.psi.values()) < 0.1


def test_window_larger_batch_than_capacity_keeps_its_last_rows() -> None:
    """One add bigger than the window keeps its newest ``capacity`` rows."""
    window = DriftWindow(1, capacity=10)
    window.add(np.arange(25, dtype=np.float64).reshape(-1, 1))

    profile = build_profile(np.arange(15, 25, dtype=np.float64).reshape(-1, 1))
    report = window.report(profile, min_rows=10)

    assert window.rows == 10
    assert report.psi["0"] == pytest.approx(0.0)


def test_window_reports_no_psi_before_min_rows(iris_profile: ReferenceProfile) -> None:
    """Fewer rows than min_rows give no PSI (too noisy to judge)."""
    window = DriftWindow(4, capacity=1000)
    window.add(_sample(99))

    report = window.report(iris_profile, min_rows=100)

    assert report.psi == {}
    assert report.window_rows == 99


def test_window_reports_no_psi_without_a_profile() -> None:
    """Without a reference profile there is nothing to compare with."""
    window = DriftWindow(4, capacity=100)
    window.add(_sample(100))

    assert window.report(None, min_rows=10).psi == {}


def test_window_class_mix_and_shift_follow_the_labels(iris_profile: ReferenceProfile) -> None:
    """Only setosa predictions give a setosa-only mix, two thirds away from iris' thirds."""
    window = DriftWindow(4, capacity=100)
    window.add(_sample(100), ["setosa"] * 100, [0.8] * 100)

    report = window.report(iris_profile, min_rows=10)

    assert report.class_mix == {"setosa": 1.0}
    assert report.class_mix_shift == pytest.approx(2 / 3, abs=1e-4)
    assert report.mean_confidence == pytest.approx(0.8)


def test_window_mean_confidence_ignores_rows_without_one() -> None:
    """Rows with no confidence (label-only models) do not count toward the mean."""
    window = DriftWindow(1, capacity=10)
    window.add(np.zeros((3, 1)), ["a", "a", "b"], [0.6, None, 1.0])

    assert window.report(None, min_rows=1).mean_confidence == pytest.approx(0.8)


def test_window_of_a_narrower_profile_reads_the_first_columns() -> None:
    """A window for 1 profiled feature keeps only column 0 of wider rows."""
    window = DriftWindow(1, capacity=10)
    window.add(np.column_stack([np.arange(10.0), np.full(10, 99.0)]))

    report = window.report(build_profile(np.arange(10.0).reshape(-1, 1)), min_rows=10)

    assert report.psi == {"0": 0.0}


def test_window_batch_labels_and_missing_confidences_are_kept_row_by_row() -> None:
    """A many-row batch keeps each row's label and confidence (None counts as unknown)."""
    window = DriftWindow(n_features=2, capacity=100)
    labels = ["b", "a", "b", "c"] * 10
    confidences: list[float | None] = [0.5, None, 1.0, 0.25] * 10
    window.add(np.zeros((40, 2)), labels, confidences)
    report = window.report(None, 1)
    assert report.class_mix == {"b": 0.5, "a": 0.25, "c": 0.25}
    assert list(report.class_mix) == ["b", "a", "c"]
    assert report.mean_confidence == round((0.5 + 1.0 + 0.25) / 3, 6)


def test_window_measures_category_shift_by_psi() -> None:
    """A window of one category against an even reference: PSI over the category bins, and
    the window's share of each category, of other values and of nulls."""
    reference = build_typed_profile(
        [TypedColumn("city", "categorical", ["Oslo", "Bergen"] * 50)], ["a"] * 100
    )
    window = DriftWindow(1, capacity=100)
    codes = np.array([0.0] * 30 + [2.0] * 10)  # Oslo, and an unlisted city
    window.add(codes.reshape(-1, 1))

    report = window.report(reference, min_rows=40)

    expected = psi([0.5, 0.5, 0.0, 0.0], [0.75, 0.0, 0.25, 0.0])
    assert report.psi == {"city": round(expected, 6)}
    assert report.psi["city"] > 0.2
    assert report.category_shares == {
        "city": {"Oslo": 0.75, "Bergen": 0.0, "(other)": 0.25, "(missing)": 0.0}
    }


def test_window_label_ids_keep_what_the_labels_keep() -> None:
    """Labels given as indices into the label names fill the window exactly as the labels do,
    new labels taking their ids in order of first appearance."""
    names = ("a", "b", "c", "never")
    ids = np.array([2, 0, 2, 1] * 10, dtype=np.intp)
    labels = [names[i] for i in ids]
    confidences = np.linspace(0.1, 1.0, 40)
    by_labels, by_ids = DriftWindow(2, 100), DriftWindow(2, 100)
    by_labels.add(np.zeros((40, 2)), labels, confidences.tolist())
    by_ids.add(np.zeros((40, 2)), labels, confidences, ids, names)
    assert by_ids.report(None, 1) == by_labels.report(None, 1)
    assert list(by_ids.report(None, 1).class_mix) == ["c", "a", "b"]
