"""OpenAPI entries for the plain Starlette routes, merged into FastAPI's generated document."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from modelserve.api.openapi_v2 import add_v2_operations
from modelserve.api.schemas import (
    BatchPredictRequest,
    BatchPredictResponse,
    ErrorBody,
    HealthResponse,
    PredictRequest,
    PredictResponse,
    ReadyResponse,
)

_REF = "#/components/schemas/{model}"
_SELECT = [
    ("model", "Model name (default: the default model)."),
    ("model_version", "Version (default: the model's routing; also the X-Model-Version header)."),
    ("top_k", "Return only the k most probable labels."),
]
_ERRORS = {
    "400": "Invalid input: not JSON, wrong feature count, NaN/Inf, unknown feature name.",
    "401": "Missing or invalid API key (when auth is enabled).",
    "403": "The API key lacks the predict scope.",
    "404": "Unknown model or version.",
    "413": "Body or batch too large.",
    "422": "Wrong JSON types, missing fields, empty batch.",
    "429": "Rate limited (Retry-After and X-RateLimit-* headers).",
    "500": "The model failed (generic message; details in the server log).",
    "503": "Model not ready, overloaded (Retry-After) or shutting down.",
    "504": "Queue or inference deadline passed.",
}

_METRICS_OPERATION: dict[str, Any] = {
    "summary": "Prometheus metrics",
    "description": "Prometheus text exposition (aggregated over workers under gunicorn).",
    "tags": ["probes"],
    "operationId": "metrics_get",
    "responses": {
        "200": {
            "description": "Metrics in the Prometheus text format.",
            "content": {
                "text/plain": {
                    "schema": {"type": "string"},
                    "example": "# TYPE modelserve_predictions_total counter\n"
                    'modelserve_predictions_total{model="iris",model_version="1"} 3.0\n',
                }
            },
        }
    },
}

_STATS_OPERATION: dict[str, Any] = {
    "summary": "Live statistics",
    "description": "What the dashboard shows, over the last minute and across workers: "
    "throughput, p50/p95/p99 latency, error and shed rates, and per model version the class "
    "mix, confidence histogram, PSI per feature, cache hit rate, queue depth and batch size.",
    "tags": ["observability"],
    "operationId": "stats_get",
    "responses": {
        "200": {
            "description": "Statistics (JSON object).",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
}

_DASHBOARD_OPERATION: dict[str, Any] = {
    "summary": "Live dashboard",
    "description": "An HTML page (assets shipped in the package) refreshing from GET /stats.",
    "tags": ["observability"],
    "operationId": "dashboard_get",
    "responses": {
        "200": {
            "description": "The dashboard page.",
            "content": {"text/html": {"schema": {"type": "string"}}},
        }
    },
}

# Plain routes documented by hand, included when the app serves them.
_RAW_OPERATIONS = {
    "/metrics": _METRICS_OPERATION,
    "/stats": _STATS_OPERATION,
    "/dashboard": _DASHBOARD_OPERATION,
}


@dataclass(frozen=True)
class Operation:
    path: str
    method: str
    summary: str
    description: str
    tag: str
    response: type[BaseModel]
    request: type[BaseModel] | None = None
    params: list[tuple[str, str]] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


OPERATIONS = [
    Operation(
        "/predict",
        "post",
        "Predict one row",
        'Body `{"features": [...]}` or `{"features": {"name": value}}`.',
        "predict",
        PredictResponse,
        PredictRequest,
        _SELECT,
        _ERRORS,
    ),
    Operation(
        "/predict-batch",
        "post",
        "Predict many rows",
        'Body `{"batch": [[...], ...]}`, 1 to `server.max_batch_rows` rows. '
        "`?probabilities=true` adds per-row probabilities.",
        "predict",
        BatchPredictResponse,
        BatchPredictRequest,
        [*_SELECT, ("probabilities", "true to include per-row probabilities.")],
        _ERRORS,
    ),
    Operation(
        "/health", "get", "Liveness", "200 while the process serves.", "probes", HealthResponse
    ),
    Operation(
        "/ready",
        "get",
        "Readiness",
        "200 when every required model is loaded and warmed and the server is not draining.",
        "probes",
        ReadyResponse,
        errors={"503": "Not ready; `detail` says why."},
    ),
]


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the operations above, with their schemas as components."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    for op in OPERATIONS:
        models: list[type[BaseModel]] = [op.response, ErrorBody]
        if op.request is not None:
            models.append(op.request)
        for model in models:
            schema = model.model_json_schema(ref_template=_REF)
            components.update(schema.pop("$defs", {}))
            components[model.__name__] = schema
        entry: dict[str, Any] = {
            "summary": op.summary,
            "description": op.description,
            "tags": [op.tag],
            "operationId": op.path.strip("/").replace("-", "_") + "_" + op.method,
            "parameters": [
                {
                    "name": n,
                    "in": "query",
                    "required": False,
                    "description": d,
                    "schema": {"type": "string"},
                }
                for n, d in op.params
            ],
            "responses": {
                "200": _content(op.response.__name__, "Success"),
                **{code: _content("ErrorBody", text) for code, text in op.errors.items()},
            },
        }
        if op.request is not None:
            entry["requestBody"] = {"required": True, **_content(op.request.__name__, "")}
            del entry["requestBody"]["description"]
        doc.setdefault("paths", {}).setdefault(op.path, {})[op.method] = entry
    served = {getattr(route, "path", None) for route in app.routes}
    for path, operation in _RAW_OPERATIONS.items():
        if path in served:
            doc.setdefault("paths", {})[path] = {"get": operation}
    add_v2_operations(doc, {path for path in served if path is not None})
    app.openapi_schema = doc
    return doc


def _content(name: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model=name)}}},
    }
