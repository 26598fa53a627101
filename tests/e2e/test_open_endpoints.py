"""What open endpoints give away, against real servers: generic readiness, protected
operational views, docs without third-party script, dashboard headers, failed-key limits."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import IRIS_ONNX, RunningServer, polling_client, write_config

pytestmark = pytest.mark.e2e

KEY = "e2e-open-ops-2b4d6f8a0c1e3a5c"
WRONG_KEY = "e2e-open-wrong-9f7d5b3a1e0c8a6e"
HIDDEN_DIR = "private-artifacts-7c1e"
SETOSA = [5.1, 3.5, 1.4, 0.2]


def _auth(**extra: object) -> dict[str, object]:
    keys = [{"name": "ops", "key": KEY, "scopes": ["predict", "admin"]}]
    return {"enabled": True, "keys": keys, **extra}


def _iris(demo_models_dir: Path) -> dict[str, object]:
    return {"name": "iris", "path": str(demo_models_dir / IRIS_ONNX)}


@pytest.fixture(scope="module")
def broken_server(
    serve_modelserve_module: Callable[..., RunningServer],
    tmp_path_factory: pytest.TempPathFactory,
    demo_models_dir: Path,
) -> RunningServer:
    """iris serves; `broken` (required) fails to load: its file under HIDDEN_DIR is missing,
    and the reason names that full path. Its tests only read it."""
    directory = tmp_path_factory.mktemp("broken")
    hidden = directory / HIDDEN_DIR
    hidden.mkdir()
    models = [_iris(demo_models_dir), {"name": "broken", "path": str(hidden / "broken.joblib")}]
    config = write_config(directory, {"models": models, "auth": _auth()})
    server = serve_modelserve_module(config, wait="/health")
    deadline = time.monotonic() + 60
    with polling_client(timeout_s=5) as client:
        while "broken:1 is failed" not in client.get(server.base_url + "/ready").text:
            assert time.monotonic() < deadline, "the broken model never finished failing"
            time.sleep(0.05)
    return server


def test_ready_and_stats_show_no_load_failure_reason(broken_server: RunningServer) -> None:
    """/ready names the version that is not ready and /stats its status, never the file or
    the error; /models (with a key) and the log keep the reason."""
    url = broken_server.base_url
    ready = httpx.get(url + "/ready")
    stats = httpx.get(url + "/stats", headers={"X-API-Key": KEY})
    models = httpx.get(url + "/models", headers={"X-API-Key": KEY})

    assert (ready.status_code, ready.json()["detail"]) == (503, "broken:1 is failed")
    assert stats.status_code == 200
    assert stats.json()["reasons"] == ["broken:1 is failed"]
    for open_body in (ready.text, stats.text):
        assert HIDDEN_DIR not in open_body
        assert "broken.joblib" not in open_body
    (broken,) = [m for m in models.json()["models"] if m["name"] == "broken"]
    assert HIDDEN_DIR in broken["reason"]
    failed = [line for line in broken_server.log_lines() if line["event"] == "model_load_failed"]
    assert HIDDEN_DIR in str(failed[0]["reason"])


def test_models_needs_a_key_when_auth_is_on(broken_server: RunningServer) -> None:
    """The load-failure reasons of /models are for key holders only."""
    response = httpx.get(broken_server.base_url + "/models")
    assert (response.status_code, response.json()["code"]) == (401, "unauthorized")


@pytest.fixture
def auth_server(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path, demo_models_dir: Path
) -> Callable[..., RunningServer]:
    def start(**auth: object) -> RunningServer:
        models = [_iris(demo_models_dir)]
        return serve_modelserve(write_config(tmp_path, {"models": models, "auth": _auth(**auth)}))

    return start


@pytest.fixture(scope="module")
def default_auth_server(
    serve_modelserve_module: Callable[..., RunningServer],
    tmp_path_factory: pytest.TempPathFactory,
    demo_models_dir: Path,
) -> RunningServer:
    """Auth on with every other setting left at its default, shared by tests that only read
    (three keyless requests stay far below the default failed-authentication limit)."""
    config = {"models": [_iris(demo_models_dir)], "auth": _auth()}
    return serve_modelserve_module(write_config(tmp_path_factory.mktemp("auth"), config))


@pytest.mark.parametrize("path", ["/metrics", "/stats", "/dashboard"])
def test_operational_views_need_a_key_by_default_when_auth_is_on(
    default_auth_server: RunningServer, path: str
) -> None:
    """With auth on and protect_metrics left unset, /metrics, /stats and /dashboard answer 401
    without a key and 200 with one."""
    server = default_auth_server
    anonymous = httpx.get(server.base_url + path)
    with_key = httpx.get(server.base_url + path, headers={"X-API-Key": KEY})
    assert [anonymous.status_code, with_key.status_code] == [401, 200]


def test_operational_views_open_when_protect_metrics_is_off(
    auth_server: Callable[..., RunningServer],
) -> None:
    """protect_metrics: false still opens them (a scraper inside a trusted network)."""
    server = auth_server(protect_metrics=False)
    statuses = [httpx.get(server.base_url + p).status_code for p in ("/metrics", "/stats")]
    assert statuses == [200, 200]


def _asset_urls(page: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", page)


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_load_every_asset_from_the_server_itself(
    demo_server: RunningServer, path: str
) -> None:
    """The API pages name no third-party script, style or font: every asset is a path on
    this server, and each answers 200."""
    page = httpx.get(demo_server.base_url + path)
    urls = _asset_urls(page.text)

    assert page.status_code == 200
    assert any(u.endswith(".js") for u in urls)
    for url in urls:
        assert url.startswith("/"), url
        assert not url.startswith("//"), url
        assert httpx.get(demo_server.base_url + url).status_code == 200, url
    assert "cdn" not in page.text.lower()
    assert "fonts.googleapis" not in page.text


def test_docs_can_be_turned_off(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path, demo_models_dir: Path
) -> None:
    """server.docs_enabled: false serves neither the pages nor their assets (404)."""
    models = [_iris(demo_models_dir)]
    server = serve_modelserve(
        write_config(tmp_path, {"models": models, "server": {"docs_enabled": False}})
    )
    statuses = [
        httpx.get(server.base_url + p).status_code
        for p in ("/docs", "/redoc", "/docs/static/swagger-ui-bundle.js", "/openapi.json")
    ]
    assert statuses == [404, 404, 404, 404]


@pytest.mark.parametrize(
    "path", ["/dashboard", "/dashboard/static/dashboard.js", "/dashboard/static/dashboard.css"]
)
def test_dashboard_sends_security_headers(demo_server: RunningServer, path: str) -> None:
    """The page and its assets forbid framing, sniffing and any script or style not its own."""
    response = httpx.get(demo_server.base_url + path)
    policy = response.headers["content-security-policy"]

    assert response.status_code == 200
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "default-src 'none'" in policy


def test_failed_authentications_are_limited_per_address_and_logged_at_a_bounded_rate(
    auth_server: Callable[..., RunningServer],
) -> None:
    """After failed_auth_limit wrong keys the address gets 429 (a right key too) while probes
    stay open; the log holds one refusal line per interval, not one per request."""
    server = auth_server(failed_auth_limit="5/hour")
    attempts = 40
    started = time.monotonic()
    wrong = [
        httpx.post(
            server.base_url + "/predict",
            json={"features": SETOSA},
            headers={"X-API-Key": WRONG_KEY},
        )
        for _ in range(attempts)
    ]
    elapsed = time.monotonic() - started
    right = httpx.post(
        server.base_url + "/predict", json={"features": SETOSA}, headers={"X-API-Key": KEY}
    )
    probe = httpx.get(server.base_url + "/health")

    assert [r.status_code for r in wrong] == [401] * 5 + [429] * (attempts - 5)
    assert wrong[-1].json()["code"] == "too_many_auth_failures"
    assert int(wrong[-1].headers["retry-after"]) > 0
    assert right.status_code == 429
    assert probe.status_code == 200
    assert server.stop() == 0
    refusals = [line for line in server.log_lines() if line["event"] == "auth_refused"]
    assert 1 <= len(refusals) <= 1 + math.ceil(elapsed / 10.0)
    assert sum(int(str(line["refused_since_last"])) for line in refusals) <= attempts + 1


def test_failed_authentications_of_one_address_do_not_lock_out_the_rest(
    auth_server: Callable[..., RunningServer],
) -> None:
    """The limit counts per client address: another address is still served."""
    server = auth_server(failed_auth_limit="2/hour")
    for _ in range(3):
        httpx.post(server.base_url + "/predict", json={"features": SETOSA})
    # The same server seen from another loopback address (127.0.0.2 is loopback too).
    other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    with other:
        served = other.post(
            server.base_url + "/predict", json={"features": SETOSA}, headers={"X-API-Key": KEY}
        )
    locked = httpx.post(
        server.base_url + "/predict", json={"features": SETOSA}, headers={"X-API-Key": KEY}
    )
    assert [served.status_code, locked.status_code] == [200, 429]
