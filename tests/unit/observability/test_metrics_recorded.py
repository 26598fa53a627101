"""Every exported metric moves by exactly what known traffic should add (read via /metrics)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelserve.settings import Settings
from tests.unit.observability.conftest import iris_entry, scrape, value

pytestmark = pytest.mark.usefixtures("demo_models_dir")

SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [7.7, 3.0, 6.1, 2.3]
IRIS = {"model": "iris", "model_version": "1"}

AppClient = Callable[..., Any]
SettingsMaker = Callable[..., Settings]


async def test_metrics_text_parses_and_uses_the_prefix(
    app_client: AppClient, small_settings: SettingsMaker
) -> None:
    """/metrics is Prometheus text that the official parser reads; ours are modelserve_*."""
    async with app_client(small_settings()) as client:
        await client.post("/predict", json={"features": SETOSA})
        response = await client.get("/metrics")

    assert response.headers["content-type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(response.text)}
    ours = {n for n in names if n.startswith("modelserve_")}
    assert {"modelserve_http_requests", "modelserve_predictions", "modelserve_model_info"} <= ours


async def test_metrics_http_requests_counted_by_route_template(
    app_client: AppClient, small_settings: SettingsMaker
) -> None:
    """Three /predict answers add three to their route/method/status series."""
    labels = {"route": "/predict", "method": "POST", "status": "200"}
    async with app_client(small_settings()) as client:
        before = value(await scrape(client), "modelserve_http_requests_total", **labels)
        for _ in range(3):
            await client.post("/predict", json={"features": SETOSA})
        after = await scrape(client)

    assert value(after, "modelserve_http_requests_total", **labels) == before + 3


async def test_metrics_unknown_paths_share_one_unmatched_route(
    app_client: AppClient, small_settings: SettingsMaker
) -> None:
    """Raw paths never become labels: two different 404 paths count as route=unmatched."""
    labels = {"route": "unmatched", "method": "GET", "status": "404"}
    async with app_client(small_settings()) as client:
        before = await scrape(client)
        await client.get("/no/such/path/1")
        await client.get("/another-missing")
        after = await scrape(client)

    assert value(after, "modelserve_http_requests_total", **labels) == (
        value(before, "modelserve_http_requests_total", **labels) + 2
    )
    assert not [key for key in after if ("route", "/another-missing") in key[1]]


async def test_metrics_http_latency_histogram_counts_each_request(
    app_client: AppClient, small_settings: SettingsMaker
) -> None:
    """The request duration histogram gets one observation per /predict request."""
    labels = {"route": "/predict", "method": "POST"}
    name = "modelserve_http_request_duration_seconds_count"
    async with app_client(small_settings()) as client:
        before = value(await scrape(client), name, **labels)
        for _ in range(4):
            await client.post("/predict", json={"features": SETOSA})
        after = await scrape(client)

    assert value(after, name, **labels) == before + 4


async def test_metrics_predictions_count_requests_and_rows(
    app_client: AppClient, small_settings: SettingsMaker
) -> None:
    """Two single rows and a batch of five are three predictions and seven rows."""
    async with app_client(small_settings()) as client:
        before = await scrape(client)
        await client.post("/predict", json={"features": SETOSA})
        await client.post("/predict", json={"features": VIRGINICA})
        await client.post("/predict-batch", json={"batch": [SETOSA] * 5})
        after = await scrape(client)

    def delta(name: str) -> float:
        return value(after, name, **IRIS) - value(before, name, **IRIS)

    assert delta("modelserve_predictions_total") == 3
    assert delta("modelserve_rows_predicted_total") == 7
    assert delta("modelserve_prediction_duration_seconds_count") == 3
    assert delta("modelserve_prediction_confidence_count") == 7


async def test_metrics_predicted_class_counts_each_label(
    app_client: AppClient, small_settings: SettingsMaker
) -> None:
    """Three setosa rows and one virginica row add 3 and 1 to their label series."""
    name = "modelserve_predicted_class_total"
    async with app_client(small_settings()) as client:
        before = await scrape(client)
        await client.post("/predict-batch", json={"batch": [SETOSA, SETOSA, VIRGINICA, SETOSA]})
        after = await scrape(client)

    for label, added in (("setosa", 3), ("virginica", 1), ("versicolor", 0)):
        moved = value(after, name, label=label, **IRIS) - value(before, name, label=label, **IRIS)
        assert moved == added, label


async def test_metrics_batch_rows_histogram_sums_the_rows(
    app_client: AppClient, small_settings: SettingsMaker
) -> None:
    """Rows that went through the model add up in the batch-size histogram's sum."""
    settings = small_settings(cache={"backend": "none"})
    async with app_client(settings) as client:
        before = await scrape(client)
        await client.post("/predict-batch", json={"batch": [SETOSA] * 6})
        after = await scrape(client)

    name = "modelserve_batch_rows_sum"
    assert value(after, name, **IRIS) - value(before, name, **IRIS) == 6


async def test_metrics_errors_are_counted_by_code(
    app_client: AppClient, small_settings: SettingsMaker
) -> None:
    """A row of three features for a four-feature model counts one wrong_feature_count."""
    labels = {**IRIS, "code": "wrong_feature_count"}
    async with app_client(small_settings()) as client:
        before = value(await scrape(client), "modelserve_inference_errors_total", **labels)
        response = await client.post("/predict", json={"features": [1.0, 2.0, 3.0]})
        after = value(await scrape(client), "modelserve_inference_errors_total", **labels)

    assert response.status_code == 400
    assert after == before + 1


async def test_metrics_out_of_range_values_counted_per_feature(
    app_client: AppClient, small_settings: SettingsMaker
) -> None:
    """A petal length of 9.9 (declared range 1 to 7) counts once for that feature."""
    labels = {**IRIS, "feature": "petal_length"}
    name = "modelserve_feature_out_of_range_total"
    async with app_client(small_settings()) as client:
        before = value(await scrape(client), name, **labels)
        await client.post("/predict", json={"features": [5.1, 3.5, 9.9, 0.2]})
        after = value(await scrape(client), name, **labels)

    assert after == before + 1


async def test_metrics_cache_counts_misses_then_hits(
    app_client: AppClient, small_settings: SettingsMaker
) -> None:
    """The same row twice is one cache miss, then one hit."""
    name = "modelserve_cache_requests_total"
    row = [5.0, 3.4, 1.5, 0.2]
    async with app_client(small_settings(cache={"backend": "memory"})) as client:
        before = await scrape(client)
        await client.post("/predict", json={"features": row})
        await client.post("/predict", json={"features": row})
        after = await scrape(client)

    for result in ("miss", "hit"):
        moved = value(after, name, result=result, **IRIS) - value(
            before, name, result=result, **IRIS
        )
        assert moved == 1, result


async def test_metrics_model_info_and_durations_after_loading(
    app_client: AppClient, small_settings: SettingsMaker
) -> None:
    """A loaded version shows info{status=ready}=1, ready=1 and positive load/warm-up times."""
    async with app_client(small_settings()) as client:
        samples = await scrape(client)

    info = {**IRIS, "format": "sklearn"}
    assert value(samples, "modelserve_model_info", status="ready", **info) == 1
    assert value(samples, "modelserve_model_info", status="loading", **info) == 0
    assert value(samples, "modelserve_model_ready", **IRIS) == 1
    assert value(samples, "modelserve_model_load_seconds", **IRIS) > 0
    assert value(samples, "modelserve_model_warmup_seconds", **IRIS) > 0


async def test_metrics_failed_model_shows_status_failed(
    app_client: AppClient, small_settings: SettingsMaker, fake_models_dir: Path
) -> None:
    """A model that cannot load is info{status=failed}=1 and ready=0."""
    broken = {"name": "broken", "path": str(fake_models_dir / "corrupt.joblib"), "required": False}
    async with app_client(small_settings([broken])) as client:
        samples = await scrape(client)

    labels = {"model": "broken", "model_version": "1"}
    assert value(samples, "modelserve_model_info", format="sklearn", status="failed", **labels) == 1
    assert value(samples, "modelserve_model_ready", **labels) == 0


async def test_metrics_process_metrics_are_exported(
    app_client: AppClient, small_settings: SettingsMaker
) -> None:
    """One worker, its resident memory, open files and CPU time are exported."""
    async with app_client(small_settings()) as client:
        samples = await scrape(client)

    assert value(samples, "modelserve_workers") == 1
    assert value(samples, "modelserve_process_resident_memory_bytes") > 10_000_000
    assert value(samples, "modelserve_process_open_fds") > 0
    assert value(samples, "modelserve_process_cpu_seconds_total") > 0


async def test_metrics_regression_outputs_are_observed(
    app_client: AppClient, small_settings: SettingsMaker, fake_models_dir: Path
) -> None:
    """A regressor's answers 10 and 5 land in the regression histogram's (1, 10] bucket."""
    model = {"name": "summer", "path": str(fake_models_dir / "sum.joblib"), "n_features": 4}
    labels = {"model": "summer", "model_version": "1"}
    async with app_client(small_settings([model])) as client:
        before = await scrape(client)
        await client.post("/predict-batch", json={"batch": [[1, 2, 3, 4], [0, 0, 0, 5]]})
        after = await scrape(client)

    def delta(name: str, **extra: str) -> float:
        return value(after, name, **labels, **extra) - value(before, name, **labels, **extra)

    assert delta("modelserve_regression_output_count") == 2
    assert delta("modelserve_regression_output_bucket", le="10.0") == 2
    assert delta("modelserve_regression_output_bucket", le="1.0") == 0


async def test_metrics_shed_requests_are_counted(
    app_client: AppClient, small_settings: SettingsMaker, fake_models_dir: Path
) -> None:
    """With one row of queue, a third concurrent request is shed: 503 and one shed count."""
    model = {
        "name": "slow",
        "path": str(fake_models_dir / "slowish.joblib"),
        "batching": {"max_queue_rows": 1, "max_batch_size": 1},
    }
    labels = {"model": "slow", "model_version": "1"}
    async with app_client(small_settings([model], cache={"backend": "none"})) as client:
        before = value(await scrape(client), "modelserve_requests_shed_total", **labels)
        first = asyncio.create_task(client.post("/predict", json={"features": SETOSA}))
        await asyncio.sleep(0.05)  # the first is in the model, so the next one queues
        second = asyncio.create_task(client.post("/predict", json={"features": SETOSA}))
        await asyncio.sleep(0.05)
        third = await client.post("/predict", json={"features": SETOSA})
        await asyncio.gather(first, second)
        after = value(await scrape(client), "modelserve_requests_shed_total", **labels)

    assert third.status_code == 503
    assert third.json()["code"] == "overloaded"
    assert after == before + 1


async def test_metrics_timeouts_are_counted_by_stage(
    app_client: AppClient, small_settings: SettingsMaker, fake_models_dir: Path
) -> None:
    """A 200 ms model with a 50 ms deadline answers 504 and counts one inference timeout."""
    model = {
        "name": "late",
        "path": str(fake_models_dir / "slowish.joblib"),
        "batching": {"timeout_ms": 50},
    }
    labels = {"model": "late", "model_version": "1", "stage": "inference"}
    async with app_client(small_settings([model], cache={"backend": "none"})) as client:
        before = value(await scrape(client), "modelserve_timeouts_total", **labels)
        response = await client.post("/predict", json={"features": SETOSA})
        after = value(await scrape(client), "modelserve_timeouts_total", **labels)

    assert response.status_code == 504
    assert after == before + 1


async def test_metrics_rate_limited_requests_are_counted(
    app_client: AppClient, small_settings: SettingsMaker
) -> None:
    """Over a limit of one per minute, the second request is a 429 counted for its route."""
    settings = small_settings(rate_limit={"enabled": True, "predict": "1/minute"})
    async with app_client(settings) as client:
        before = value(await scrape(client), "modelserve_rate_limited_total", route="/predict")
        await client.post("/predict", json={"features": SETOSA})
        refused = await client.post("/predict", json={"features": SETOSA})
        after = value(await scrape(client), "modelserve_rate_limited_total", route="/predict")

    assert refused.status_code == 429
    assert after == before + 1


async def test_metrics_shadow_agreement_is_counted(
    app_client: AppClient, small_settings: SettingsMaker, demo_models_dir: Path
) -> None:
    """A shadow copy of the same model agrees on every row it is sent."""
    live = iris_entry(demo_models_dir, version="1")
    shadow = iris_entry(demo_models_dir, version="2")
    settings = small_settings([live, shadow], routing={"iris": {"shadow": "2"}})
    labels = {"model": "iris", "live_version": "1", "shadow_version": "2", "result": "agree"}
    name = "modelserve_shadow_comparisons_total"
    async with app_client(settings) as client:
        before = value(await scrape(client), name, **labels)
        await client.post("/predict-batch", json={"batch": [SETOSA, VIRGINICA]})
        for _ in range(200):  # the shadow runs off the request path
            after = value(await scrape(client), name, **labels)
            if after >= before + 2:
                break
            await asyncio.sleep(0.01)

    assert after == before + 2


async def test_metrics_drift_gauges_follow_the_traffic(
    app_client: AppClient, small_settings: SettingsMaker
) -> None:
    """After shifted traffic and a /stats read, petal_length's PSI gauge is over 0.2."""
    rows = [[5.8, 3.0, 4.3 + 2.0, 1.3]] * 150
    async with app_client(small_settings()) as client:
        await client.post("/predict-batch", json={"batch": rows})
        await client.get("/stats")
        samples = await scrape(client)

    psi = value(samples, "modelserve_drift_feature_psi", feature="petal_length", **IRIS)
    assert psi > 0.2
    assert value(samples, "modelserve_drift_window_rows", **IRIS) == 150
