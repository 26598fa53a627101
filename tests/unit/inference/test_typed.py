"""Typed features: the schema a fitted pipeline implies, checked rows, DataFrames, cache keys."""

from __future__ import annotations

import math
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OrdinalEncoder, StandardScaler

from modelserve.errors import (
    InvalidFeatureValueError,
    InvalidInputError,
    ModelLoadError,
    NullFeatureError,
    UnknownCategoryError,
)
from modelserve.inference.cache import PredictionCache
from modelserve.inference.check import check_models
from modelserve.inference.preprocess import FeatureSchema
from modelserve.inference.runtimes.sklearn import SklearnRuntime
from modelserve.inference.runtimes.sklearn_features import sklearn_features
from modelserve.inference.typed import FrameRuntime, TypedFeatureSchema, model_call
from modelserve.inference.types import FeatureSpec
from modelserve.inference.version import build_version
from modelserve.observability.profile import TypedColumn, build_typed_profile
from modelserve.settings import FeatureConfig, ModelConfig, Settings
from modelserve.v2.features import typed_rows
from modelserve.v2.tensor import Tensor
from tests import iris_versions as iv
from tests import tabular
from tests.fakes import EchoRuntime

CITY = FeatureSpec("city", "category", tuple(tabular.CITIES), unknown="error")
SCHEMA = TypedFeatureSchema(
    [
        CITY,
        FeatureSpec("age", "float", nullable=True, range=(18.0, 100.0)),
        FeatureSpec("member", "bool"),
        FeatureSpec("visits", "int", nullable=True),
        FeatureSpec("note", "string", nullable=True),
    ]
)


def test_sklearn_features_read_encoder_categories_and_imputers() -> None:
    """OneHotEncoder columns are categories (handle_unknown kept), imputed columns nullable."""
    assert sklearn_features(tabular.city_pipeline("ignore")) == (
        FeatureSpec("city", "category", tuple(tabular.CITIES), unknown="ignore"),
        FeatureSpec("age", "float", nullable=True),
        FeatureSpec("income", "float", nullable=True),
    )
    assert sklearn_features(tabular.city_pipeline("error"))[0].unknown == "error"  # type: ignore[index]  # typed


def test_sklearn_features_follow_nested_steps_and_column_indices() -> None:
    """An imputer before an encoder in a nested pipeline, columns chosen by index."""
    frame = pd.DataFrame({"plan": ["a", "b", None, "a"], "n": [1.0, 2.0, 3.0, 4.0]})
    encode = make_pipeline(
        SimpleImputer(strategy="most_frequent"), OrdinalEncoder(handle_unknown="error")
    )
    columns = ColumnTransformer([("plan", encode, [0]), ("n", StandardScaler(), [1])])
    pipeline = make_pipeline(columns, LogisticRegression()).fit(frame, [0, 1, 0, 1])
    assert sklearn_features(pipeline) == (
        FeatureSpec("plan", "category", ("a", "b"), nullable=True),
        FeatureSpec("n", "float"),
    )


def test_sklearn_features_are_none_for_float_models() -> None:
    """A model fitted on a numpy array, or on float columns only, keeps the float path."""
    assert sklearn_features(iv.logistic()) is None
    assert sklearn_features(tabular.habits_pipeline()) is None


def test_rows_are_checked_and_canonical() -> None:
    """Values become canonical: 3.0 of an int is 3, -0.0 is 0.0, absent nullable is None."""
    batch = SCHEMA.to_array(
        [
            {"city": "Oslo", "age": -0.0, "member": True, "visits": 3.0, "note": "hi"},
            {"city": "Bergen", "age": None, "member": False},
        ]
    )
    assert batch.tolist() == [["Oslo", 0.0, True, 3, "hi"], ["Bergen", None, False, None, None]]
    assert math.copysign(1.0, batch[0, 1]) == 1.0


@pytest.mark.parametrize(
    ("row", "error", "detail"),
    [
        (
            {"city": "Paris", "age": 1, "member": True},
            UnknownCategoryError,
            "row 0, feature 'city': expected one of 'Bergen', 'Oslo', 'Trondheim', got 'Paris'",
        ),
        (
            {"city": "Oslo", "age": math.inf, "member": True},
            InvalidFeatureValueError,
            "row 0, feature 'age': expected float, got inf",
        ),
        (
            {"city": "Oslo", "age": 10**400, "member": True},
            InvalidFeatureValueError,
            f"row 0, feature 'age': expected float, got {str(10**400)[:64]}...",
        ),
        (
            {"city": "Oslo", "age": 1, "member": 1},
            InvalidFeatureValueError,
            "row 0, feature 'member': expected bool, got 1",
        ),
        (
            {"city": "Oslo", "age": 1, "member": True, "note": 5},
            InvalidFeatureValueError,
            "row 0, feature 'note': expected string, got 5",
        ),
        (
            {"city": "Oslo", "age": 1, "member": True, "visits": True},
            InvalidFeatureValueError,
            "row 0, feature 'visits': expected int, got true",
        ),
        (
            {"city": "Oslo", "age": 1},
            NullFeatureError,
            "row 0, feature 'member': expected bool (not nullable),"
            " got nothing (the feature is missing)",
        ),
    ],
    ids=[
        "unknown-category",
        "infinite",
        "huge-int",
        "int-for-bool",
        "int-for-string",
        "bool-for-int",
        "absent",
    ],
)
def test_a_value_that_does_not_fit_names_row_feature_expected_and_got(
    row: dict[str, object], error: type[InvalidFeatureValueError], detail: str
) -> None:
    """Each misfit is its own error class with the row, feature, expected type and value."""
    with pytest.raises(error) as caught:
        SCHEMA.to_array([row])
    assert caught.value.detail == detail


def test_a_long_value_is_cut_in_the_message() -> None:
    """The got value in a message is bounded, whatever the client sent."""
    with pytest.raises(InvalidFeatureValueError) as caught:
        SCHEMA.to_array([{"city": "Oslo", "age": "x" * 10_000, "member": True}])
    assert len(caught.value.detail) < 200


def test_to_frame_has_the_training_dtypes() -> None:
    """Categoricals keep the training categories; nulls are NaN in numbers, None in objects."""
    batch = SCHEMA.to_array(
        [
            {"city": "Oslo", "age": 30, "member": True, "visits": 2},
            {"city": "Trondheim", "age": None, "member": False, "visits": None},
        ]
    )
    frame = SCHEMA.to_frame(batch)
    assert list(frame.columns) == ["city", "age", "member", "visits", "note"]
    assert isinstance(frame["city"].dtype, pd.CategoricalDtype)
    assert list(frame["city"].cat.categories) == tabular.CITIES
    assert frame["age"].dtype == np.float64
    assert math.isnan(frame["age"][1])
    assert frame["member"].dtype == bool
    assert frame["visits"].dtype == np.float64  # a null in a nullable int column
    assert frame["note"].tolist() == [None, None]
    whole = SCHEMA.to_frame(
        SCHEMA.to_array([{"city": "Oslo", "age": 1, "member": True, "visits": 4}])
    )
    assert whole["visits"].dtype == np.int64


def test_cache_keys_are_canonical_over_typed_values() -> None:
    """41 and 41.0 of a float feature share a key; another category or a null does not."""
    cache = PredictionCache(backend=None, secret=b"k" * 32)  # type: ignore[arg-type]  # keys only
    rows: list[dict[str, object]] = [
        {"city": "Oslo", "age": 41, "member": True},
        {"city": "Oslo", "age": 41.0, "member": True},
        {"city": "Bergen", "age": 41, "member": True},
        {"city": "Oslo", "age": None, "member": True},
    ]
    keys = cache.row_keys("m", "1", "f", SCHEMA.to_array(rows))
    assert keys[0] == keys[1]
    assert len({keys[0], keys[2], keys[3]}) == 3


def test_float_models_refuse_a_string_by_name_with_a_400() -> None:
    """A named row with a string for a float model is a 400 naming it, not a 500."""
    with pytest.raises(InvalidFeatureValueError) as caught:
        FeatureSchema(2, ["a", "b"]).to_array([{"a": 1.0, "b": "x"}])
    assert caught.value.detail == "row 0, feature 'b': expected a number, got 'x'"


def test_typed_batches_of_float_tensors_are_checked_per_value() -> None:
    """A float matrix (V2 tensors) reaching a typed schema is checked; NaN counts as null."""
    schema = TypedFeatureSchema([FeatureSpec("n", "int", nullable=True), FeatureSpec("x")])
    assert schema.check(np.array([[2.0, 1.5], [math.nan, 0.0]])).tolist() == [
        [2, 1.5],
        [None, 0.0],
    ]
    with pytest.raises(InvalidFeatureValueError):
        SCHEMA.check(np.zeros((1, 5)))


def _dump_pipeline(tmp_path: Path) -> Path:
    path = tmp_path / "cities.joblib"
    joblib.dump(tabular.city_pipeline("ignore"), path)
    return path


def test_configured_features_must_name_the_model_columns(tmp_path: Path) -> None:
    """`features` naming another column than the model's refuses to load, naming both."""
    config = ModelConfig(
        name="c",
        path=_dump_pipeline(tmp_path),
        features=[
            FeatureConfig(name="town", type="string"),
            FeatureConfig(name="age"),
            FeatureConfig(name="income"),
        ],
    )
    with pytest.raises(ModelLoadError, match="features name town, age, income but the model"):
        build_version(config, require_sha256=False)


def test_a_version_with_typed_features_warms_up_and_says_so(tmp_path: Path) -> None:
    """The schema read from the pipeline is the version's, and its warm-up row fits it."""
    prepared = build_version(
        ModelConfig(name="c", path=_dump_pipeline(tmp_path)), require_sha256=False
    )
    assert isinstance(prepared.schema, TypedFeatureSchema)
    assert prepared.info.features == sklearn_features(tabular.city_pipeline("ignore"))


def test_check_prints_the_typed_features(tmp_path: Path) -> None:
    """`modelserve check` shows each typed version's features under its table."""
    settings = Settings(models=[ModelConfig(name="c", path=_dump_pipeline(tmp_path))])
    ok, text = check_models(settings)
    assert ok
    assert text.endswith(
        "typed features of c:1:\n"
        "  city: category (Bergen, Oslo, Trondheim; unknown ignored)\n"
        "  age: float, nullable\n"
        "  income: float, nullable"
    )


def test_v2_feature_tensors_give_typed_rows_with_nan_as_null() -> None:
    """One tensor per feature: BYTES as text, NaN of a float tensor as null, in feature order."""
    inputs = [
        Tensor("age", "FP64", (2,), np.array([30.0, math.nan])),
        Tensor("city", "BYTES", (2, 1), np.array([[b"Oslo"], [b"Bergen"]], dtype=object)),
        Tensor("member", "BOOL", (2,), np.array([True, False])),
    ]
    rows = typed_rows(inputs, ["city", "age", "member"])
    assert rows == [["Oslo", 30.0, True], ["Bergen", None, False]]
    assert SCHEMA.to_array(
        [dict(zip(["city", "age", "member"], rows[1], strict=True))]
    ).tolist() == [["Bergen", None, False, None, None]]


def test_drift_codes_follow_the_profile_bins() -> None:
    """With a profile, a category's drift code is its profile bin (other cities share one bin,
    a null is NaN), whatever the training categories' order."""
    reference = build_typed_profile(
        [TypedColumn("city", "categorical", ["Oslo", "Bergen"])], bins=2
    )
    schema = TypedFeatureSchema(
        [FeatureSpec("city", "category", ("Bergen", "Oslo", "Paris"), nullable=True)], reference
    )

    codes = schema.numeric(schema.to_array([["Oslo"], ["Bergen"], ["Paris"], [None]]))

    assert codes[:3, 0].tolist() == [0.0, 1.0, 2.0]
    assert math.isnan(codes[3, 0])


def test_a_profile_of_another_kind_is_refused() -> None:
    """A profile that bins a category as numbers does not fit: rebuild it."""
    numeric = build_typed_profile([TypedColumn("city", "numeric", [1.0, 2.0])], bins=2)

    with pytest.raises(ValueError, match="describes city as numeric but it is a category"):
        TypedFeatureSchema([CITY], numeric)


def test_model_calls_take_only_their_kind_of_batch() -> None:
    """A float runtime's call refuses typed rows, and a typed runtime's call refuses floats,
    so neither kind of batch can reach the other's model."""
    float_call = model_call(EchoRuntime(n_features=1))
    typed_call = model_call(FrameRuntime(SklearnRuntime(tabular.city_pipeline()), SCHEMA_CITY))

    assert float_call(np.ones((2, 1))).values is not None
    with pytest.raises(InvalidInputError, match="expected a float64 batch, got object"):
        float_call(SCHEMA_CITY.to_array([["Oslo", 40.0, 50.0]]))
    assert typed_call(SCHEMA_CITY.to_array([["Oslo", 40.0, 50.0]])).probabilities is not None
    with pytest.raises(InvalidInputError, match="expected typed rows, got a float64 batch"):
        typed_call(np.ones((1, 3)))


SCHEMA_CITY = TypedFeatureSchema(
    [
        FeatureSpec("city", "category", tuple(tabular.CITIES), unknown="ignore"),
        FeatureSpec("age", "float", nullable=True),
        FeatureSpec("income", "float", nullable=True),
    ]
)
