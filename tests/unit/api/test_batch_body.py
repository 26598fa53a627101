"""A /predict-batch body of numbers goes straight into an array; every other body is
validated by Pydantic as before, so the errors are the same."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest
from pydantic import ValidationError

from modelserve.api.batch_body import BatchRows, parse_batch, parse_validated
from modelserve.errors import ModelserveError
from modelserve.inference.preprocess import FeatureSchema
from modelserve.inference.typed import TypedFeatureSchema
from modelserve.inference.types import FeatureSpec

NAMES = ["a", "b", "c"]
SCHEMA = FeatureSchema(3, NAMES)


@pytest.mark.parametrize(
    "body",
    [
        b'{"batch": [[1, 2.5, -0.0], [4e-300, 5, 6]]}',
        b'{"batch": [[1.5, 2, 3]]}',
        b'{"batch": [{"a": 1, "b": 2.5, "c": 3}, {"c": 6, "b": 5, "a": 4}]}',
        b'{"batch": [[1, 2, 123456789012345678901234567890]]}',
    ],
    ids=["positional", "one-row", "named", "integer-beyond-int64"],
)
def test_parse_batch_reads_numbers_as_pydantic_does(body: bytes) -> None:
    """Rows of numbers skip Pydantic and give the very array the validated rows give."""
    rows = parse_batch(body)

    assert not rows.validated
    assert rows.converts(SCHEMA) is (rows.matrix is None)  # named rows are ordered by name
    expected = SCHEMA.rows_to_array(parse_validated(body).rows)
    np.testing.assert_array_equal(rows.to_array(SCHEMA), expected)
    assert rows.to_array(SCHEMA).dtype == np.float64


@pytest.mark.parametrize(
    "body",
    [
        b'{"batch": [[1, true, 3]]}',
        b'{"batch": [[1, "2", 3]]}',
        b'{"batch": [[1, null, 3]]}',
        b'{"batch": [[1, NaN, 3]]}',
        b'{"batch": [[1, 2, 3], [1, 2]]}',
        b'{"batch": [[1, [2], 3]]}',
        b'{"batch": [[1, 2, 3], {"a": 1, "b": 2, "c": 3}]}',
        b'{"batch": [{"a": 1, "b": "x", "c": 3}]}',
        b'{"batch": [[1, 2, 3]], "extra": 1}',
        b'{"batch": []}',
        b'{"batch": [[1, 2, 3]]',
    ],
    ids=[
        "boolean",
        "string",
        "null",
        "nan",
        "ragged",
        "nested",
        "mixed-rows",
        "named-string",
        "extra-field",
        "empty",
        "not-json",
    ],
)
def test_parse_batch_leaves_every_other_body_to_pydantic(body: bytes) -> None:
    """A body that is not plain rows of numbers gives exactly what Pydantic gives: the same
    rows, or the same ValidationError, and the same error from the schema."""
    expected = _parsed(parse_validated, body)
    if isinstance(expected, list):  # Pydantic refuses it: the same errors
        assert _parsed(parse_batch, body) == expected
        return
    rows = parse_batch(body)
    assert rows.validated
    assert repr(rows.rows) == repr(expected.rows)  # repr: NaN equals itself
    assert _outcome(rows.to_array, SCHEMA) == _outcome(SCHEMA.rows_to_array, expected.rows)


@pytest.mark.parametrize(
    "body",
    [b'{"batch": [[1, 2], [3, 4]]}', b'{"batch": [[1, 2, 3, 4]]}'],
    ids=["narrow-rows", "one-wide-row"],
)
def test_parse_batch_names_a_wrong_width_as_the_row_check_does(body: bytes) -> None:
    """Rows of the wrong width are refused with the message the row-by-row check gives."""
    expected = _outcome(SCHEMA.rows_to_array, parse_validated(body).rows)

    assert str(expected).startswith("wrong_feature_count: expected 3 features")
    assert _outcome(parse_batch(body).to_array, SCHEMA) == expected


def test_parse_batch_gives_typed_features_the_validated_rows() -> None:
    """A typed-features model reads numbers as Pydantic gives them (41 as 41.0)."""
    schema = TypedFeatureSchema([FeatureSpec("a", "int"), FeatureSpec("b", "float")])
    body = orjson.dumps({"batch": [{"a": 41, "b": 2}, {"a": 7, "b": 0.5}]})

    expected = schema.rows_to_array(parse_validated(body).rows)

    assert parse_batch(body).converts(schema)
    np.testing.assert_array_equal(parse_batch(body).to_array(schema), expected)


def _outcome(convert: object, argument: object) -> object:
    """The array ``convert(argument)`` gives (its repr, where NaN equals NaN), or its error."""
    assert callable(convert)
    try:
        return repr(convert(argument).tolist())
    except ModelserveError as exc:
        return f"{exc.code}: {exc.detail}"


def _parsed(parse: Callable[[bytes], BatchRows], body: bytes) -> BatchRows | list[Any]:
    """The rows ``parse(body)`` gives, or the errors of its ValidationError."""
    try:
        return parse(body)
    except ValidationError as exc:
        return exc.errors()
