"""Every error class answers the one body {detail, code, request_id} with its status, in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelserve.demo import FEATURES
from modelserve.settings import Settings

JSON = {"Content-Type": "application/json"}

SETOSA = [5.1, 3.5, 1.4, 0.2]
MAX_ROWS = 3


@pytest.fixture
async def client(
    app_client: Callable[..., Any],
    settings_factory: Callable[..., Settings],
    demo_models_dir: Path,
    fake_models_dir: Path,
    tmp_path: Path,
) -> AsyncIterator[httpx.AsyncClient]:
    """iris, a model that raises on poisoned rows, and an optional one that failed to load."""
    models = [
        {"name": "iris", "path": demo_models_dir / "iris.joblib", "feature_names": FEATURES},
        {"name": "failing", "path": fake_models_dir / "failing.joblib"},
        {"name": "ghost", "path": tmp_path / "absent.joblib", "required": False},
    ]
    settings = settings_factory(
        models=models,
        default_model="iris",
        server={"max_batch_rows": MAX_ROWS},
        cache={"backend": "none"},
    )
    async with app_client(settings) as http:
        yield http


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is the error body with this status and code; returns the body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    named = {"model", "model_version"} & set(body)
    assert set(body) - named == {"detail", "code", "request_id"}
    if named:  # raised once a version was chosen: it is named like a success names it
        assert named == {"model", "model_version"}
        assert body["model_version"] == response.headers["x-model-version"]
    assert body["code"] == code
    assert body["request_id"] == response.headers["x-request-id"]
    return body


@pytest.mark.parametrize(
    "payload",
    [
        {"features": ["5.1", 3.5, 1.4, 0.2]},
        {"features": [True, 3.5, 1.4, 0.2]},
        {"features": None},
        {"features": 5.1},
        {},
        {"features": SETOSA, "extra": 1},
        [SETOSA],
    ],
    ids=["string", "bool", "null", "scalar", "missing", "extra-field", "array-body"],
)
async def test_predict_wrong_json_shape_is_422(client: httpx.AsyncClient, payload: Any) -> None:
    """Valid JSON of the wrong types or shape is 422 with Pydantic's list of problems."""
    body = assert_error(await client.post("/predict", json=payload), 422, "validation_error")
    assert isinstance(body["detail"], list)
    assert all({"loc", "msg", "type"} <= set(item) for item in body["detail"])


@pytest.mark.parametrize(
    ("path", "payload", "loc", "message"),
    [
        (
            "/predict",
            {"features": [5.1, "x", 1.4, 0.2]},
            ["features", 1],
            "row 0, feature 1: expected a number, got the string 'x'",
        ),
        (
            "/predict",
            {"features": {**dict(zip(FEATURES, SETOSA, strict=True)), "petal_width": [0.2]}},
            ["features", "petal_width"],
            "row 0, feature 'petal_width': expected a number, a string, a boolean or null,"
            " got a list",
        ),
        (
            "/predict-batch",
            {"batch": [SETOSA, [5.1, 3.5, True, 0.2]]},
            ["batch", 1, 2],
            "row 1, feature 2: expected a number, got the boolean true",
        ),
        (
            "/predict",
            {"features": "5.1"},
            ["features"],
            "row 0: expected a list of numbers or an object of feature name to number, "
            "got the string '5.1'",
        ),
    ],
    ids=["positional", "named", "batch-row", "not-a-row"],
)
async def test_predict_non_numeric_feature_is_one_clear_problem(
    client: httpx.AsyncClient, path: str, payload: Any, loc: list[Any], message: str
) -> None:
    """A bad value is one 422 problem naming row, feature and expected type (not one per shape)."""
    body = assert_error(await client.post(path, json=payload), 422, "validation_error")
    assert body["detail"] == [{"loc": loc, "msg": message, "type": body["detail"][0]["type"]}]


@pytest.mark.parametrize(
    ("value", "got"),
    [(None, "null"), ("5.1", "'5.1'"), (True, "true")],
    ids=["null", "str", "bool"],
)
async def test_predict_named_non_number_for_a_float_model_is_400(
    client: httpx.AsyncClient, value: object, got: str
) -> None:
    """A scalar that is not a number, sent by name to a float model, is its schema's 400."""
    features = {**dict(zip(FEATURES, SETOSA, strict=True)), "petal_width": value}
    body = assert_error(
        await client.post("/predict", json={"features": features}), 400, "invalid_feature_value"
    )
    assert body["detail"] == f"row 0, feature 'petal_width': expected a number, got {got}"


@pytest.mark.parametrize(
    "content",
    [b"hello", b"", b'{"features": [1, 2', b"\xff\xfe\x00\x01", b'{"features": ["\xe9"]}'],
    ids=["text", "empty", "truncated", "binary", "latin-1"],
)
@pytest.mark.parametrize("path", ["/predict", "/predict-batch"], ids=["predict", "batch"])
async def test_predict_body_not_json_is_400(
    client: httpx.AsyncClient, path: str, content: bytes
) -> None:
    """A body that is not JSON, or not UTF-8, is 400 invalid_json, never 500."""
    response = await client.post(path, content=content, headers=JSON)
    body = assert_error(response, 400, "invalid_json")
    assert "not valid JSON" in body["detail"]


async def test_predict_wrong_feature_count_says_expected_and_got(
    client: httpx.AsyncClient,
) -> None:
    """A row of the wrong width is 400 saying how many features were expected and got."""
    body = assert_error(
        await client.post("/predict", json={"features": [1.0, 2.0, 3.0]}),
        400,
        "wrong_feature_count",
    )
    assert body["detail"] == "expected 4 features, got 3"


async def test_predict_batch_wrong_feature_count_names_the_row(client: httpx.AsyncClient) -> None:
    """In a batch the message also names the row."""
    body = assert_error(
        await client.post("/predict-batch", json={"batch": [SETOSA, [1.0]]}),
        400,
        "wrong_feature_count",
    )
    assert body["detail"] == "expected 4 features, got 1 in row 1"


@pytest.mark.parametrize(
    ("literal", "shown"),
    [("NaN", "nan"), ("Infinity", "inf"), ("-Infinity", "-inf"), ("1e999", "inf")],
    ids=["nan", "infinity", "minus-infinity", "overflow"],
)
async def test_predict_non_finite_feature_names_row_and_column(
    client: httpx.AsyncClient, literal: str, shown: str
) -> None:
    """NaN, ±Infinity and overflowing numbers are 400 naming the row, column and feature."""
    content = f'{{"batch": [[5.1, 3.5, 1.4, 0.2], [5.1, {literal}, 1.4, 0.2]]}}'.encode()
    body = assert_error(
        await client.post("/predict-batch", content=content, headers=JSON),
        400,
        "non_finite_feature",
    )
    assert body["detail"].endswith(f"row 1, column 1 ('sepal_width') is {shown}")


@pytest.mark.parametrize(
    ("features", "code"),
    [
        ({**dict(zip(FEATURES, SETOSA, strict=True)), "colour": 1.0}, "unknown_feature"),
        (dict(zip(FEATURES[:3], SETOSA, strict=False)), "missing_feature"),
    ],
    ids=["unknown", "missing"],
)
async def test_predict_bad_feature_names_are_400(
    client: httpx.AsyncClient, features: dict[str, float], code: str
) -> None:
    """Unknown or missing feature names are 400 with their own codes."""
    assert_error(await client.post("/predict", json={"features": features}), 400, code)


async def test_predict_batch_empty_is_422(client: httpx.AsyncClient) -> None:
    """An empty batch is 422 empty_batch."""
    assert_error(await client.post("/predict-batch", json={"batch": []}), 422, "empty_batch")


async def test_predict_batch_too_many_rows_is_413(client: httpx.AsyncClient) -> None:
    """More rows than server.max_batch_rows is 413 naming the limit (rows counted unparsed)."""
    body = assert_error(
        await client.post("/predict-batch", json={"batch": [SETOSA] * (MAX_ROWS + 1)}),
        413,
        "batch_too_large",
    )
    assert body["detail"] == f"a batch may hold at most {MAX_ROWS} rows, got more"


@pytest.mark.parametrize(
    ("params", "code", "named"),
    [
        ({"model": "nope"}, "model_not_found", "'nope'"),
        ({"model": "iris", "model_version": "9"}, "version_not_found", "'9'"),
    ],
    ids=["model", "version"],
)
async def test_predict_unknown_model_or_version_is_404(
    client: httpx.AsyncClient, params: dict[str, str], code: str, named: str
) -> None:
    """An unknown model or version is 404 naming it and what is served."""
    response = await client.post("/predict", json={"features": SETOSA}, params=params)
    assert named in assert_error(response, 404, code)["detail"]


async def test_predict_model_not_loaded_is_503_with_reason(client: httpx.AsyncClient) -> None:
    """A model that failed to load is 503 with the load failure's reason."""
    response = await client.post("/predict", json={"features": SETOSA}, params={"model": "ghost"})
    body = assert_error(response, 503, "model_not_ready")
    assert "model file not found" in body["detail"]


async def test_predict_model_exception_is_generic_500(client: httpx.AsyncClient) -> None:
    """An exception inside the model is 500 with a generic message and no internal detail."""
    response = await client.post(
        "/predict", json={"features": [666.0, 0.0, 0.0, 0.0]}, params={"model": "failing"}
    )
    body = assert_error(response, 500, "prediction_failed")
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in response.text
    assert body["detail"] == "the model failed to compute a prediction; see the server log"


async def test_predict_model_exception_leaves_the_model_serving(client: httpx.AsyncClient) -> None:
    """After a failed prediction the same model answers the next good row."""
    await client.post(
        "/predict", json={"features": [666.0, 0.0, 0.0, 0.0]}, params={"model": "failing"}
    )
    response = await client.post("/predict", json={"features": SETOSA}, params={"model": "failing"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nope", 404, "not_found"),
        ("GET", "/predict", 405, "method_not_allowed"),
        ("DELETE", "/models", 405, "method_not_allowed"),
    ],
    ids=["unknown-path", "get-predict", "delete-models"],
)
async def test_http_errors_use_the_error_body(
    client: httpx.AsyncClient, method: str, path: str, status: int, code: str
) -> None:
    """Routing errors (unknown path, wrong method) use the same JSON body."""
    assert_error(await client.request(method, path), status, code)
