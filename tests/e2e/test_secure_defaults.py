"""Secure as shipped, against real servers: no admin API without an admin key, no exposure of
an unauthenticated API beyond loopback, and no browser-simple bodies on the POST routes."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import free_port, pythonpath_env
from tests.e2e.conftest import IRIS_ONNX, MODELSERVE, RunningServer, write_config

pytestmark = pytest.mark.e2e

PREDICT_KEY = "e2e-secure-predict-5c0e1a7b3d9f2e4a"
ADMIN_KEY = "e2e-secure-admin-8a2c4e6f0b1d3f5e"
SETOSA = [5.1, 3.5, 1.4, 0.2]
ROUTING = b'{"shadow": null, "weights": null}'
# Addresses that are not this machine's: binding them fails, so no test listens beyond loopback.
UNASSIGNED_ADDRESS = "192.0.2.1"


def _config(directory: Path, demo_models_dir: Path) -> Path:
    return write_config(
        directory, {"models": [{"name": "iris", "path": str(demo_models_dir / IRIS_ONNX)}]}
    )


def _auth_env(*keys: dict[str, object]) -> dict[str, str]:
    return {
        "MODELSERVE_AUTH__ENABLED": "true",
        "MODELSERVE_AUTH__KEYS": orjson.dumps(keys).decode(),
    }


def _admin_calls(url: str, headers: dict[str, str]) -> list[httpx.Response]:
    json_headers = {**headers, "Content-Type": "application/json"}
    return [
        httpx.put(url + "/admin/models/iris/routing", content=ROUTING, headers=json_headers),
        httpx.post(url + "/admin/models/iris/versions/1/reload", headers=json_headers),
        httpx.get(url + "/admin/models/iris/routing", headers=headers),
    ]


def _statuses(responses: list[httpx.Response]) -> list[int]:
    return [response.status_code for response in responses]


def test_admin_api_is_not_served_with_auth_off(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path, demo_models_dir: Path
) -> None:
    """With auth off, the admin routes answer 404 and the startup log says why."""
    server = serve_modelserve(_config(tmp_path, demo_models_dir))

    responses = _admin_calls(server.base_url, {})

    assert _statuses(responses) == [404, 404, 404]
    (withheld,) = [line for line in server.log_lines() if line["event"] == "routes_withheld"]
    assert withheld["scope"] == "admin"
    assert "auth is off" in str(withheld["reason"])


def test_admin_api_is_not_served_without_an_admin_key(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path, demo_models_dir: Path
) -> None:
    """With auth on but no key holding the admin scope, the admin routes answer 404 to anyone."""
    env = _auth_env({"name": "app", "key": PREDICT_KEY, "scopes": ["predict"]})
    server = serve_modelserve(_config(tmp_path, demo_models_dir), env=env)

    anonymous = _admin_calls(server.base_url, {})
    with_key = _admin_calls(server.base_url, {"X-API-Key": PREDICT_KEY})

    assert _statuses(anonymous + with_key) == [404] * 6
    (withheld,) = [line for line in server.log_lines() if line["event"] == "routes_withheld"]
    assert "no key in auth.keys has the 'admin' scope" in str(withheld["reason"])


def test_admin_api_is_served_to_an_admin_key(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path, demo_models_dir: Path
) -> None:
    """With an admin key configured, that key may change routing and reload; others may not."""
    env = _auth_env(
        {"name": "app", "key": PREDICT_KEY, "scopes": ["predict"]},
        {"name": "ops", "key": ADMIN_KEY, "scopes": ["admin"]},
    )
    server = serve_modelserve(_config(tmp_path, demo_models_dir), env=env)

    refused = _admin_calls(server.base_url, {"X-API-Key": PREDICT_KEY})
    served = _admin_calls(server.base_url, {"X-API-Key": ADMIN_KEY})

    assert _statuses(refused) == [403, 403, 403]
    assert _statuses(served) == [200, 200, 200]
    assert not [line for line in server.log_lines() if line["event"] == "routes_withheld"]


def _serve_once(config: Path, *extra: str, env: dict[str, str] | None = None) -> str:
    """Run ``modelserve serve`` on an address that is not this machine's; return its output."""
    command = [*MODELSERVE, "serve", "--config", str(config), "--port", str(free_port()), *extra]
    finished = subprocess.run(
        command,
        capture_output=True,
        timeout=60,
        env={**pythonpath_env(), **(env or {})},
        check=False,
    )
    assert finished.returncode != 0
    return (finished.stdout + finished.stderr).decode()


def test_serve_refuses_a_non_loopback_address_with_auth_off(
    tmp_path: Path, demo_models_dir: Path
) -> None:
    """Auth off beyond loopback: serve exits before binding, naming both ways out."""
    output = _serve_once(_config(tmp_path, demo_models_dir), "--host", UNASSIGNED_ADDRESS)

    assert f"refusing to serve on {UNASSIGNED_ADDRESS} with auth off" in output
    assert "auth.enabled" in output
    assert "--allow-unauthenticated" in output
    assert "server.allow_unauthenticated" in output


@pytest.mark.parametrize(
    ("extra", "env"),
    [
        (["--allow-unauthenticated"], {}),
        ([], {"MODELSERVE_SERVER__ALLOW_UNAUTHENTICATED": "true"}),
        ([], _auth_env({"name": "app", "key": PREDICT_KEY, "scopes": ["predict"]})),
    ],
    ids=["flag", "setting", "auth-on"],
)
def test_serve_goes_on_to_bind_when_exposure_is_explicit_or_authenticated(
    tmp_path: Path, demo_models_dir: Path, extra: list[str], env: dict[str, str]
) -> None:
    """With the flag, the setting or auth on, serve passes the check and tries to bind."""
    config = _config(tmp_path, demo_models_dir)
    output = _serve_once(config, "--host", UNASSIGNED_ADDRESS, *extra, env=env)

    assert "refusing to serve" not in output
    assert "cannot assign requested address" in output.lower()


@pytest.fixture(scope="module")
def csrf_server(
    serve_modelserve_module: Callable[..., RunningServer],
    tmp_path_factory: pytest.TempPathFactory,
    demo_models_dir: Path,
) -> RunningServer:
    """One server for the whole content-type matrix, with a key of both scopes."""
    env = _auth_env({"name": "ops", "key": ADMIN_KEY, "scopes": ["predict", "admin"]})
    config = _config(tmp_path_factory.mktemp("csrf"), demo_models_dir)
    return serve_modelserve_module(config, env=env)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/predict", orjson.dumps({"features": SETOSA})),
        ("POST", "/predict-batch", orjson.dumps({"batch": [SETOSA]})),
        ("POST", "/admin/models/iris/versions/1/reload", b""),
        ("PUT", "/admin/models/iris/routing", ROUTING),
    ],
    ids=["predict", "predict-batch", "admin-reload", "admin-routing"],
)
@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
    ids=["none", "text", "form", "multipart"],
)
def test_state_changing_routes_refuse_bodies_that_are_not_json(
    csrf_server: RunningServer, method: str, path: str, body: bytes, content_type: str | None
) -> None:
    """A body a web page could send without a preflight is refused with 415; JSON is served."""
    headers = {"X-API-Key": ADMIN_KEY}
    sent = {**headers, "Content-Type": content_type} if content_type else headers
    refused = httpx.request(method, csrf_server.base_url + path, content=body, headers=sent)
    served = httpx.request(
        method,
        csrf_server.base_url + path,
        content=body,
        headers={**headers, "Content-Type": "application/json; charset=utf-8"},
    )

    assert (refused.status_code, refused.json()["code"]) == (415, "unsupported_media_type")
    assert served.status_code == 200
