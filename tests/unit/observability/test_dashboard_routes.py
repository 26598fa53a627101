"""GET /stats and GET /dashboard in-process: the JSON the page polls, and the page's assets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from modelserve.api.routes.dashboard import STATS_CACHE_S, StatsCache
from modelserve.settings import Settings

SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [7.7, 3.0, 6.1, 2.3]

AppClient = Callable[..., Any]
SettingsMaker = Callable[..., Settings]


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _iris(stats: dict[str, Any]) -> dict[str, Any]:
    (model,) = [m for m in stats["models"] if m["model"] == "iris"]
    assert isinstance(model, dict)
    return model


async def test_stats_counts_predictions_and_class_mix(
    app_client: AppClient, small_settings: SettingsMaker
) -> None:
    """Three setosa and one virginica prediction show as 4 predictions and a 75/25 mix."""
    async with app_client(small_settings()) as client:
        for row in (SETOSA, SETOSA, SETOSA, VIRGINICA):
            await client.post("/predict", json={"features": row})
        response = await client.get("/stats")

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    iris = _iris(response.json())
    assert iris["predictions"] == 4
    assert iris["class_mix"] == {"setosa": 0.75, "virginica": 0.25}
    assert sum(b["count"] for b in iris["confidence"]["histogram"]) == 4


async def test_stats_traffic_ignores_the_dashboards_own_polling(
    app_client: AppClient, small_settings: SettingsMaker
) -> None:
    """Polling /stats, /metrics and probes does not count as traffic; /predict does."""
    clock = Clock()
    wrapper = app_client(small_settings())
    wrapper.app.state.stats_cache = StatsCache(clock=clock)
    async with wrapper as client:
        await client.get("/stats")
        await client.get("/metrics")
        await client.get("/health")
        await client.post("/predict", json={"features": SETOSA})
        await client.post("/predict", json={"features": [1.0]})  # 400
        clock.now += STATS_CACHE_S
        traffic = (await client.get("/stats")).json()["traffic"]

    assert traffic["requests"] == 2
    assert traffic["status"] == {"200": 1, "400": 1}
    assert traffic["client_error_rate"] == 0.5
    assert traffic["error_rate"] == 0.0
    assert traffic["latency_ms"]["p50"] is not None


async def test_stats_reports_psi_per_feature_against_the_profile(
    app_client: AppClient, small_settings: SettingsMaker
) -> None:
    """Shifted petal lengths show a PSI over the threshold for that feature only."""
    rows = [[5.8, 3.0, 6.5, 1.3], [6.0, 2.9, 6.4, 1.4], [5.5, 3.1, 6.6, 1.2]] * 50
    async with app_client(small_settings()) as client:
        await client.post("/predict-batch", json={"batch": rows})
        drift = _iris((await client.get("/stats")).json())["drift"]

    assert drift["has_profile"] is True
    assert drift["window_rows"] == 150
    assert drift["psi"]["petal_length"] > drift["psi_threshold"] == 0.2
    assert drift["reference_class_mix"]["setosa"] == pytest.approx(1 / 3, abs=0.01)


async def test_stats_lists_every_configured_version_with_its_status(
    app_client: AppClient, small_settings: SettingsMaker
) -> None:
    """A version without traffic since the app started is listed with zero predictions."""
    async with app_client(small_settings()) as client:
        stats = (await client.get("/stats")).json()

    iris = _iris(stats)
    assert (iris["status"], iris["format"], iris["predictions"]) == ("ready", "sklearn", 0)
    assert stats["ready"] is True
    assert stats["workers"] == 1


async def test_stats_says_why_a_process_whose_models_serve_is_not_ready(
    app_client: AppClient, small_settings: SettingsMaker
) -> None:
    """A draining process reads not ready in /stats with the reason /ready gives, not none."""
    wrapper = app_client(small_settings())
    async with wrapper as client:
        wrapper.app.state.health.start_draining()  # what SIGTERM does first
        stats = (await client.get("/stats")).json()
        ready = await client.get("/ready")

    assert (stats["ready"], stats["draining"], stats["reasons"]) == (False, True, ["shutting down"])
    assert _iris(stats)["status"] == "ready"
    assert (ready.status_code, ready.json()["detail"]) == (503, "shutting down")


async def test_dashboard_page_is_served_with_its_assets(
    app_client: AppClient, small_settings: SettingsMaker
) -> None:
    """The page and the script and stylesheet it references come from the package."""
    async with app_client(small_settings()) as client:
        page = await client.get("/dashboard")
        script = await client.get("/dashboard/static/dashboard.js")
        style = await client.get("/dashboard/static/dashboard.css")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/dashboard/static/dashboard.js" in page.text
    assert "/dashboard/static/dashboard.css" in page.text
    assert script.status_code == style.status_code == 200
    assert 'fetch("/stats"' in script.text
    assert "http://" not in page.text + script.text + style.text  # no CDN, no external assets


async def test_dashboard_static_assets_are_labelled_by_mount(
    app_client: AppClient, small_settings: SettingsMaker
) -> None:
    """Asset requests count under the mount's template, not their raw paths."""
    async with app_client(small_settings()) as client:
        await client.get("/dashboard/static/dashboard.js")
        text = (await client.get("/metrics")).text

    assert 'route="/dashboard/static"' in text
    assert "dashboard.js" not in text


async def test_stats_body_is_reused_for_one_second(
    app_client: AppClient, small_settings: SettingsMaker
) -> None:
    """Within STATS_CACHE_S every /stats call gets the same body (built once); after it, a
    fresh one that counts the predictions made meanwhile."""
    clock = Clock()
    wrapper = app_client(small_settings())
    wrapper.app.state.stats_cache = StatsCache(clock=clock)
    async with wrapper as client:
        first = await client.get("/stats")
        for _ in range(2):
            await client.post("/predict", json={"features": SETOSA})
        clock.now += STATS_CACHE_S - 0.01
        cached = await client.get("/stats")
        clock.now += 0.01
        fresh = await client.get("/stats")

    assert STATS_CACHE_S == 1.0
    assert cached.content == first.content
    assert _iris(first.json())["predictions"] == 0
    assert _iris(fresh.json())["predictions"] == 2
