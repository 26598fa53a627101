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
    ControlStateResponse,
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


def _page_doc(
    operation_id: str,
    summary: str,
    description: str,
    tag: str,
    answer: str,
    media_type: str,
    schema: dict[str, Any],
    example: str | None = None,
) -> PlainDoc:
    """The OpenAPI entry of a plain GET route answering one non-model document."""
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return PlainDoc(
        {
            "summary": summary,
            "description": description,
            "tags": [tag],
            "operationId": operation_id,
            "responses": {"200": {"description": answer, "content": {media_type: media}}},
        }
    )


_METRICS_DOC = _page_doc(
    "metrics_get",
    "Prometheus metrics",
    "Prometheus text exposition (aggregated over workers under gunicorn).",
    "probes",
    "Metrics in the Prometheus text format.",
    "text/plain",
    {"type": "string"},
    "# TYPE modelserve_predictions_total counter\n"
    'modelserve_predictions_total{model="iris",model_version="1"} 3.0\n',
)
_STATS_DOC = _page_doc(
    "stats_get",
    "Live statistics",
    "What the dashboard shows, over about the last minute (`window_s` says exactly) and across "
    "workers: throughput, p50/p95/p99 latency, error and shed rates, and per model version the "
    "class mix, confidence histogram, PSI per feature, cache hit rate, queue depth and batch "
    "size.",
    "observability",
    "Statistics (JSON object).",
    "application/json",
    {"type": "object"},
)
_DASHBOARD_DOC = _page_doc(
    "dashboard_get",
    "Live dashboard",
    "An HTML page (assets shipped in the package) refreshing from GET /stats.",
    "observability",
    "The dashboard page.",
    "text/html",
    {"type": "string"},
)
_VERSION_ACTION = "/admin/models/{name}/versions/{version}/"
_ROUTING = "/admin/models/{name}/routing"


def _probe(path: str, endpoint: Any, doc: PlainDoc) -> RouteSpec:
    """A probe: open unless ``auth.protect_probes``, out of the traffic figures, dispatched
    directly."""
    return RouteSpec(
        path=path, endpoint=endpoint, access=Access.PROBE, doc=doc, monitoring=True, direct=True
    )


def _observability(
    path: str, endpoint: Any = None, doc: PlainDoc | None = None, mount: Any = None
) -> RouteSpec:
    """Metrics, statistics and the dashboard: open unless ``auth.protect_metrics``, out of the
    traffic figures."""
    return RouteSpec(
        path=path, endpoint=endpoint, mount=mount, access=Access.METRICS, doc=doc, monitoring=True
    )


_BODY_ERRORS = {"PUT": (400,), "PATCH": (400,)}
"""Admin methods whose endpoints read a JSON body: FastAPI answers 400 when it does not parse."""


def _admin(
    path: str, method: str, endpoint: Any, summary: str, response: Any, *codes: int
) -> RouteSpec:
    """An admin route: the ``admin`` scope and rate limit; POST and PUT bodies must be JSON
    (PATCH, like PUT, cannot be sent cross-origin without a preflight, and takes no JSON rule
    of its own)."""
    return RouteSpec(
        path=path,
        methods=(method,),
        endpoint=endpoint,
        access=Access.ADMIN,
        operation=Operation.ADMIN,
        json_body=method in ("POST", "PUT"),
        fastapi=FastAPIRoute(
            response_model=response,
            summary=summary,
            tags=["admin"],
            responses=admin.error_responses(*_BODY_ERRORS.get(method, ()), 401, 403, 404, *codes),
        ),
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
        _probe("/health", health.health, _HEALTH_DOC),
        _probe("/ready", health.ready, _READY_DOC),
    ]
    if settings.server.metrics_enabled:
        specs.append(_observability("/metrics", metrics.metrics_endpoint, _METRICS_DOC))
    specs += [
        _observability("/dashboard", dashboard.dashboard, _DASHBOARD_DOC),
        _observability("/dashboard/static", mount=dashboard.assets()),
        _observability("/stats", dashboard.stats, _STATS_DOC),
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
    action = VersionActionResponse
    routes = [
        _admin(
            _VERSION_ACTION + "load", "POST", admin.load_version, "Load a version", action, 409, 415
        ),
        _admin(
            _VERSION_ACTION + "reload",
            "POST",
            admin.reload_version,
            "Hot-reload a version",
            action,
            409,
            415,
        ),
        _admin(
            _VERSION_ACTION + "unload",
            "POST",
            admin.unload_version,
            "Unload a version",
            action,
            409,
            415,
        ),
        _admin(_ROUTING, "GET", admin.get_routing, "Show a model's routing", RoutingResponse),
        _admin(
            _ROUTING,
            "PUT",
            admin.put_routing,
            "Replace a model's routing",
            RoutingResponse,
            409,
            415,
            422,
        ),
        _admin(
            _ROUTING,
            "PATCH",
            admin.patch_routing,
            "Change part of a model's routing",
            RoutingResponse,
            409,
            422,
        ),
        _admin(
            "/admin/control",
            "GET",
            admin.control_state,
            "Show where every process stands against the shared control state",
            ControlStateResponse,
        ),
    ]
    if withheld_reason(settings.auth, "admin") is None:
        return routes
    return [RouteSpec(path=r.path, methods=r.methods, access=Access.OPEN) for r in routes]
