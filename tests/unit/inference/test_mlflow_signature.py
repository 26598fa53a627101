"""An MLflow signature's inputs as the feature schema: numeric columns, typed ones, refusals."""

from __future__ import annotations

import json

import pytest

from modelserve.errors import ModelLoadError
from modelserve.inference.runtimes.mlflow_signature import read_input_schema
from modelserve.inference.types import FeatureSpec


def _mlmodel(*columns: dict[str, object]) -> dict[str, object]:
    return {"signature": {"inputs": json.dumps(list(columns))}}


def test_required_numeric_columns_keep_the_float_path() -> None:
    """Doubles and longs, all required: names and declared types, no typed features."""
    schema = read_input_schema(
        _mlmodel({"name": "a", "type": "double"}, {"name": "b", "type": "long", "required": True})
    )

    assert (schema.feature_names, schema.feature_types, schema.features) == (
        ["a", "b"],
        ["double", "long"],
        None,
    )


def test_string_boolean_and_optional_columns_are_typed_features() -> None:
    """A string or boolean column, or an optional one, makes every column a typed feature."""
    schema = read_input_schema(
        _mlmodel(
            {"name": "city", "type": "string"},
            {"name": "member", "type": "boolean"},
            {"name": "age", "type": "double", "required": False},
            {"name": "visits", "type": "long"},
        )
    )

    assert schema.features == (
        FeatureSpec("city", "string"),
        FeatureSpec("member", "bool"),
        FeatureSpec("age", "float", nullable=True),
        FeatureSpec("visits", "int"),
    )


def test_an_unserved_column_type_is_refused() -> None:
    """A binary column cannot be sent as JSON values: the load says which types are served."""
    with pytest.raises(ModelLoadError, match="'blob' is of type 'binary'; served column types"):
        read_input_schema(_mlmodel({"name": "blob", "type": "binary"}))
