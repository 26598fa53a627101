"""Every exported metric moves by exactly what known traffic should add (read via /metrics)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import joblib
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelserve.settings import Settings
from tests.fakes import Gate, GatedClassifier, gate
from tests.prometheus import Samples, moved, value
from tests.unit.observability.conftest import iris_entry, scrape

pytestmark = pytest.mark.usefixtures("demo_models_dir")

SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [7.7, 3.0, 6.1, 2.3]
IRIS = {"model": "iris", "model_version": "1"}

AppClient = Callable[..., Any]
SettingsMaker = Callable[..., Settings]


def gated_model(tmp_path: Path, name: str, **batching: int) -> tuple[dict[str, Any], Gate]:
    """A config entry for a GatedClassifier named ``name`` and the gate that holds its calls."""
    path = tmp_path / f"{name}.joblib"
    gate_name = f"{name}-{uuid.uuid4().hex}"
    joblib.dump(GatedClassifier(gate_name).fit(None, None), path)
    return {"name": name, "path": str(path), "batching": batching}, gate(gate_name)


async def until_metrics(
    client: httpx.AsyncClient, name: str, expected: float, **labels: str
) -> Samples:
    """Scrape until ``name{labels}`` equals ``expected`` (bounded); return that scrape."""
    for _ in range(500):
        samples = await scrape(client)
        if samples.get((name, frozenset(labels.items()))) == expected:
            return samples
        await asyncio.sleep(0.01)
    raise AssertionError(f"{name}{labels} never reached {expected}")


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
        before = await scrape(client)
        for _ in range(3):
            await client.post("/predict", json={"features": SETOSA})
        after = await scrape(client)

    assert moved(before, after, "modelserve_http_requests_total", **labels) == 3


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

    assert moved(before, after, "modelserve_http_requests_total", **labels) == 2
    assert not [key for key in after if ("route", "/another-missing") in key[1]]


async def test_metrics_http_latency_histogram_counts_each_request(
    app_client: AppClient, small_settings: SettingsMaker
) -> None:
    """The request duration histogram gets one observation per /predict request."""
    labels = {"route": "/predict", "method": "POST"}
    name = "modelserve_http_request_duration_seconds_count"
    async with app_client(small_settings()) as client:
        before = await scrape(client)
        for _ in range(4):
            await client.post("/predict", json={"features": SETOSA})
        after = await scrape(client)

    assert moved(before, after, name, **labels) == 4


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
        return moved(before, after, name, **IRIS)

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

    for label, added in (("setosa", 3), ("virginica", 1)):
        assert moved(before, after, name, label=label, **IRIS) == added, label
    versicolor = (name, frozenset({**IRIS, "label": "versicolor"}.items()))
    assert after.get(versicolor, 0.0) == before.get(versicolor, 0.0)


async def test_metrics_batch_rows_histogram_sums_the_rows(
    app_client: AppClient, small_settings: SettingsMaker
) -> None:
    """Rows that went through the model add up in the batch-size histogram's sum."""
    settings = small_settings(cache={"backend": "none"})
    async with app_client(settings) as client:
        before = await scrape(client)
        await client.post("/predict-batch", json={"batch": [SETOSA] * 6})
        after = await scrape(client)

    assert moved(before, after, "modelserve_batch_rows_sum", **IRIS) == 6


async def test_metrics_errors_are_counted_by_code(
    app_client: AppClient, small_settings: SettingsMaker
) -> None:
    """A row of three features for a four-feature model counts one wrong_feature_count."""
    labels = {**IRIS, "code": "wrong_feature_count"}
    async with app_client(small_settings()) as client:
        before = await scrape(client)
        response = await client.post("/predict", json={"features": [1.0, 2.0, 3.0]})
        after = await scrape(client)

    assert response.status_code == 400
    assert moved(before, after, "modelserve_inference_errors_total", **labels) == 1


async def test_metrics_out_of_range_values_counted_per_feature(
    app_client: AppClient, small_settings: SettingsMaker
) -> None:
    """A petal length of 9.9 (declared range 1 to 7) counts once for that feature."""
    labels = {**IRIS, "feature": "petal_length"}
    name = "modelserve_feature_out_of_range_total"
    async with app_client(small_settings()) as client:
        before = await scrape(client)
        await client.post("/predict", json={"features": [5.1, 3.5, 9.9, 0.2]})
        after = await scrape(client)

    assert moved(before, after, name, **labels) == 1


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
        assert moved(before, after, name, result=result, **IRIS) == 1, result


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
        return moved(before, after, name, **labels, **extra)

    assert delta("modelserve_regression_output_count") == 2
    assert delta("modelserve_regression_output_bucket", le="10.0") == 2
    assert delta("modelserve_regression_output_bucket", le="1.0") == 0


async def test_metrics_shed_requests_are_counted(
    app_client: AppClient, small_settings: SettingsMaker, tmp_path: Path
) -> None:
    """With a call in the model and the one allowed row queued, the next request is shed."""
    entry, held = gated_model(tmp_path, "shed", max_queue_rows=1, max_batch_size=1)
    async with app_client(small_settings([entry], cache={"backend": "none"})) as client:
        before = await scrape(client)
        held.hold()
        first = asyncio.create_task(client.post("/predict?model=shed", json={"features": SETOSA}))
        await asyncio.to_thread(held.entered.wait, 10)
        second = asyncio.create_task(client.post("/predict?model=shed", json={"features": SETOSA}))
        await until_metrics(client, "modelserve_queue_rows", 1, model="shed", model_version="1")
        third = await client.post("/predict?model=shed", json={"features": SETOSA})
        held.open()
        answered = [(await first).status_code, (await second).status_code]
        after = await scrape(client)

    assert (answered, third.status_code, third.json()["code"]) == ([200, 200], 503, "overloaded")
    shed = moved(before, after, "modelserve_requests_shed_total", model="shed", model_version="1")
    assert shed == 1


async def test_metrics_queue_in_flight_and_durations_while_a_call_is_held(
    app_client: AppClient, small_settings: SettingsMaker, tmp_path: Path
) -> None:
    """A held call and a queued 3-row batch show in the queue, in-flight and duration series.

    While held: 3 rows queued, 3 requests in flight (the two and the scrape). After: both
    batches add to the inference-duration and queue-wait histograms, each by at least the
    time the test held them, and the gauges return to 0 queued rows and 1 request (the scrape).
    """
    entry, held = gated_model(tmp_path, "held")
    labels = {"model": "held", "model_version": "1"}
    async with app_client(small_settings([entry], cache={"backend": "none"})) as client:
        before = await scrape(client)
        held.hold()
        single = asyncio.create_task(client.post("/predict?model=held", json={"features": SETOSA}))
        await asyncio.to_thread(held.entered.wait, 10)
        entered_at = time.perf_counter()
        batch = asyncio.create_task(
            client.post("/predict-batch?model=held", json={"batch": [SETOSA] * 3})
        )
        during = await until_metrics(client, "modelserve_queue_rows", 3, **labels)
        queued_at = time.perf_counter()
        in_flight_during = value(during, "modelserve_http_requests_in_flight")
        held.open()
        opened_at = time.perf_counter()
        answered = [(await single).status_code, (await batch).status_code]
        after = await scrape(client)

    assert answered == [200, 200]
    assert in_flight_during == 3
    assert value(after, "modelserve_http_requests_in_flight") == 1
    assert value(after, "modelserve_queue_rows", **labels) == 0
    assert moved(before, after, "modelserve_inference_duration_seconds_count", **labels) == 2
    assert moved(before, after, "modelserve_batch_rows_sum", **labels) == 4
    held_s = moved(before, after, "modelserve_inference_duration_seconds_sum", **labels)
    assert held_s >= opened_at - entered_at
    assert moved(before, after, "modelserve_queue_wait_seconds_count", **labels) == 2
    waited_s = moved(before, after, "modelserve_queue_wait_seconds_sum", **labels)
    assert waited_s >= opened_at - queued_at


async def test_metrics_cancelled_request_is_counted_and_never_computed(
    app_client: AppClient, small_settings: SettingsMaker, tmp_path: Path
) -> None:
    """A queued request whose caller goes away counts one cancellation and its five rows,
    which never run."""
    entry, held = gated_model(tmp_path, "gone")
    labels = {"model": "gone", "model_version": "1"}
    async with app_client(small_settings([entry], cache={"backend": "none"})) as client:
        before = await scrape(client)
        held.hold()
        computed_before = held.rows_computed
        first = asyncio.create_task(client.post("/predict?model=gone", json={"features": SETOSA}))
        await asyncio.to_thread(held.entered.wait, 10)
        abandoned = asyncio.create_task(
            client.post("/predict-batch?model=gone", json={"batch": [SETOSA] * 5})
        )
        await until_metrics(client, "modelserve_queue_rows", 5, **labels)
        abandoned.cancel()
        await until_metrics(client, "modelserve_queue_rows", 0, **labels)
        held.open()
        assert (await first).status_code == 200
        after = await scrape(client)

    assert abandoned.cancelled()
    assert moved(before, after, "modelserve_requests_cancelled_total", **labels) == 1
    assert moved(before, after, "modelserve_cancelled_rows_total", **labels) == 5
    assert held.rows_computed - computed_before == 1


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
        before = await scrape(client)
        response = await client.post("/predict", json={"features": SETOSA})
        after = await scrape(client)

    assert response.status_code == 504
    assert moved(before, after, "modelserve_timeouts_total", **labels) == 1


async def test_metrics_rate_limited_requests_are_counted(
    app_client: AppClient, small_settings: SettingsMaker
) -> None:
    """Over a limit of one per minute, the second request is a 429 counted for its route."""
    settings = small_settings(rate_limit={"enabled": True, "predict": "1/minute"})
    async with app_client(settings) as client:
        before = await scrape(client)
        await client.post("/predict", json={"features": SETOSA})
        refused = await client.post("/predict", json={"features": SETOSA})
        after = await scrape(client)

    assert refused.status_code == 429
    assert moved(before, after, "modelserve_rate_limited_total", route="/predict") == 1


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
        before = await scrape(client)
        await client.post("/predict-batch", json={"batch": [SETOSA, VIRGINICA]})
        series = (name, frozenset(labels.items()))
        for _ in range(200):  # the shadow runs off the request path
            after = await scrape(client)
            if after.get(series, 0.0) - before.get(series, 0.0) >= 2:
                break
            await asyncio.sleep(0.01)

    assert moved(before, after, name, **labels) == 2


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


async def test_metrics_drift_class_mix_and_mean_confidence_follow_the_traffic(
    app_client: AppClient, small_settings: SettingsMaker, demo_models_dir: Path
) -> None:
    """After only virginica rows, the class-mix shift is the reference's non-virginica share
    and the mean-confidence gauge is the mean of the confidences the answers carried."""
    reference = orjson.loads((demo_models_dir / "iris.profile.json").read_bytes())["class_mix"]
    async with app_client(small_settings()) as client:
        response = await client.post("/predict-batch", json={"batch": [VIRGINICA] * 150})
        await client.get("/stats")
        samples = await scrape(client)

    assert set(response.json()["predictions"]) == {"virginica"}
    confidences = response.json()["confidences"]
    shift = value(samples, "modelserve_drift_class_mix_shift", **IRIS)
    assert shift == pytest.approx(1 - reference["virginica"], abs=1e-6)
    mean_confidence = value(samples, "modelserve_drift_mean_confidence", **IRIS)
    assert mean_confidence == pytest.approx(sum(confidences) / len(confidences), abs=1e-6)
