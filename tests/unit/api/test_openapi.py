"""/openapi.json and /docs: every endpoint documented with schemas and examples."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from modelserve.app import create_app
from modelserve.settings import Settings

FOUNDATION_ENDPOINTS = [
    ("/predict", "post"),
    ("/predict-batch", "post"),
    ("/models", "get"),
    ("/health", "get"),
    ("/ready", "get"),
    ("/metrics", "get"),
]


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], demo_models_dir: Path) -> Settings:
    return settings_factory(models=[{"name": "iris", "path": demo_models_dir / "iris.joblib"}])


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def doc(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


@pytest.fixture
async def client(
    app_client: Callable[..., Any], settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings) as http:
        yield http


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """The foundation's operations (later issues document their own endpoints)."""
    return [(path, method, doc["paths"][path][method]) for path, method in FOUNDATION_ENDPOINTS]


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow a local $ref into components."""
    ref = schema.get("$ref")
    if ref is None:
        return schema
    name = ref.removeprefix("#/components/schemas/")
    resolved: dict[str, Any] = doc["components"]["schemas"][name]
    return resolved


async def test_openapi_json_is_served(client: httpx.AsyncClient) -> None:
    """GET /openapi.json answers the document."""
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json()["info"]["title"] == "modelserve"


async def test_docs_page_is_served(client: httpx.AsyncClient) -> None:
    """GET /docs answers the Swagger UI page pointing at /openapi.json."""
    response = await client.get("/docs")
    assert response.status_code == 200
    assert "/openapi.json" in response.text


@pytest.mark.parametrize(("path", "method"), FOUNDATION_ENDPOINTS, ids=lambda v: str(v))
def test_openapi_documents_endpoint(doc: dict[str, Any], path: str, method: str) -> None:
    """Each foundation endpoint is in the document with a summary."""
    assert method in doc["paths"].get(path, {}), f"{method.upper()} {path} is not documented"
    assert doc["paths"][path][method].get("summary")


def test_openapi_every_operation_has_a_success_schema(doc: dict[str, Any]) -> None:
    """Every foundation operation describes the content of its 200 response."""
    missing = [
        f"{method} {path}"
        for path, method, operation in operations(doc)
        if not operation.get("responses", {}).get("200", {}).get("content")
    ]
    assert missing == []


def test_openapi_request_bodies_have_schemas_with_examples(doc: dict[str, Any]) -> None:
    """Every foundation request body has a JSON schema with an example."""
    bodies = [
        (f"{method} {path}", operation["requestBody"])
        for path, method, operation in operations(doc)
        if "requestBody" in operation
    ]
    assert {name for name, _ in bodies} >= {"post /predict", "post /predict-batch"}
    for name, body in bodies:
        schema = resolve(doc, body["content"]["application/json"]["schema"])
        assert schema.get("examples"), f"{name} request has no example"


def test_openapi_json_responses_have_examples(doc: dict[str, Any]) -> None:
    """Every JSON response (success and error) carries an example."""
    missing = []
    for path, method, operation in operations(doc):
        for status, response in operation.get("responses", {}).items():
            content = response.get("content", {}).get("application/json")
            if content is None:
                continue
            schema = resolve(doc, content.get("schema", {}))
            if not (schema.get("examples") or content.get("example") or content.get("examples")):
                missing.append(f"{method} {path} {status}")
    assert missing == []


def test_openapi_predict_documents_error_statuses(doc: dict[str, Any]) -> None:
    """/predict documents its error statuses with the one error body."""
    responses = doc["paths"]["/predict"]["post"]["responses"]
    for status in ("400", "404", "413", "422", "500", "503"):
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorBody"}


def test_openapi_refs_resolve(doc: dict[str, Any]) -> None:
    """Every $ref in the document names an existing component."""
    names = set(doc["components"]["schemas"])
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"].removeprefix("#/components/schemas/"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert refs
    assert set(refs) - names == set()


@pytest.mark.parametrize("parameter", ["model", "model_version", "top_k"], ids=str)
def test_openapi_predict_documents_selection_parameters(
    doc: dict[str, Any], parameter: str
) -> None:
    """/predict documents its query parameters with descriptions."""
    parameters = {p["name"]: p for p in doc["paths"]["/predict"]["post"]["parameters"]}
    assert parameters[parameter]["description"]


def test_openapi_documents_every_served_route(app: FastAPI, doc: dict[str, Any]) -> None:
    """Every path the app answers (bar the docs pages themselves) appears in the document."""
    undocumented_by_design = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
    served = {
        path
        for route in app.routes
        if (path := getattr(route, "path", None)) and getattr(route, "methods", None)
    }
    assert sorted(served - undocumented_by_design - set(doc["paths"])) == []


def test_openapi_with_auth_declares_how_to_send_a_key(
    settings_factory: Callable[..., Settings], demo_models_dir: Path
) -> None:
    """With auth on, /docs can send a key: security schemes, and protected operations use them."""
    settings = settings_factory(
        models=[{"name": "iris", "path": demo_models_dir / "iris.joblib"}],
        auth={"enabled": True, "keys": [{"name": "ops", "key": "k", "scopes": ["admin"]}]},
    )
    doc = create_app(settings).openapi()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    paths = doc["paths"]
    assert paths["/predict"]["post"]["security"] == [{"bearer": []}, {"apiKey": []}]
    assert paths["/admin/models/{name}/routing"]["patch"]["security"] == [
        {"bearer": []},
        {"apiKey": []},
    ]
    assert "security" not in paths["/health"]["get"]  # probes stay open by default


def test_openapi_without_auth_declares_no_security(doc: dict[str, Any]) -> None:
    """With auth off nothing asks for a key."""
    assert "securitySchemes" not in doc.get("components", {})
    assert all("security" not in op for ops in doc["paths"].values() for op in ops.values())


def test_openapi_every_operation_with_a_body_documents_400(
    settings_factory: Callable[..., Settings], demo_models_dir: Path
) -> None:
    """Every operation taking a body declares the 400 a body that is not JSON gets (the admin
    API and the V2 repository did not: found by schemathesis)."""
    settings = settings_factory(
        models=[{"name": "iris", "path": demo_models_dir / "iris.joblib"}],
        auth={"enabled": True, "keys": [{"name": "ops", "key": "k", "scopes": ["admin"]}]},
    )
    doc = create_app(settings).openapi()
    with_body = [
        (path, method)
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        if "requestBody" in operation or method in ("put", "patch")
    ]
    assert ("/v2/repository/index", "post") in with_body
    assert ("/admin/models/{name}/routing", "patch") in with_body
    assert [
        (path, method)
        for path, method in with_body
        if "400" not in doc["paths"][path][method]["responses"]
    ] == []


async def test_admin_body_not_json_is_the_documented_400(
    app_client: Callable[..., Any], settings_factory: Callable[..., Settings], demo_models_dir: Path
) -> None:
    """PUT and PATCH of a routing with a body that is not JSON answer 400 ErrorBody."""
    settings = settings_factory(
        models=[{"name": "iris", "path": demo_models_dir / "iris.joblib"}],
        auth={"enabled": True, "keys": [{"name": "ops", "key": "k" * 32, "scopes": ["admin"]}]},
    )
    headers = {"Authorization": f"Bearer {'k' * 32}", "Content-Type": "application/json"}
    async with app_client(settings) as client:
        for method in ("PUT", "PATCH"):
            response = await client.request(
                method, "/admin/models/iris/routing", content=b"\xff\x00", headers=headers
            )
            assert response.status_code == 400
            assert set(response.json()) == {"detail", "code", "request_id"}
