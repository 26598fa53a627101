"""Reference profiles: built from data, written as JSON, read back, checked against a model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris

from modelserve.observability.profile import (
    MAX_PROFILED_CATEGORIES,
    MAX_PROFILED_FEATURES,
    PROFILE_FORMAT,
    Category,
    TypedColumn,
    build_profile,
    build_typed_profile,
    load_profile,
)

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def _iris() -> np.ndarray:
    return np.asarray(load_iris().data, dtype=np.float64)


def test_build_profile_bins_hold_every_row() -> None:
    """Each feature's bin shares add up to one and its edges ascend."""
    profile = build_profile(_iris(), FEATURES)

    for feature in profile.features:
        assert sum(feature.proportions) == pytest.approx(1.0)
        assert list(feature.edges) == sorted(feature.edges)
        assert len(feature.proportions) == len(feature.edges) + 1


def test_build_profile_quantile_bins_are_about_equal_for_continuous_data() -> None:
    """With 10 bins over continuous values every bin holds about a tenth of the rows."""
    values = np.random.default_rng(0).normal(size=(10_000, 1))

    (feature,) = build_profile(values, bins=10).features

    assert len(feature.proportions) == 10
    assert max(abs(p - 0.1) for p in feature.proportions) < 0.002


def test_build_profile_records_mean_std_and_range() -> None:
    """Summary statistics match numpy's for every column."""
    x = _iris()

    profile = build_profile(x, FEATURES)

    assert [f.mean for f in profile.features] == pytest.approx(x.mean(axis=0).tolist())
    assert [f.std for f in profile.features] == pytest.approx(x.std(axis=0).tolist())
    assert [f.min for f in profile.features] == pytest.approx(x.min(axis=0).tolist())
    assert [f.max for f in profile.features] == pytest.approx(x.max(axis=0).tolist())


def test_build_profile_class_mix_is_the_share_of_each_label() -> None:
    """The class mix counts the predicted labels given."""
    labels = ["a"] * 3 + ["b"]

    profile = build_profile(np.zeros((4, 1)) + np.arange(4)[:, None], ["f"], labels, [0.5] * 4)

    assert profile.class_mix == {"a": 0.75, "b": 0.25}
    assert profile.mean_confidence == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (np.zeros((0, 2)), "non-empty"),
        (np.array([[1.0, np.nan]]), "NaN"),
    ],
    ids=["empty", "nan"],
)
def test_build_profile_refuses_unusable_data(matrix: np.ndarray, message: str) -> None:
    """Empty or non-finite reference data is refused with a reason."""
    with pytest.raises(ValueError, match=message):
        build_profile(matrix)


def test_profile_survives_a_json_round_trip(tmp_path: Path) -> None:
    """What to_json writes, load_profile reads back unchanged."""
    profile = build_profile(_iris(), FEATURES, ["setosa"] * 150, [0.9] * 150)
    path = tmp_path / "profile.json"
    path.write_bytes(profile.to_json())

    loaded = load_profile(path)

    assert loaded == profile


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not json", "not JSON"),
        (b'{"format": "other/1"}', PROFILE_FORMAT),
        (b'{"format": "' + PROFILE_FORMAT.encode() + b'", "rows": 1}', "features"),
    ],
    ids=["not-json", "wrong-format", "no-features"],
)
def test_load_profile_names_the_file_when_invalid(
    tmp_path: Path, content: bytes, message: str
) -> None:
    """A file that is not a profile raises ValueError naming the file and the problem."""
    path = tmp_path / "bad.json"
    path.write_bytes(content)

    with pytest.raises(ValueError, match=message) as info:
        load_profile(path)

    assert "bad.json" in str(info.value)


def test_load_profile_reports_a_missing_file(tmp_path: Path) -> None:
    """A missing file is a ValueError saying it cannot be read."""
    with pytest.raises(ValueError, match="cannot read profile"):
        load_profile(tmp_path / "absent.json")


def test_check_fits_refuses_another_width() -> None:
    """A profile of 4 features does not fit a model of 3."""
    profile = build_profile(_iris(), FEATURES)

    with pytest.raises(ValueError, match="4 features, the model expects 3"):
        profile.check_fits(3, None)


def test_check_fits_refuses_other_feature_names() -> None:
    """Same width but different names is a mismatch too."""
    profile = build_profile(_iris(), FEATURES)

    with pytest.raises(ValueError, match="differ"):
        profile.check_fits(4, ["a", "b", "c", "d"])


def test_build_profile_of_a_wide_model_keeps_the_first_features() -> None:
    """A 150-feature model gets its first 100 features profiled, and still fits its width."""
    wide = np.random.default_rng(0).normal(size=(50, 150))

    profile = build_profile(wide)

    assert len(profile.features) == MAX_PROFILED_FEATURES == 100
    assert profile.n_features == 150
    profile.check_fits(150, [str(i) for i in range(150)])


def _typed_columns() -> list[TypedColumn]:
    cities: list[Category | None] = ["Oslo"] * 5 + ["Bergen"] * 3 + [None] * 2
    ages: list[Category | None] = [20.0, 30.0, None, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 25.0]
    return [TypedColumn("city", "categorical", cities), TypedColumn("age", "numeric", ages)]


def test_typed_profile_shares_each_category_then_other_and_missing() -> None:
    """A categorical feature holds each value's share, most frequent first, then the share of
    other values and of nulls; a numeric one its bins over non-null values plus nulls."""
    city, age = build_typed_profile(_typed_columns(), bins=3).features

    assert city.kind == "categorical"
    assert city.shares() == {"Oslo": 0.5, "Bergen": 0.3, "(other)": 0.0, "(missing)": 0.2}
    assert city.mean is None
    assert age.kind == "numeric"
    assert age.missing == 0.1
    assert sum(age.proportions) == pytest.approx(1.0)
    assert age.proportions[-1] == 0.1
    assert age.mean == pytest.approx(np.mean([20, 30, 40, 50, 60, 70, 80, 90, 25]))


def test_typed_profile_pools_rare_categories_as_other() -> None:
    """Beyond the most frequent MAX_PROFILED_CATEGORIES values, the rest share one bin."""
    values: list[Category | None] = [f"c{i}" for i in range(MAX_PROFILED_CATEGORIES + 10)]
    (feature,) = build_typed_profile([TypedColumn("id", "categorical", values)]).features

    assert len(feature.categories) == MAX_PROFILED_CATEGORIES
    assert feature.shares()["(other)"] == pytest.approx(10 / len(values))


def test_typed_profile_bins_categorical_codes() -> None:
    """Codes are category indexes, len(categories) for other values, NaN for nulls."""
    city, _ = build_typed_profile(_typed_columns()).features

    counts = city.bin_counts(np.array([0.0, 0.0, 1.0, 2.0, np.nan]))

    assert counts.tolist() == [2, 1, 1, 1]


def test_typed_profile_survives_a_json_round_trip(tmp_path: Path) -> None:
    """Categories (strings, numbers, booleans), null shares and empty numeric stats read back."""
    columns = [
        *_typed_columns(),
        TypedColumn("member", "categorical", [True, False] * 5),
        TypedColumn("gone", "numeric", [None] * 10),
    ]
    profile = build_typed_profile(columns, ["yes"] * 10, [0.8] * 10)
    path = tmp_path / "typed.json"
    path.write_bytes(profile.to_json())

    loaded = load_profile(path)

    assert loaded == profile
    assert loaded.features[2].categories == (True, False)
    assert loaded.features[3].mean is None
