"""Property tests: whatever a client sends as features, the answer is a 200 or a 4xx.

The JSON feature parser (the routes' body models → FeatureSchema → checked float64 matrix)
and the named-feature mapping get arbitrary input; neither may crash or answer 5xx. The live
server gets the same treatment from schemathesis (tests/e2e/test_fuzz.py).
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from modelserve.api.errors import from_validation_error, http_status
from modelserve.api.schemas import BatchPredictRequest, PredictRequest
from modelserve.errors import ModelserveError
from modelserve.inference.preprocess import FeatureSchema

NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SCHEMA = FeatureSchema(4, NAMES)
EXAMPLES = settings(max_examples=200, deadline=None)

numbers = (
    st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, -0.0, 1e308, -1e308, 5e-324, 10**400])
)
scalars = st.none() | st.booleans() | numbers | st.text(max_size=8)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=24,
)
feature_names = st.sampled_from(NAMES) | st.text(max_size=12)
named_rows = st.dictionaries(feature_names, scalars, max_size=6)
positional_rows = st.lists(scalars, max_size=6)
rows = named_rows | positional_rows | json_values


def _dumps(value: object) -> bytes:
    """JSON text of ``value``; what orjson refuses (huge integers, NaN) the stdlib writes."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, allow_nan=True).encode()


def _status_for(body: bytes, model: type[PredictRequest] | type[BatchPredictRequest]) -> int:
    """What the /predict routes answer for ``body``, up to the model call: the same body
    model, error mapping and FeatureSchema the routes use, without a server around them."""
    try:
        payload = model.model_validate_json(body)
    except ValidationError as exc:
        return from_validation_error(exc, None).status_code
    batch = [payload.features] if isinstance(payload, PredictRequest) else payload.batch
    try:
        SCHEMA.to_array(batch)
    except ModelserveError as exc:
        return http_status(exc)
    return 200


@EXAMPLES
@given(features=rows)
def test_predict_any_features_is_a_client_error_at_worst(features: object) -> None:
    """/predict with any JSON as ``features``: 200 or a 4xx."""
    assert _status_for(_dumps({"features": features}), PredictRequest) < 500


@EXAMPLES
@given(batch=st.lists(rows, max_size=5) | json_values)
def test_predict_batch_any_rows_is_a_client_error_at_worst(batch: object) -> None:
    """/predict-batch with any JSON as ``batch``: 200 or a 4xx."""
    assert _status_for(_dumps({"batch": batch}), BatchPredictRequest) < 500


@EXAMPLES
@given(body=st.binary(max_size=64) | json_values.map(_dumps))
def test_predict_any_body_is_a_client_error_at_worst(body: bytes) -> None:
    """Any bytes at all as the body: 200 or a 4xx."""
    assert _status_for(body, PredictRequest) < 500
    assert _status_for(body, BatchPredictRequest) < 500


@settings(max_examples=300, deadline=None)
@given(
    batch=st.lists(
        st.dictionaries(feature_names, numbers, max_size=6) | st.lists(numbers, max_size=6),
        min_size=1,
        max_size=5,
    )
)
def test_feature_schema_any_numeric_rows_give_a_matrix_or_a_client_error(
    batch: list[Any],
) -> None:
    """Rows of numbers (what the body models let through), named or positional, mixed or
    not, of any width and magnitude: a finite (n, 4) matrix or a domain error with a 4xx."""
    try:
        matrix = SCHEMA.to_array(batch)
    except ModelserveError as exc:
        status = http_status(exc)
    else:
        status = 200
        assert matrix.shape == (len(batch), 4)
    assert status == 200 or 400 <= status < 500
