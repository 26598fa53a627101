"""Feature pipeline from config, in-process: pre-processor, named features, top_k, round/clip."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sklearn.pipeline import Pipeline

from modelserve.settings import load_settings
from tests import iris_versions as iv


@pytest.fixture(scope="module")
def pipeline_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Pipeline]:
    """scaler.joblib and model.joblib, and the Pipeline they make together."""
    out = tmp_path_factory.mktemp("pipeline")
    scaler, model = iv.scaler_and_model()
    return (
        iv.dump(scaler, out / "scaler.joblib"),
        iv.dump(model, out / "model.joblib"),
        Pipeline([("scale", scaler), ("model", model)]),
    )


@pytest.fixture
async def client(
    app_client: Any,
    tmp_path: Path,
    fake_models_dir: Path,
    pipeline_files: tuple[Path, Path, Pipeline],
) -> AsyncIterator[httpx.AsyncClient]:
    """iris (pre-processor + model, top_k 2 by default) and `sum` (rounded and clipped)."""
    scaler, model, _ = pipeline_files
    models = [
        iv.version_entry("iris", "1", model, preprocessor={"path": str(scaler)}, top_k=2),
        {
            "name": "sum",
            "path": str(fake_models_dir / "sum.joblib"),
            "output_round": 1,
            "output_clip": [0.0, 10.0],
        },
    ]
    config = iv.write_config(tmp_path / "c.yaml", models, cache={"backend": "none"})
    async with app_client(load_settings(config)) as http:
        yield http


async def test_preprocessor_result_equals_the_pipeline_on_raw_rows(
    client: httpx.AsyncClient, pipeline_files: tuple[Path, Path, Pipeline]
) -> None:
    """Raw rows go through the configured scaler, then the model, as in Pipeline(scaler, model)."""
    rows, _ = iv.iris()
    response = await client.post(
        "/predict-batch", json={"batch": rows.tolist()}, params={"top_k": "3"}
    )
    expected = pipeline_files[2].predict_proba(rows)
    body = response.json()
    assert body["predictions"] == [iv.LABELS[i] for i in expected.argmax(axis=1)]
    assert body["confidences"] == pytest.approx(expected.max(axis=1).tolist(), abs=1e-12)


async def test_config_top_k_limits_probabilities_by_default(client: httpx.AsyncClient) -> None:
    """`top_k` in the model's config limits the probabilities returned."""
    body = (await client.post("/predict", json={"features": iv.SETOSA_ROW})).json()
    assert len(body["probabilities"]) == 2
    assert next(iter(body["probabilities"])) == body["prediction"] == "setosa"


async def test_query_top_k_overrides_the_config(client: httpx.AsyncClient) -> None:
    """?top_k= beats the configured default."""
    response = await client.post(
        "/predict", json={"features": iv.SETOSA_ROW}, params={"top_k": "3"}
    )
    assert sorted(response.json()["probabilities"]) == sorted(iv.LABELS)


@pytest.mark.parametrize(
    ("row", "expected"),
    [([0.12, 0.1, 0.1, 0.1], 0.4), ([5.0, 5.0, 5.0, 5.0], 10.0), ([-3.0, 1.0, 0.5, 0.2], 0.0)],
    ids=["rounded", "clipped-high", "clipped-low"],
)
async def test_regression_output_is_clipped_and_rounded(
    client: httpx.AsyncClient, row: list[float], expected: float
) -> None:
    """output_clip bounds and output_round rounds a regressor's answer."""
    response = await client.post("/predict", json={"features": row}, params={"model": "sum"})
    assert response.json()["prediction"] == expected


@pytest.mark.parametrize(
    ("features", "code", "named"),
    [
        (
            dict(zip(iv.FEATURES[1:], iv.SETOSA_ROW[1:], strict=True)),
            "missing_feature",
            "sepal_length",
        ),
        (
            {**dict(zip(iv.FEATURES, iv.SETOSA_ROW, strict=True)), "colour": 1.0},
            "unknown_feature",
            "colour",
        ),
    ],
    ids=["missing", "unknown"],
)
async def test_named_feature_errors_name_the_feature(
    client: httpx.AsyncClient, features: dict[str, float], code: str, named: str
) -> None:
    """A missing or unknown feature name is a 400 whose detail names it."""
    response = await client.post("/predict", json={"features": features})
    assert (response.status_code, response.json()["code"]) == (400, code)
    assert named in response.json()["detail"]
