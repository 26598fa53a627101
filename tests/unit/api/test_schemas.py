"""HTTP bodies: strict request parsing, documented examples valid, real responses match."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import BaseModel, ValidationError

from modelserve.api.schemas import (
    BatchPredictRequest,
    BatchPredictResponse,
    ErrorBody,
    HealthResponse,
    ModelsResponse,
    ModelVersionResponse,
    PredictRequest,
    PredictResponse,
    ReadyResponse,
)
from modelserve.demo import FEATURES, LABELS
from modelserve.settings import Settings

SETOSA = [5.1, 3.5, 1.4, 0.2]
BODIES: list[type[BaseModel]] = [
    PredictRequest,
    PredictResponse,
    BatchPredictRequest,
    BatchPredictResponse,
    ErrorBody,
    HealthResponse,
    ReadyResponse,
    ModelsResponse,
    ModelVersionResponse,
]


@pytest.mark.parametrize(
    "features",
    [SETOSA, [5, 3, 1, 0], dict(zip(FEATURES, SETOSA, strict=True))],
    ids=["floats", "ints", "by-name"],
)
def test_predict_request_accepts_numbers_in_a_list_or_by_name(features: Any) -> None:
    """Features are a list of numbers or an object of name → number."""
    assert PredictRequest.model_validate({"features": features}).features == features


@pytest.mark.parametrize(
    "features",
    [["5.1", 3.5, 1.4, 0.2], [True, 3.5, 1.4, 0.2], [[5.1]], {"sepal_length": [5.1]}],
    ids=["numeric-string", "bool", "nested", "nested-by-name"],
)
def test_predict_request_never_coerces_non_numbers(features: Any) -> None:
    """Strings and booleans in a list, and nested values, are type errors, never coerced."""
    with pytest.raises(ValidationError):
        PredictRequest.model_validate_json(orjson.dumps({"features": features}))


@pytest.mark.parametrize(
    "features",
    [{"city": "5.1", "age": 41}, {"member": True, "visits": 3}, {"age": None}],
    ids=["string", "bool", "null"],
)
def test_predict_request_keeps_typed_values_by_name_as_sent(features: Any) -> None:
    """Named strings, booleans, integers and nulls reach the model's schema uncoerced."""
    parsed = PredictRequest.model_validate_json(orjson.dumps({"features": features})).features
    assert parsed == features
    assert [type(v) for v in parsed.values()] == [type(v) for v in features.values()]  # type: ignore[union-attr]  # a dict here


def test_predict_request_forbids_unknown_fields() -> None:
    """A misspelt field is an error rather than ignored."""
    with pytest.raises(ValidationError, match="extra"):
        PredictRequest.model_validate({"features": SETOSA, "feature": SETOSA})


def test_predict_request_parses_non_finite_json_for_the_model_layer() -> None:
    """NaN and Infinity parse here; the inference layer refuses them with their position."""
    parsed = PredictRequest.model_validate_json(b'{"features": [NaN, Infinity, -Infinity, 1e999]}')
    assert isinstance(parsed.features, list)
    assert math.isnan(parsed.features[0])
    assert parsed.features[1:] == [math.inf, -math.inf, math.inf]


def test_batch_predict_request_accepts_mixed_row_forms() -> None:
    """A batch is a list of rows; each row a list or an object (mixing is refused later)."""
    request = BatchPredictRequest.model_validate({"batch": [SETOSA, {"a": 1.0}]})
    assert len(request.batch) == 2


@pytest.mark.parametrize("body", BODIES, ids=lambda body: body.__name__)
def test_schema_examples_exist_and_validate(body: type[BaseModel]) -> None:
    """Every body documents at least one example, and its examples are valid bodies."""
    examples = body.model_json_schema().get("examples", [])
    assert examples, f"{body.__name__} has no example"
    for example in examples:
        body.model_validate(example)


@pytest.fixture
async def client(
    app_client: Callable[..., Any],
    settings_factory: Callable[..., Settings],
    demo_models_dir: Path,
    fake_models_dir: Path,
) -> AsyncIterator[httpx.AsyncClient]:
    models = [
        {"name": "iris", "path": demo_models_dir / "iris.joblib", "labels": LABELS},
        {"name": "sum", "path": fake_models_dir / "sum.joblib"},
    ]
    async with app_client(settings_factory(models=models)) as http:
        yield http


@pytest.mark.parametrize(
    ("method", "path", "json", "body"),
    [
        ("POST", "/predict", {"features": SETOSA}, PredictResponse),
        ("POST", "/predict?model=sum", {"features": SETOSA}, PredictResponse),
        ("POST", "/predict-batch", {"batch": [SETOSA]}, BatchPredictResponse),
        (
            "POST",
            "/predict-batch?probabilities=true",
            {"batch": [SETOSA]},
            BatchPredictResponse,
        ),
        ("POST", "/predict", {"features": [1.0]}, ErrorBody),
        ("GET", "/health", None, HealthResponse),
        ("GET", "/ready", None, ReadyResponse),
        ("GET", "/models", None, ModelsResponse),
    ],
    ids=[
        "predict",
        "predict-regressor",
        "batch",
        "batch-probabilities",
        "error",
        "health",
        "ready",
        "models",
    ],
)
async def test_real_responses_match_documented_schema(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    json: Any,
    body: type[BaseModel],
) -> None:
    """What the server sends validates against the schema /docs shows, with no extra fields."""
    response = await client.request(method, path, json=json)
    payload = response.json()
    body.model_validate(payload)
    assert set(payload) <= set(body.model_fields)
