"""API keys in a real server process: keys from the environment, and never in its logs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest
import yaml

from tests.e2e.conftest import IRIS_ONNX, RunningServer

pytestmark = pytest.mark.e2e

PREDICT_KEY = "e2e-auth-predict-7d1f0c9a8b2e4d6f"
ADMIN_KEY = "e2e-auth-admin-3b5a7c9e1d0f2a4c"
WRONG_KEY = "e2e-auth-wrong-6e8d0b2f4a1c3e5d"
SETOSA = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture
def auth_server(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path, demo_models_dir: Path
) -> RunningServer:
    """A debug-logging server whose keys come only from MODELSERVE_AUTH__* variables."""
    model = {"name": "iris", "path": str(demo_models_dir / IRIS_ONNX)}
    config = tmp_path / "modelserve.yaml"
    config.write_text(yaml.safe_dump({"models": [model]}))
    keys = [
        {"name": "predictor", "key": PREDICT_KEY, "scopes": ["predict"]},
        {
            "name": "operator",
            "sha256": hashlib.sha256(ADMIN_KEY.encode()).hexdigest(),
            "scopes": ["admin"],
        },
    ]
    env = {"MODELSERVE_AUTH__ENABLED": "true", "MODELSERVE_AUTH__KEYS": orjson.dumps(keys).decode()}
    return serve_modelserve(config, "--log-level", "debug", env=env)


def test_auth_keys_never_appear_in_server_logs(auth_server: RunningServer) -> None:
    """After accepted, refused and malformed key uses, no key text is in the server's output."""
    url = auth_server.base_url
    calls = [
        ("POST", "/predict", {"Authorization": f"Bearer {PREDICT_KEY}"}, 200),
        ("POST", "/predict", {"X-API-Key": PREDICT_KEY}, 200),
        ("POST", "/predict", {"X-API-Key": WRONG_KEY}, 401),
        ("POST", "/predict", {"Authorization": f"Basic {WRONG_KEY}"}, 401),
        ("POST", "/predict", {"Authorization": f"Bearer {ADMIN_KEY}"}, 403),
        ("GET", "/admin/models/iris/routing", {"X-API-Key": PREDICT_KEY}, 403),
        ("GET", "/admin/models/iris/routing", {"X-API-Key": ADMIN_KEY}, 200),
    ]
    statuses = [
        httpx.request(method, url + path, headers=headers, json={"features": SETOSA}).status_code
        for method, path, headers, _ in calls
    ]
    assert auth_server.stop() == 0
    assert statuses == [expected for *_, expected in calls]
    output = auth_server.log_path.read_bytes()
    assert b'"api_key_name":"predictor"' in output  # the caller is logged by name
    for secret in (PREDICT_KEY, ADMIN_KEY, WRONG_KEY):
        assert secret.encode() not in output


def test_auth_real_server_refuses_missing_key_and_serves_valid_one(
    auth_server: RunningServer,
) -> None:
    """The served process answers 401 without a key, 200 with one, and keeps probes open."""
    url = auth_server.base_url
    missing = httpx.post(url + "/predict", json={"features": SETOSA})
    valid = httpx.post(
        url + "/predict", json={"features": SETOSA}, headers={"X-API-Key": PREDICT_KEY}
    )
    probe = httpx.get(url + "/health")
    assert [missing.status_code, valid.status_code, probe.status_code] == [401, 200, 200]
    assert missing.headers["www-authenticate"] == "Bearer"
