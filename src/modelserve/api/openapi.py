"""OpenAPI entries of plain routes (declared in the route table), merged into FastAPI's document.

FastAPI documents its own routes; each plain route's entry is the :class:`PlainDoc` of its
declaration, built here with :func:`plain_doc` or written out as an operation object.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from modelserve.api.auth import ApiKeyring
from modelserve.api.route_table import PlainDoc, RouteTable
from modelserve.api.schemas import ErrorBody

_REF = "#/components/schemas/{model}"
SELECT_PARAMS = [
    ("model", "Model name (default: the default model)."),
    ("model_version", "Version (default: the model's routing; also the X-Model-Version header)."),
    ("top_k", "Return only the k most probable labels."),
]
PREDICT_ERRORS = {
    "400": "Invalid input: not JSON, wrong feature count, NaN/Inf, unknown feature name.",
    "401": "Missing or invalid API key (when auth is enabled).",
    "403": "The API key lacks the predict scope.",
    "404": "Unknown model or version.",
    "413": "Body or batch too large.",
    "415": "The body is not declared `Content-Type: application/json`.",
    "422": "Wrong JSON types, missing fields, empty batch.",
    "429": "Rate limited (Retry-After and X-RateLimit-* headers).",
    "500": "The model failed (generic message; details in the server log).",
    "503": "Model not ready, overloaded (Retry-After) or shutting down.",
    "504": "Queue or inference deadline passed.",
}


def plain_doc(
    operation_id: str,
    summary: str,
    description: str,
    tag: str,
    response: type[BaseModel],
    request: type[BaseModel] | None = None,
    params: Sequence[tuple[str, str]] = (),
    errors: dict[str, str] | None = None,
) -> PlainDoc:
    """A JSON operation: query parameters, a request body model, a response and error bodies."""
    entry: dict[str, Any] = {
        "summary": summary,
        "description": description,
        "tags": [tag],
        "operationId": operation_id,
        "parameters": [
            {
                "name": n,
                "in": "query",
                "required": False,
                "description": d,
                "schema": {"type": "string"},
            }
            for n, d in params
        ],
        "responses": {
            "200": _content(response.__name__, "Success"),
            **{code: _content("ErrorBody", text) for code, text in (errors or {}).items()},
        },
    }
    models: list[type[BaseModel]] = [response, ErrorBody]
    if request is not None:
        entry["requestBody"] = {"required": True, **_content(request.__name__, "")}
        del entry["requestBody"]["description"]
        models.append(request)
    return PlainDoc(entry, tuple(models))


def build_openapi(app: FastAPI, table: RouteTable) -> dict[str, Any]:
    """FastAPI's document plus every plain route's declared entry, schemas as components."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    paths = doc.setdefault("paths", {})
    for spec in table.specs:
        if spec.doc is None:
            continue
        for model in spec.doc.models:
            schema = model.model_json_schema(ref_template=_REF)
            components.update(schema.pop("$defs", {}))
            components[model.__name__] = schema
        components.update(spec.doc.components)
        for method in spec.methods:
            paths.setdefault(spec.path, {})[method.lower()] = spec.doc.operation
    if app.state.settings.auth.enabled:
        _add_security(doc, table, app.state.api_keys)
    app.openapi_schema = doc
    return doc


_SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <key>`"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def _add_security(doc: dict[str, Any], table: RouteTable, keyring: ApiKeyring) -> None:
    """Declare the two ways to send a key, and mark every operation that needs one.

    Swagger UI (/docs) then shows "Authorize" and sends the key with "Try it out".
    """
    doc.setdefault("components", {})["securitySchemes"] = _SECURITY_SCHEMES
    protected = {spec.path for spec in table.specs if keyring.required_scope(spec.access)}
    for path, operations in doc.get("paths", {}).items():
        if path not in protected:
            continue
        for method, operation in operations.items():
            # A copy: plain routes' operation objects are shared by every app's document.
            security: list[dict[str, list[str]]] = [{name: []} for name in _SECURITY_SCHEMES]
            operations[method] = {**operation, "security": security}


def _content(name: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model=name)}}},
    }
