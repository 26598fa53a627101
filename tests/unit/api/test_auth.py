"""API keys: identification, the 401/403 matrix over every route, open probes, the caller."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import SecretStr, ValidationError
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from structlog.testing import capture_logs

from modelserve.api.auth import ApiKeyring, presented_key
from modelserve.settings import ApiKeyConfig, AuthSettings, Settings, load_settings

PREDICT_KEY = "pk-unit-5b0c1d2e3f405162738495a6b7c8d9e0"
ADMIN_KEY = "ak-unit-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
UNKNOWN_KEY = "zz-unit-not-a-configured-key-at-all-000"
KEYS = [
    {"name": "predictor", "key": PREDICT_KEY, "scopes": ["predict"]},
    {
        "name": "operator",
        "sha256": hashlib.sha256(ADMIN_KEY.encode()).hexdigest(),
        "scopes": ["admin"],
    },
]
SETOSA = [5.1, 3.5, 1.4, 0.2]
# Paths anyone may call with auth on (defaults), and the body each protected route needs.
OPEN_PATHS = {"/health", "/ready", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
# The Open Inference Protocol's probes have the exposure of /ready (its statistics, of /stats:
# protected by protect_metrics, on by default).
OPEN_PATHS |= {"/v2/health/live", "/v2/health/ready"}
OPEN_PATHS |= {
    f"{base}/ready" for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}")
}
PREDICT_ROUTES = [
    ("POST", "/predict", {"features": SETOSA}),
    ("POST", "/predict-batch", {"batch": [SETOSA]}),
    ("GET", "/models", None),
]
ROUTE_IDS = [f"{m} {p}" for m, p, _ in PREDICT_ROUTES]


@pytest.fixture
def auth_settings(
    settings_factory: Callable[..., Settings], demo_models_dir: Path
) -> Callable[..., Settings]:
    """Settings serving only iris.joblib with the test keys enabled, plus auth overrides."""

    def make(**auth: Any) -> Settings:
        model = {"name": "iris", "path": str(demo_models_dir / "iris.joblib")}
        return settings_factory(models=[model], auth={"enabled": True, "keys": KEYS, **auth})

    return make


def _concrete(path: str) -> str:
    """A callable path for a route template: every {parameter} filled with a served name."""
    return re.sub(r"\{version[^}]*\}", "1", re.sub(r"\{(name|model)[^}]*\}", "iris", path))


def _protected_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route: the documented ones and the plain Starlette ones."""
    found = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    found |= {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or {"GET"}) - {"HEAD"}
    }
    return sorted((m, _concrete(p)) for m, p in found if p not in OPEN_PATHS)


def test_api_keyring_identifies_key_configured_by_sha256() -> None:
    """A key configured only as its digest is recognised by name and scopes."""
    ring = ApiKeyring(AuthSettings(enabled=True, keys=[ApiKeyConfig(**KEYS[1])]))
    key = ring.identify(ADMIN_KEY)
    assert key is not None
    assert (key.name, key.scopes) == ("operator", frozenset({"admin"}))


def test_api_keyring_identifies_key_configured_in_plain() -> None:
    """A key configured as a secret is hashed at startup and recognised."""
    ring = ApiKeyring(AuthSettings(enabled=True, keys=[ApiKeyConfig(**KEYS[0])]))
    key = ring.identify(PREDICT_KEY)
    assert key is not None
    assert key.name == "predictor"


@pytest.mark.parametrize(
    "presented", [UNKNOWN_KEY, PREDICT_KEY[:-1], ""], ids=["unknown", "prefix", "empty"]
)
def test_api_keyring_rejects_keys_not_configured(presented: str) -> None:
    """Unknown keys, prefixes of real keys and empty strings identify nobody."""
    ring = ApiKeyring(AuthSettings(enabled=True, keys=[ApiKeyConfig(**k) for k in KEYS]))
    assert ring.identify(presented) is None


def test_api_keyring_holds_no_plain_key() -> None:
    """After startup the keyring holds digests only, never the key text."""
    ring = ApiKeyring(AuthSettings(enabled=True, keys=[ApiKeyConfig(**KEYS[0])]))
    assert PREDICT_KEY.encode() not in repr(vars(ring)).encode()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"authorization", b"Bearer abc")], "abc"),
        ([(b"authorization", b"bearer abc")], "abc"),
        ([(b"x-api-key", b"abc")], "abc"),
        ([(b"x-api-key", b"xyz"), (b"authorization", b"Bearer abc")], "abc"),
        ([(b"authorization", b"Basic abc")], None),
        ([], None),
    ],
    ids=["bearer", "bearer-lowercase", "x-api-key", "bearer-wins", "basic-ignored", "none"],
)
def test_presented_key_reads_bearer_or_x_api_key(
    headers: list[tuple[bytes, bytes]], expected: str | None
) -> None:
    """The key comes from Authorization: Bearer, else X-API-Key; other schemes are ignored."""
    assert presented_key(headers) == expected


def test_api_key_config_refuses_malformed_digest() -> None:
    """A sha256 that is not 64 hex characters is a configuration error."""
    with pytest.raises(ValidationError, match="64 hexadecimal"):
        ApiKeyConfig(name="bad", sha256="abc123")


def test_auth_keys_load_from_environment(
    monkeypatch: pytest.MonkeyPatch, demo_models_dir: Path
) -> None:
    """MODELSERVE_AUTH__KEYS holds the keys as JSON, MODELSERVE_AUTH__ENABLED turns auth on."""
    monkeypatch.setenv("MODELSERVE_AUTH__ENABLED", "true")
    monkeypatch.setenv("MODELSERVE_AUTH__KEYS", f'[{{"name": "ci", "key": "{PREDICT_KEY}"}}]')
    settings = load_settings(demo_models_dir / "modelserve.yaml")
    key = ApiKeyring(settings.auth).identify(PREDICT_KEY)
    assert key is not None
    assert key.name == "ci"
    assert isinstance(settings.auth.keys[0].key, SecretStr)


@pytest.mark.parametrize(("method", "path", "body"), PREDICT_ROUTES, ids=ROUTE_IDS)
async def test_auth_missing_key_is_401_with_challenge(
    app_client: Callable[..., Any],
    auth_settings: Callable[..., Settings],
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    """Without a key a protected route answers 401 unauthorized and WWW-Authenticate: Bearer."""
    async with app_client(auth_settings()) as client:
        response = await client.request(method, path, json=body)
    assert (response.status_code, response.json()["code"]) == (401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path", "body"), PREDICT_ROUTES, ids=ROUTE_IDS)
async def test_auth_unknown_key_is_401(
    app_client: Callable[..., Any],
    auth_settings: Callable[..., Settings],
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    """A key that is not configured answers 401 like a missing one."""
    async with app_client(auth_settings()) as client:
        response = await client.request(method, path, json=body, headers={"X-API-Key": UNKNOWN_KEY})
    assert response.status_code == 401


@pytest.mark.parametrize(("method", "path", "body"), PREDICT_ROUTES, ids=ROUTE_IDS)
async def test_auth_key_without_predict_scope_is_403(
    app_client: Callable[..., Any],
    auth_settings: Callable[..., Settings],
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    """An admin-only key on a prediction route answers 403 forbidden."""
    async with app_client(auth_settings()) as client:
        response = await client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        )
    assert (response.status_code, response.json()["code"]) == (403, "forbidden")


@pytest.mark.parametrize(("method", "path", "body"), PREDICT_ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
async def test_auth_predict_key_is_admitted(
    app_client: Callable[..., Any],
    auth_settings: Callable[..., Settings],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    header: str,
) -> None:
    """A key with the predict scope is served, sent either way."""
    value = f"Bearer {PREDICT_KEY}" if header == "Authorization" else PREDICT_KEY
    async with app_client(auth_settings()) as client:
        response = await client.request(method, path, json=body, headers={header: value})
    assert response.status_code == 200


async def test_auth_every_protected_route_refuses_missing_key(
    app_client: Callable[..., Any], auth_settings: Callable[..., Settings]
) -> None:
    """Every route of the app that is not a probe, metrics or docs answers 401 without a key."""
    wrapper = app_client(auth_settings())
    routes = _protected_routes(wrapper.app)
    async with wrapper as client:
        statuses = {(m, p): (await client.request(m, p)).status_code for m, p in routes}
    assert ("POST", "/predict") in statuses
    assert set(statuses.values()) == {401}, statuses


async def test_auth_every_admin_route_refuses_predict_key(
    app_client: Callable[..., Any], auth_settings: Callable[..., Settings]
) -> None:
    """Every /admin route answers 403 to a key that has only the predict scope."""
    wrapper = app_client(auth_settings())
    routes = [(m, p) for m, p in _protected_routes(wrapper.app) if p.startswith("/admin")]
    headers = {"X-API-Key": PREDICT_KEY}
    async with wrapper as client:
        statuses = {
            (m, p): (await client.request(m, p, headers=headers)).status_code for m, p in routes
        }
    assert routes, "the app has no /admin routes"
    assert set(statuses.values()) == {403}, statuses


async def test_auth_admin_key_passes_admin_guard(
    app_client: Callable[..., Any], auth_settings: Callable[..., Settings]
) -> None:
    """An admin key reaches the admin route itself: 200 with the model's routing."""
    async with app_client(auth_settings()) as client:
        response = await client.get("/admin/models/iris/routing", headers={"X-API-Key": ADMIN_KEY})
    assert response.status_code == 200
    assert (response.json()["model"], response.json()["default"]) == ("iris", "1")


@pytest.mark.parametrize("path", ["/health", "/ready", "/openapi.json", "/docs"])
async def test_auth_leaves_probes_and_docs_open_by_default(
    app_client: Callable[..., Any], auth_settings: Callable[..., Settings], path: str
) -> None:
    """Probes and the API description need no key unless configured."""
    async with app_client(auth_settings()) as client:
        response = await client.get(path)
    assert response.status_code == 200


PROTECTED_VIEWS = [
    ("protect_probes", "/health"),
    ("protect_probes", "/ready"),
    ("protect_metrics", "/metrics"),
    ("protect_metrics", "/stats"),
    ("protect_metrics", "/dashboard"),
    ("protect_metrics", "/dashboard/static/dashboard.js"),
]
PROTECTED_VIEW_IDS = ["health", "ready", "metrics", "stats", "dashboard", "dashboard-asset"]


@pytest.mark.parametrize(("setting", "path"), PROTECTED_VIEWS, ids=PROTECTED_VIEW_IDS)
async def test_auth_protected_probe_needs_a_key(
    app_client: Callable[..., Any], auth_settings: Callable[..., Settings], setting: str, path: str
) -> None:
    """With protect_probes / protect_metrics the path answers 401 unauthorized without a key."""
    async with app_client(auth_settings(**{setting: True})) as client:
        response = await client.get(path)
    assert (response.status_code, response.json()["code"]) == (401, "unauthorized")


@pytest.mark.parametrize("key", [PREDICT_KEY, ADMIN_KEY], ids=["predict-key", "admin-only-key"])
@pytest.mark.parametrize(("setting", "path"), PROTECTED_VIEWS, ids=PROTECTED_VIEW_IDS)
async def test_auth_protected_view_serves_any_valid_key(
    app_client: Callable[..., Any],
    auth_settings: Callable[..., Settings],
    setting: str,
    path: str,
    key: str,
) -> None:
    """The same paths answer 200 to a key of either scope: any valid key will do."""
    async with app_client(auth_settings(**{setting: True})) as client:
        response = await client.get(path, headers={"X-API-Key": key})
    assert response.status_code == 200


@pytest.mark.parametrize("key", [PREDICT_KEY, ADMIN_KEY], ids=["predict", "admin"])
async def test_auth_protected_probe_accepts_any_valid_key(
    app_client: Callable[..., Any], auth_settings: Callable[..., Settings], key: str
) -> None:
    """A protected probe accepts a key of either scope."""
    async with app_client(auth_settings(protect_probes=True)) as client:
        response = await client.get("/health", headers={"X-API-Key": key})
    assert response.status_code == 200


async def test_auth_sets_caller_to_key_name(
    app_client: Callable[..., Any], auth_settings: Callable[..., Settings]
) -> None:
    """Routes see the key's name (never the key) as request.state.caller."""

    async def whoami(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(request.state.caller))

    wrapper = app_client(auth_settings())
    wrapper.app.router.routes.append(Route("/whoami", whoami))
    async with wrapper as client:
        response = await client.get("/whoami", headers={"X-API-Key": PREDICT_KEY})
    assert response.text == "predictor"


RELOAD = "/admin/models/iris/versions/1/reload"


@pytest.mark.parametrize(
    ("key", "code", "status"),
    [(None, "unauthorized", 401), (PREDICT_KEY, "forbidden", 403)],
    ids=["missing-key", "wrong-scope"],
)
async def test_auth_refusal_is_logged_and_answered_with_its_request_id(
    app_client: Callable[..., Any],
    auth_settings: Callable[..., Settings],
    key: str | None,
    code: str,
    status: int,
) -> None:
    """A refused request logs path, code and the scope it lacked; its body names its request
    id, the one in its X-Request-ID header."""
    headers = {"X-API-Key": key} if key else {}
    async with app_client(auth_settings()) as client:
        with capture_logs() as logs:
            response = await client.post(RELOAD, headers=headers)
    (refusal,) = [line for line in logs if line["event"] == "auth_refused"]
    assert (refusal["path"], refusal["code"], refusal["required_scope"]) == (
        RELOAD,
        code,
        "admin",
    )
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert response.json()["request_id"] == response.headers["x-request-id"]
    # The Basic challenge (a browser prompt) is the dashboard's alone.
    assert not response.headers.get("www-authenticate", "").startswith("Basic")
