"""POST /predict, POST /predict-batch, GET /models and the probes, in-process."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import joblib
import pytest
from sklearn.pipeline import Pipeline

from modelserve.demo import FEATURES, LABELS
from modelserve.settings import Settings

SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.7, 3.0, 5.2, 2.3]


@pytest.fixture
def models(demo_models_dir: Path, fake_models_dir: Path, tmp_path: Path) -> list[dict[str, Any]]:
    """iris (two versions, v2 default), a regressor and an optional model that cannot load."""
    iris = {
        "name": "iris",
        "path": demo_models_dir / "iris.joblib",
        "labels": LABELS,
        "feature_names": FEATURES,
    }
    return [
        {**iris, "version": "1"},
        {**iris, "version": "2", "default": True},
        {"name": "sum", "path": fake_models_dir / "sum.joblib", "output_round": 2},
        {"name": "ghost", "path": tmp_path / "absent.joblib", "required": False},
    ]


@pytest.fixture
async def client(
    app_client: Callable[..., Any],
    settings_factory: Callable[..., Settings],
    models: list[dict[str, Any]],
) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of an app serving ``models`` (no cache, so every call predicts)."""
    settings = settings_factory(models=models, default_model="iris", cache={"backend": "none"})
    async with app_client(settings) as http:
        yield http


@pytest.fixture(scope="module")
def pipeline(demo_models_dir: Path) -> Pipeline:
    model: Pipeline = joblib.load(demo_models_dir / "iris.joblib")
    return model


async def test_predict_answers_label_confidence_and_probabilities(
    client: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    """/predict answers the model's label, its top-1 probability and every label's probability."""
    response = await client.post("/predict", json={"features": VIRGINICA})
    assert response.status_code == 200
    body = response.json()
    expected = pipeline.predict_proba([VIRGINICA])[0].tolist()
    assert body["prediction"] == LABELS[max(range(3), key=expected.__getitem__)]
    assert body["probabilities"] == dict(zip(LABELS, expected, strict=True))
    assert body["confidence"] == max(expected)


async def test_predict_names_model_version_and_request(client: httpx.AsyncClient) -> None:
    """/predict says which model and version answered, how long it took and when, and for whom.

    The server's time is more than nothing and no more than the client waited in all.
    """
    started = time.perf_counter()
    response = await client.post(
        "/predict", json={"features": SETOSA}, headers={"X-Request-ID": "abc-123"}
    )
    waited_ms = (time.perf_counter() - started) * 1000
    body = response.json()
    assert (body["model"], body["model_version"], body["request_id"]) == ("iris", "2", "abc-123")
    assert response.headers["X-Model-Version"] == "2"
    assert 0 < body["latency_ms"] <= waited_ms


async def test_predict_timestamp_is_utc_iso8601(client: httpx.AsyncClient) -> None:
    """The timestamp is ISO-8601 in UTC, marked with Z."""
    body = (await client.post("/predict", json={"features": SETOSA})).json()
    assert body["timestamp"].endswith("Z")
    stamp = dt.datetime.fromisoformat(body["timestamp"])
    assert stamp.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.UTC) - stamp) < dt.timedelta(minutes=1)


async def test_predict_named_features_equal_positional(client: httpx.AsyncClient) -> None:
    """Features sent by name give the same answer as the same values sent in order."""
    named = dict(zip(reversed(FEATURES), reversed(VIRGINICA), strict=True))
    by_name = (await client.post("/predict", json={"features": named})).json()
    by_position = (await client.post("/predict", json={"features": VIRGINICA})).json()
    assert by_name["probabilities"] == by_position["probabilities"]


@pytest.mark.parametrize(
    ("params", "headers", "version"),
    [
        ({"model_version": "1"}, {}, "1"),
        ({}, {"X-Model-Version": "1"}, "1"),
        ({"model": "iris"}, {}, "2"),
    ],
    ids=["query", "header", "default-version"],
)
async def test_predict_selects_model_version(
    client: httpx.AsyncClient, params: dict[str, str], headers: dict[str, str], version: str
) -> None:
    """?model_version= or the X-Model-Version header pick a version; else the default answers."""
    response = await client.post(
        "/predict", json={"features": SETOSA}, params=params, headers=headers
    )
    assert response.json()["model_version"] == version


async def test_predict_top_k_limits_probabilities(client: httpx.AsyncClient) -> None:
    """?top_k=1 returns only the most probable label's probability."""
    response = await client.post("/predict", json={"features": SETOSA}, params={"top_k": "1"})
    assert list(response.json()["probabilities"]) == ["setosa"]


@pytest.mark.parametrize(
    "top_k",
    ["0", "-1", "two", "1.5", "\u00b2"],
    ids=["zero", "negative", "word", "fraction", "superscript-two"],
)
async def test_predict_invalid_top_k_is_400(client: httpx.AsyncClient, top_k: str) -> None:
    """A top_k that is not a positive integer is refused with 400 naming it ("²" passed
    str.isdigit() and failed int(): a 500)."""
    response = await client.post("/predict", json={"features": SETOSA}, params={"top_k": top_k})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_input"
    assert top_k in response.json()["detail"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [({"top_k": "4"}, "at most 3"), ({"top_k": "1", "model": "sum"}, "regressor")],
    ids=["above-class-count", "regressor"],
)
async def test_predict_out_of_range_top_k_is_400(
    client: httpx.AsyncClient, params: dict[str, str], expected: str
) -> None:
    """top_k above the class count, or on a regressor, is a 400 saying why (not ignored)."""
    response = await client.post("/predict", json={"features": SETOSA}, params=params)
    assert (response.status_code, response.json()["code"]) == (400, "invalid_input")
    assert expected in response.json()["detail"]


async def test_predict_regressor_answers_a_number(client: httpx.AsyncClient) -> None:
    """A regressor answers its (rounded) number with no confidence or probabilities."""
    response = await client.post(
        "/predict", json={"features": [1.111, 2.222, 3.333, 4.444]}, params={"model": "sum"}
    )
    body = response.json()
    assert (body["prediction"], body["confidence"], body["probabilities"]) == (11.11, None, None)


async def test_predict_batch_answers_every_row_in_order(
    client: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    """/predict-batch answers one label and confidence per row, in request order."""
    rows = [VIRGINICA, SETOSA, VIRGINICA]
    response = await client.post("/predict-batch", json={"batch": rows})
    body = response.json()
    expected = pipeline.predict_proba(rows)
    assert body["predictions"] == [LABELS[i] for i in expected.argmax(axis=1)]
    assert body["confidences"] == expected.max(axis=1).tolist()
    assert (body["model"], body["model_version"]) == ("iris", "2")
    assert "probabilities" not in body


async def test_predict_batch_probabilities_on_request(client: httpx.AsyncClient) -> None:
    """?probabilities=true adds each row's probabilities per label."""
    response = await client.post(
        "/predict-batch", json={"batch": [SETOSA, VIRGINICA]}, params={"probabilities": "true"}
    )
    probabilities = response.json()["probabilities"]
    assert [sorted(p) for p in probabilities] == [sorted(LABELS)] * 2


async def test_predict_batch_regressor_has_no_confidences(client: httpx.AsyncClient) -> None:
    """A regressor's batch answer has numbers and null confidences."""
    response = await client.post(
        "/predict-batch", json={"batch": [[1, 1, 1, 1], [0, 0, 0, 2.5]]}, params={"model": "sum"}
    )
    body = response.json()
    assert (body["predictions"], body["confidences"]) == ([4.0, 2.5], None)


async def test_models_lists_every_version_with_its_state(client: httpx.AsyncClient) -> None:
    """/models shows each version's format, width, names, labels and status with reason."""
    body = (await client.get("/models")).json()
    by_key = {(m["name"], m["version"]): m for m in body["models"]}
    assert body["default_model"] == "iris"
    assert set(by_key) == {("iris", "1"), ("iris", "2"), ("sum", "1"), ("ghost", "1")}
    iris = by_key[("iris", "2")]
    assert (iris["format"], iris["n_features"], iris["status"]) == ("sklearn", 4, "ready")
    assert (iris["feature_names"], iris["labels"], iris["is_default"]) == (FEATURES, LABELS, True)
    ghost = by_key[("ghost", "1")]
    assert ghost["status"] == "failed"
    assert "model file not found" in ghost["reason"]


async def test_health_lists_model_statuses(client: httpx.AsyncClient) -> None:
    """/health is 200 and says which versions are ready."""
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["models"] == {
        "iris:1": "ready",
        "iris:2": "ready",
        "sum:1": "ready",
        "ghost:1": "failed",
    }


async def test_ready_is_200_when_required_models_are_ready(client: httpx.AsyncClient) -> None:
    """/ready is 200 when every required version is ready (the optional failed one aside)."""
    response = await client.get("/ready")
    assert (response.status_code, response.json()) == (200, {"ready": True, "reasons": []})
