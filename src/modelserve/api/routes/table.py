"""The route table: every HTTP route modelserve serves, declared once.

Auth scopes, rate-limit operations, OpenAPI entries, stats exclusions and direct dispatch are
all read from here (see :mod:`modelserve.api.route_table`). A new route is one entry.
"""

from __future__ import annotations

from typing import Any

from modelserve.api import openapi
from modelserve.api.auth import admin_served, withheld_reason
from modelserve.api.route_table import Access, FastAPIRoute, Operation, PlainDoc, RouteSpec
from modelserve.api.routes import admin, dashboard, docs, health, metrics, models, predict, v2
from modelserve.api.schemas import (
    BatchPredictRequest,
    BatchPredictResponse,
    HealthResponse,
    ModelsResponse,
    PredictRequest,
    PredictResponse,
    ReadyResponse,
    RoutingResponse,
    VersionActionResponse,
)
from modelserve.settings import Settings

_PREDICT_DOC = openapi.plain_doc(
    "predict_post",
    "Predict one row",
    'Body `{"features": [...]}` or `{"features": {"name": value}}`.',
    "predict",
    PredictResponse,
    PredictRequest,
    openapi.SELECT_PARAMS,
    openapi.PREDICT_ERRORS,
)
_PREDICT_BATCH_DOC = openapi.plain_doc(
    "predict_batch_post",
    "Predict many rows",
    'Body `{"batch": [[...], ...]}`, 1 to `server.max_batch_rows` rows. '
    "`?probabilities=true` adds per-row probabilities.",
    "predict",
    BatchPredictResponse,
    BatchPredictRequest,
    [*openapi.SELECT_PARAMS, ("probabilities", "true to include per-row probabilities.")],
    openapi.PREDICT_ERRORS,
)
_HEALTH_DOC = openapi.plain_doc(
    "health_get", "Liveness", "200 while the process serves.", "probes", HealthResponse
)
_READY_DOC = openapi.plain_doc(
    "ready_get",
    "Readiness",
    "200 when every required model is loaded and warmed and the server is not draining.",
    "probes",
    ReadyResponse,
    errors={"503": "Not ready; `detail` says why."},
)
_METRICS_DOC = PlainDoc(
    {
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
)
_STATS_DOC = PlainDoc(
    {
        "summary": "Live statistics",
        "description": "What the dashboard shows, over about the last minute (`window_s` says "
        "exactly) and across workers: throughput, p50/p95/p99 latency, error and shed rates, "
        "and per model version the class mix, confidence histogram, PSI per feature, cache hit "
        "rate, queue depth and batch size.",
        "tags": ["observability"],
        "operationId": "stats_get",
        "responses": {
            "200": {
                "description": "Statistics (JSON object).",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    }
)
_DASHBOARD_DOC = PlainDoc(
    {
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
)
_VERSION_ACTION = "/admin/models/{name}/versions/{version}/"
_ROUTING = "/admin/models/{name}/routing"


def _admin(summary: str, response: Any, *codes: int) -> FastAPIRoute:
    return FastAPIRoute(
        response_model=response,
        summary=summary,
        tags=["admin"],
        responses=admin.error_responses(401, 403, 404, *codes),
    )


def declare_routes(settings: Settings) -> list[RouteSpec]:
    """The routes ``settings`` serve, in matching order."""
    specs = [
        RouteSpec(
            path="/predict",
            methods=("POST",),
            endpoint=predict.predict,
            access=Access.PREDICT,
            operation=Operation.PREDICT,
            doc=_PREDICT_DOC,
            direct=True,
        ),
        RouteSpec(
            path="/predict-batch",
            methods=("POST",),
            endpoint=predict.predict_batch,
            access=Access.PREDICT,
            operation=Operation.PREDICT_ROWS,
            doc=_PREDICT_BATCH_DOC,
            direct=True,
        ),
        RouteSpec(
            path="/health",
            endpoint=health.health,
            access=Access.PROBE,
            doc=_HEALTH_DOC,
            monitoring=True,
            direct=True,
        ),
        RouteSpec(
            path="/ready",
            endpoint=health.ready,
            access=Access.PROBE,
            doc=_READY_DOC,
            monitoring=True,
            direct=True,
        ),
    ]
    if settings.server.metrics_enabled:
        specs.append(
            RouteSpec(
                path="/metrics",
                endpoint=metrics.metrics_endpoint,
                access=Access.METRICS,
                doc=_METRICS_DOC,
                monitoring=True,
            )
        )
    specs += [
        RouteSpec(
            path="/dashboard",
            endpoint=dashboard.dashboard,
            access=Access.METRICS,
            doc=_DASHBOARD_DOC,
            monitoring=True,
        ),
        RouteSpec(
            path="/dashboard/static",
            mount=dashboard.assets(),
            access=Access.METRICS,
            monitoring=True,
        ),
        RouteSpec(
            path="/stats",
            endpoint=dashboard.stats,
            access=Access.METRICS,
            doc=_STATS_DOC,
            monitoring=True,
        ),
        RouteSpec(
            path="/models",
            endpoint=models.list_models,
            access=Access.PREDICT,
            fastapi=FastAPIRoute(
                response_model=ModelsResponse, summary="List model versions", tags=["models"]
            ),
        ),
    ]
    specs += _admin_routes(settings)
    specs += v2.v2_routes(repository=admin_served(settings.auth))
    if settings.server.docs_enabled:
        specs += docs.docs_routes()
    return specs


def _admin_routes(settings: Settings) -> list[RouteSpec]:
    """The admin API, declared only when some key can use it (auth on, a key with ``admin``).

    Otherwise its paths are declared open and without an endpoint, so everyone gets the same
    404 (see :func:`~modelserve.api.auth.withheld_reason`).
    """
    routes = [
        RouteSpec(
            path=_VERSION_ACTION + "load",
            methods=("POST",),
            endpoint=admin.load_version,
            access=Access.ADMIN,
            operation=Operation.ADMIN,
            json_body=True,
            fastapi=_admin("Load a version", VersionActionResponse, 409, 415),
        ),
        RouteSpec(
            path=_VERSION_ACTION + "reload",
            methods=("POST",),
            endpoint=admin.reload_version,
            access=Access.ADMIN,
            operation=Operation.ADMIN,
            json_body=True,
            fastapi=_admin("Hot-reload a version", VersionActionResponse, 409, 415),
        ),
        RouteSpec(
            path=_VERSION_ACTION + "unload",
            methods=("POST",),
            endpoint=admin.unload_version,
            access=Access.ADMIN,
            operation=Operation.ADMIN,
            json_body=True,
            fastapi=_admin("Unload a version", VersionActionResponse, 409, 415),
        ),
        RouteSpec(
            path=_ROUTING,
            endpoint=admin.get_routing,
            access=Access.ADMIN,
            operation=Operation.ADMIN,
            fastapi=_admin("Show a model's routing", RoutingResponse),
        ),
        RouteSpec(
            path=_ROUTING,
            methods=("PUT",),
            endpoint=admin.put_routing,
            access=Access.ADMIN,
            operation=Operation.ADMIN,
            json_body=True,
            fastapi=_admin("Replace a model's routing", RoutingResponse, 409, 415, 422),
        ),
        RouteSpec(
            path=_ROUTING,
            methods=("PATCH",),
            endpoint=admin.patch_routing,
            access=Access.ADMIN,
            operation=Operation.ADMIN,
            fastapi=_admin("Change part of a model's routing", RoutingResponse, 409, 422),
        ),
    ]
    if withheld_reason(settings.auth, "admin") is None:
        return routes
    return [RouteSpec(path=r.path, methods=r.methods, access=Access.OPEN) for r in routes]
