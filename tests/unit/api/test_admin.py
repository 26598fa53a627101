"""Admin API in-process: load, unload, reload (atomic, pinned, failing), routing, scope, logs."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import joblib
import pytest
import yaml
from structlog.testing import capture_logs

from modelserve.inference.artifact import file_sha256
from modelserve.settings import Settings, load_settings
from tests import iris_versions as iv

VIRGINICA_ROW = [6.7, 3.0, 5.2, 2.3]
ADMIN_KEY, PREDICT_KEY = "admin-secret-key", "predict-secret-key"


@pytest.fixture(scope="module")
def estimators() -> dict[str, Any]:
    """Fitted models, once per module: logistic (1), forest (2), shifted labels, gated."""
    return {
        "logistic": iv.logistic(),
        "forest": iv.forest(),
        "shifted": iv.shifted(),
        "gated": iv.GatedClassifier(),
    }


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """GATE, opened again at the end: close it once the models are loaded (warm-up passes)."""
    yield iv.GATE
    iv.GATE.set()


@pytest.fixture
def iris_config(tmp_path: Path, estimators: dict[str, Any]) -> Callable[..., Path]:
    """Factory: a YAML config serving iris 1 (default) and 2 from files in tmp_path."""

    def make(first: str = "logistic", pin: bool = False, **top: Any) -> Path:
        v1 = iv.dump(estimators[first], tmp_path / "v1.joblib")
        v2 = iv.dump(estimators["forest"], tmp_path / "v2.joblib")
        extra = {"sha256": file_sha256(v1)} if pin else {}
        models = [
            iv.version_entry(
                "iris", "1", v1, default=True, batching={"timeout_ms": 30_000}, **extra
            ),
            iv.version_entry("iris", "2", v2),
        ]
        return iv.write_config(tmp_path / "modelserve.yaml", models, **top)

    return make


@pytest.fixture
def serve(app_client: Any, iris_config: Callable[..., Path]) -> Callable[..., Any]:
    """Factory: an in-process client for ``iris_config(**options)`` with auth on (the admin API
    is served only then), sending the ops key (admin and predict) and declaring JSON bodies."""

    @contextlib.asynccontextmanager
    async def make(**options: Any) -> AsyncIterator[httpx.AsyncClient]:
        async with app_client(auth_settings(iris_config(**options))) as client:
            client.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
            client.headers["Content-Type"] = "application/json"
            yield client

    return make


def auth_settings(config: Path) -> Settings:
    keys = [
        {"name": "ops", "key": ADMIN_KEY, "scopes": ["admin", "predict"]},
        {"name": "app", "key": PREDICT_KEY, "scopes": ["predict"]},
    ]
    return load_settings(config, auth={"enabled": True, "keys": keys})


async def predicted(client: httpx.AsyncClient, row: list[float], version: str = "1") -> str:
    response = await client.post(f"/predict?model_version={version}", json={"features": row})
    assert response.status_code == 200, response.text
    label: str = response.json()["prediction"]
    return label


async def test_load_of_a_serving_version_changes_nothing(serve: Callable[..., Any]) -> None:
    """Loading a version that already serves is a no-op answered with changed: false."""
    async with serve() as client:
        response = await client.post("/admin/models/iris/versions/2/load")
    assert response.status_code == 200
    assert response.json() | {"load_ms": None, "warmup_ms": None} == {
        "model": "iris",
        "version": "2",
        "action": "load",
        "status": "ready",
        "changed": False,
        "load_ms": None,
        "warmup_ms": None,
        "control": {"version": 1, "processes": 1, "applied": 1, "failed": [], "pending": []},
    }


async def test_unload_stops_serving_the_version(serve: Callable[..., Any]) -> None:
    """After an unload, requests naming the version get 503 model_not_ready."""
    async with serve() as client:
        unloaded = await client.post("/admin/models/iris/versions/2/unload")
        response = await client.post("/predict?model_version=2", json={"features": VIRGINICA_ROW})
    assert (unloaded.status_code, unloaded.json()["status"]) == (200, "unloaded")
    assert (response.status_code, response.json()["code"]) == (503, "model_not_ready")


async def test_load_after_unload_serves_again(serve: Callable[..., Any]) -> None:
    """Loading an unloaded version reads its configured file and serves it again."""
    async with serve() as client:
        await client.post("/admin/models/iris/versions/2/unload")
        loaded = await client.post("/admin/models/iris/versions/2/load")
        label = await predicted(client, VIRGINICA_ROW, version="2")
    assert (loaded.status_code, loaded.json()["changed"], loaded.json()["status"]) == (
        200,
        True,
        "ready",
    )
    assert label == "virginica"


async def test_unload_of_the_default_version_is_refused(serve: Callable[..., Any]) -> None:
    """The default version cannot be unloaded (409 version_in_use) and keeps serving."""
    async with serve() as client:
        response = await client.post("/admin/models/iris/versions/1/unload")
        label = await predicted(client, iv.SETOSA_ROW)
    assert (response.status_code, response.json()["code"]) == (409, "version_in_use")
    assert label == "setosa"


async def test_reload_serves_the_new_artifact(
    serve: Callable[..., Any], tmp_path: Path, estimators: dict[str, Any]
) -> None:
    """A reload after the configured file was overwritten serves the new model."""
    async with serve() as client:
        before = await predicted(client, iv.SETOSA_ROW)
        joblib.dump(estimators["shifted"], tmp_path / "v1.joblib")
        response = await client.post("/admin/models/iris/versions/1/reload")
        after = await predicted(client, iv.SETOSA_ROW)
    assert response.status_code == 200
    assert (before, after) == ("setosa", "versicolor")


async def test_reload_reports_whether_the_artifact_changed(
    serve: Callable[..., Any], tmp_path: Path, estimators: dict[str, Any]
) -> None:
    """Reloading the unchanged file says changed false; after the file changes, true."""
    async with serve() as client:
        unchanged = await client.post("/admin/models/iris/versions/1/reload")
        joblib.dump(estimators["shifted"], tmp_path / "v1.joblib")
        replaced = await client.post("/admin/models/iris/versions/1/reload")
    assert (unchanged.status_code, unchanged.json()["changed"]) == (200, False)
    assert (replaced.status_code, replaced.json()["changed"]) == (200, True)


async def test_reload_of_a_corrupt_artifact_keeps_the_old_one_serving(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    """A file that cannot load answers 409 model_load_failed; the old artifact still serves."""
    async with serve() as client:
        (tmp_path / "v1.joblib").write_bytes(b"definitely not a pickle")
        response = await client.post("/admin/models/iris/versions/1/reload")
        label = await predicted(client, iv.SETOSA_ROW)
        status = (await client.get("/models")).json()["models"][0]["status"]
    assert (response.status_code, response.json()["code"]) == (409, "model_load_failed")
    assert "iris:1" in response.json()["detail"]
    assert (label, status) == ("setosa", "ready")


async def test_reload_refuses_a_file_that_does_not_match_its_pin(
    serve: Callable[..., Any], tmp_path: Path, estimators: dict[str, Any]
) -> None:
    """With a pinned sha256 a different file is refused, and the old artifact still serves."""
    async with serve(pin=True) as client:
        joblib.dump(estimators["shifted"], tmp_path / "v1.joblib")
        response = await client.post("/admin/models/iris/versions/1/reload")
        label = await predicted(client, iv.SETOSA_ROW)
    assert (response.status_code, response.json()["code"]) == (409, "model_load_failed")
    assert "configuration pins" in response.json()["detail"]
    assert label == "setosa"


async def test_reload_rereads_the_pin_from_the_config_file(
    serve: Callable[..., Any], tmp_path: Path, estimators: dict[str, Any]
) -> None:
    """Editing the pin in the YAML file, then reloading, serves the newly pinned file."""
    async with serve(pin=True) as client:
        new_file = iv.dump(estimators["shifted"], tmp_path / "v1.joblib")
        config_path = tmp_path / "modelserve.yaml"
        config = yaml.safe_load(config_path.read_text())
        config["models"][0]["sha256"] = file_sha256(new_file)
        config_path.write_text(yaml.safe_dump(config))
        response = await client.post("/admin/models/iris/versions/1/reload")
        label = await predicted(client, iv.SETOSA_ROW)
    assert response.status_code == 200
    assert label == "versicolor"


async def test_reload_lets_requests_in_flight_finish_on_the_old_artifact(
    app_client: Any,
    iris_config: Callable[..., Path],
    tmp_path: Path,
    estimators: dict[str, Any],
    gate: threading.Event,
) -> None:
    """New requests move to the new artifact at once; one already running finishes on the old
    one, and the reload answers only after it has."""
    served = app_client(auth_settings(iris_config(first="gated")))
    async with served as client:
        client.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        registry = served.app.state.core.registry
        old = registry.get("iris", "1")
        gate.clear()
        in_flight = asyncio.create_task(
            client.post("/predict?model_version=1", json={"features": VIRGINICA_ROW})
        )
        joblib.dump(estimators["logistic"], tmp_path / "v1.joblib")
        reload = asyncio.create_task(client.post("/admin/models/iris/versions/1/reload", json={}))
        deadline = time.monotonic() + 15
        while registry.get("iris", "1") is old:
            assert time.monotonic() < deadline, "the new artifact was never swapped in"
            await asyncio.sleep(0.01)
        new_answer = await predicted(client, VIRGINICA_ROW)
        reload_waited = not reload.done()
        gate.set()
        old_answer, reloaded = await in_flight, await reload
    assert (new_answer, reload_waited) == ("virginica", True)
    assert (old_answer.status_code, old_answer.json()["prediction"]) == (200, "setosa")
    assert reloaded.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [
        ("POST", "/admin/models/nope/versions/1/load", "model_not_found"),
        ("POST", "/admin/models/iris/versions/9/reload", "version_not_found"),
        ("POST", "/admin/models/iris/versions/9/unload", "version_not_found"),
        ("GET", "/admin/models/nope/routing", "model_not_found"),
        ("PUT", "/admin/models/nope/routing", "model_not_found"),
        ("PATCH", "/admin/models/nope/routing", "model_not_found"),
    ],
    ids=["load-model", "reload-version", "unload-version", "get-routing", "put-routing", "patch"],
)
async def test_admin_unknown_model_or_version_is_404(
    serve: Callable[..., Any], method: str, path: str, code: str
) -> None:
    """Admin calls naming an unknown model or version answer 404 with the error body."""
    async with serve() as client:
        response = await client.request(method, path, json=None if method == "GET" else {})
    assert (response.status_code, response.json()["code"]) == (404, code)


async def test_patch_routing_changes_only_the_fields_sent(serve: Callable[..., Any]) -> None:
    """PATCH {"weights": null} rolls a sticky canary back and keeps sticky and shadow."""
    async with serve() as client:
        await client.put(
            "/admin/models/iris/routing",
            json={"weights": {"1": 90, "2": 10}, "sticky": True, "shadow": "2"},
        )
        response = await client.patch("/admin/models/iris/routing", json={"weights": None})
    body = response.json()
    assert response.status_code == 200
    assert (body["weights"], body["sticky"], body["shadow"]) == (None, True, "2")
    assert body["traffic_percent"] == {"1": 100.0}


async def test_put_routing_replaces_every_field(serve: Callable[..., Any]) -> None:
    """PUT is a full replacement: a field left out goes back to its default."""
    async with serve() as client:
        await client.put(
            "/admin/models/iris/routing", json={"weights": {"1": 90, "2": 10}, "sticky": True}
        )
        response = await client.put("/admin/models/iris/routing", json={"weights": None})
    assert (response.json()["weights"], response.json()["sticky"]) == (None, False)


async def test_put_routing_weights_show_in_models(serve: Callable[..., Any]) -> None:
    """A canary split set through the admin API is what GET /models reports."""
    async with serve() as client:
        response = await client.put(
            "/admin/models/iris/routing", json={"weights": {"1": 75, "2": 25}}
        )
        models = (await client.get("/models")).json()["models"]
    assert response.json()["traffic_percent"] == {"1": 75.0, "2": 25.0}
    shown = {(m["version"], m["is_default"], m["traffic_percent"]) for m in models}
    assert shown == {("1", True, 75.0), ("2", False, 25.0)}


async def test_put_routing_default_moves_unpinned_traffic(serve: Callable[..., Any]) -> None:
    """Changing the default sends requests naming no version to it, and /models says so."""
    async with serve() as client:
        await client.put("/admin/models/iris/routing", json={"default": "2"})
        versions = {
            (await client.post("/predict", json={"features": VIRGINICA_ROW})).json()[
                "model_version"
            ]
            for _ in range(20)
        }
        models = (await client.get("/models")).json()["models"]
    assert versions == {"2"}
    assert [m["version"] for m in models if m["is_default"]] == ["2"]


async def test_put_routing_without_default_keeps_the_current_one(
    serve: Callable[..., Any],
) -> None:
    """Omitting `default` replaces the rest of the routing but keeps the default version."""
    async with serve() as client:
        await client.put("/admin/models/iris/routing", json={"default": "2"})
        response = await client.put("/admin/models/iris/routing", json={"sticky": True})
    assert (response.json()["default"], response.json()["sticky"]) == ("2", True)


async def test_put_routing_shadow_shows_in_models(serve: Callable[..., Any]) -> None:
    """A shadow version set through the admin API is flagged in GET /models."""
    async with serve() as client:
        await client.put("/admin/models/iris/routing", json={"shadow": "2"})
        models = (await client.get("/models")).json()["models"]
    assert {m["version"]: m["shadow"] for m in models} == {"1": False, "2": True}


@pytest.mark.parametrize(
    "body",
    [{"weights": {"1": -1, "2": 2}}, {"weights": {"1": 0}}, {"weight": {"1": 1}}],
    ids=["negative", "all-zero", "misspelt-field"],
)
async def test_put_routing_invalid_body_is_422(
    serve: Callable[..., Any], body: dict[str, Any]
) -> None:
    """Impossible weights or unknown fields are refused with 422 and change nothing."""
    async with serve() as client:
        response = await client.put("/admin/models/iris/routing", json=body)
        routing = (await client.get("/admin/models/iris/routing")).json()
    assert (response.status_code, response.json()["code"]) == (422, "validation_error")
    assert routing["traffic_percent"] == {"1": 100.0}


async def test_put_routing_unknown_version_is_404(serve: Callable[..., Any]) -> None:
    """Routing to a version that is not configured answers 404 version_not_found."""
    async with serve() as client:
        response = await client.put("/admin/models/iris/routing", json={"weights": {"3": 1}})
    assert (response.status_code, response.json()["code"]) == (404, "version_not_found")


async def test_put_routing_to_an_unloaded_version_is_409(serve: Callable[..., Any]) -> None:
    """Routing traffic to a version that does not serve answers 409 version_not_loaded."""
    async with serve() as client:
        await client.post("/admin/models/iris/versions/2/unload")
        response = await client.put("/admin/models/iris/routing", json={"default": "2"})
    assert (response.status_code, response.json()["code"]) == (409, "version_not_loaded")


@pytest.mark.parametrize(
    ("key", "status"),
    [(None, 401), (PREDICT_KEY, 403), (ADMIN_KEY, 200)],
    ids=["no-key", "predict-scope", "admin-scope"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/admin/models/iris/versions/2/load"),
        ("POST", "/admin/models/iris/versions/2/reload"),
        ("POST", "/admin/models/iris/versions/2/unload"),
        ("GET", "/admin/models/iris/routing"),
        ("PUT", "/admin/models/iris/routing"),
        ("PATCH", "/admin/models/iris/routing"),
    ],
    ids=["load", "reload", "unload", "get-routing", "put-routing", "patch-routing"],
)
async def test_admin_routes_need_the_admin_scope(
    app_client: Any,
    iris_config: Callable[..., Path],
    method: str,
    path: str,
    key: str | None,
    status: int,
) -> None:
    """With auth on, admin routes answer 401 without a key and 403 without the admin scope."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with app_client(auth_settings(iris_config())) as client:
        response = await client.request(
            method, path, headers=headers, json=None if method == "GET" else {}
        )
    assert response.status_code == status


async def test_admin_actions_are_logged_with_the_caller(
    app_client: Any, iris_config: Callable[..., Path]
) -> None:
    """Each admin action logs its outcome and the key name, never the key."""
    async with app_client(auth_settings(iris_config())) as client:
        with capture_logs() as logs:
            await client.post(
                "/admin/models/iris/versions/1/unload",
                json={},
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            )
            await client.put(
                "/admin/models/iris/routing",
                json={"shadow": "2"},
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            )
    audit = [
        (e["event"], e["action"], e["caller"]) for e in logs if e["event"].startswith("admin_")
    ]
    assert audit == [
        ("admin_action_failed", "unload", "ops"),
        ("admin_action_completed", "set_routing", "ops"),
    ]
    assert ADMIN_KEY not in repr(logs)


async def test_admin_routes_are_documented(serve: Callable[..., Any]) -> None:
    """Every admin route appears in the OpenAPI document behind /docs."""
    async with serve() as client:
        paths = (await client.get("/openapi.json")).json()["paths"]
    documented = {(path, method) for path, ops in paths.items() for method in ops}
    prefix = "/admin/models/{name}"
    assert {
        (f"{prefix}/versions/{{version}}/load", "post"),
        (f"{prefix}/versions/{{version}}/reload", "post"),
        (f"{prefix}/versions/{{version}}/unload", "post"),
        (f"{prefix}/routing", "get"),
        (f"{prefix}/routing", "put"),
        (f"{prefix}/routing", "patch"),
    } <= documented
