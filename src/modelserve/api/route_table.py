"""Every HTTP route is declared once, as a :class:`RouteSpec`; everything else reads the table.

A declaration says: path template, methods, endpoint, who may call it (:class:`Access`), which
rate-limit operation it spends (:class:`Operation`), its OpenAPI entry, whether it is a
monitoring route (left out of the traffic figures), and whether it takes the direct-dispatch
fast path. From the :class:`RouteTable` of those declarations come

* the router (:meth:`RouteTable.install`): plain Starlette routes, FastAPI routes (which
  generate their own OpenAPI entries) and mounts;
* the protocol whose error body a request's failures answer in (:meth:`RouteTable.protocol_of`:
  the server's own ``{detail, code, request_id}``, or the Open Inference Protocol's
  ``{"error"}`` under ``/v2``), for refusals made before the route runs as for the route's own;
* the auth scope of a request (:mod:`modelserve.api.auth`), the rate-limit operation
  (:mod:`modelserve.api.ratelimit`), the OpenAPI entries of plain routes
  (:mod:`modelserve.api.openapi`), the stats exclusions (:attr:`RouteTable.monitoring_paths`),
  the metrics' route label, and direct dispatch (:mod:`modelserve.api.dispatch`).

:meth:`RouteTable.route_for` matches a request once and remembers the answer in its scope, so
middleware and dispatch share one lookup: a dictionary hit for fixed paths, a regular
expression per templated route otherwise. Nothing else matches literal path strings.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from fastapi import Depends, FastAPI
from starlette.routing import Mount, Route, compile_path
from starlette.types import ASGIApp, Scope

from modelserve.api.content_type import json_body_required

_SCOPE_KEY = "modelserve.route"
_NO_ROUTE = object()
_REMEMBERED_MATCHES = 1024
"""Matches kept per table: every declared fixed path, and templated paths (one per model and
version on the V2 routes). Paths come from clients, so the memory is forgotten when full."""
UNMATCHED = "unmatched"
"""The metrics' route label of a request no declaration matches."""


OPEN_INFERENCE_PREFIX: Final = "/v2"
"""Every path under it speaks the Open Inference Protocol, declared or not."""


class Protocol(enum.StrEnum):
    """The protocol a route speaks: which error body its failures answer in."""

    MODELSERVE = "modelserve"
    """``{"detail", "code", "request_id"}``."""
    OPEN_INFERENCE = "open_inference"
    """The Open Inference Protocol (KServe V2): ``{"error": "<message>"}``."""


def protocol_of_path(path: str) -> Protocol:
    """The protocol of ``path`` by its namespace alone: for refusals made before a request is
    matched (the connection limit) and for paths no route declares (404)."""
    prefix = OPEN_INFERENCE_PREFIX
    if path == prefix or path.startswith(prefix + "/"):
        return Protocol.OPEN_INFERENCE
    return Protocol.MODELSERVE


class Access(enum.StrEnum):
    """Who may call a route when auth is enabled."""

    OPEN = "open"
    """Anyone (the API description)."""
    PROBE = "probe"
    """Anyone, unless ``auth.protect_probes`` (then any valid key): liveness and readiness."""
    METRICS = "metrics"
    """Anyone, unless ``auth.protect_metrics`` (then any valid key): /metrics, /stats, ..."""
    PREDICT = "predict"
    """A key with the ``predict`` scope."""
    ADMIN = "admin"
    """A key with the ``admin`` scope."""


class Operation(enum.StrEnum):
    """What a request spends of its caller's rate limits (the storage key, too)."""

    PREDICT = "predict"
    """One per request, against ``rate_limit.predict``."""
    PREDICT_ROWS = "predict_rows"
    """Against ``rate_limit.predict_batch``: one per request, or one per row with
    ``count_rows`` (the endpoint charges once it knows the rows)."""
    ADMIN = "admin"
    """One per request, against ``rate_limit.admin``."""
    INFER = "infer"
    """Charged by the endpoint once it knows the rows (:func:`~modelserve.api.ratelimit.
    charge_infer`): one row as ``predict``, several as ``predict_rows``, so a request spends
    what the same rows would spend on /predict or /predict-batch."""


@dataclass(frozen=True)
class PlainDoc:
    """The OpenAPI entry of a plain route: its operation object and the models it refers to."""

    operation: dict[str, Any]
    models: tuple[type[Any], ...] = ()
    """Pydantic models to add to ``components.schemas``."""
    components: dict[str, Any] = field(default_factory=dict)
    """Schemas written out, added to ``components.schemas`` as they are."""


@dataclass(frozen=True, kw_only=True)
class FastAPIRoute:
    """Options of a route FastAPI validates and documents itself (``add_api_route``)."""

    response_model: Any = None
    summary: str | None = None
    tags: Sequence[str] = ()
    responses: dict[int | str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RouteSpec:
    """One declared route (see the module docstring)."""

    path: str
    """Path template, with ``{name}`` parameters as in Starlette."""
    methods: tuple[str, ...] = ("GET",)
    endpoint: Callable[..., Any] | None = None
    """A plain Starlette endpoint ``(request) -> response``, or a FastAPI one with ``fastapi``
    options. ``None`` for routes FastAPI serves itself (the docs) and for mounts."""
    access: Access = Access.PREDICT
    operation: Operation | None = None
    """Rate-limit operation; ``None`` is never limited."""
    doc: PlainDoc | None = None
    """The OpenAPI entry of a plain route or mount (FastAPI documents its own routes)."""
    fastapi: FastAPIRoute | None = None
    mount: ASGIApp | None = None
    """An ASGI app serving every path under ``path`` (static files)."""
    monitoring: bool = False
    """Probes, scrapes, docs and the dashboard: left out of the traffic figures."""
    json_body: bool = False
    """The request must declare ``Content-Type: application/json`` (415 otherwise), before
    FastAPI reads the body; plain endpoints check it themselves (:mod:`..content_type`)."""
    direct: bool = False
    """Dispatched by :class:`~modelserve.api.dispatch.ModelserveApp` straight to the endpoint,
    skipping FastAPI's per-request layers (plain async endpoints only)."""
    protocol: Protocol = Protocol.MODELSERVE
    """The error body of every failure of this route's requests, refusals before it runs
    included. It must be its path's (:func:`protocol_of_path`), so a refusal that only knows
    the path answers alike."""

    def __post_init__(self) -> None:
        plain = self.fastapi is None and inspect.iscoroutinefunction(self.endpoint)
        if self.direct and not plain:
            raise ValueError(f"{self.path}: only plain async endpoints are dispatched directly")
        if self.protocol is not protocol_of_path(self.path):
            expected = protocol_of_path(self.path)
            raise ValueError(f"{self.path}: declared {self.protocol}, its path is {expected}")


@dataclass(frozen=True, slots=True)
class MatchedRoute:
    """A request's declaration, the Starlette route built for it, and its path parameters."""

    spec: RouteSpec
    route: Route | Mount | None
    path_params: dict[str, Any]
    """Shared by every request of the same path: copy it before handing it out."""

    def allows(self, method: str) -> bool:
        return self.spec.mount is not None or method in self.spec.methods


class RouteTable:
    """The declared routes of one app, and the lookups derived from them."""

    def __init__(self, specs: Sequence[RouteSpec]) -> None:
        self.specs = list(specs)
        self._fixed: dict[str, list[RouteSpec]] = {}
        self._templated: list[tuple[Any, dict[str, Any], list[RouteSpec]]] = []
        self._prefixes: list[RouteSpec] = []
        self._routes: dict[int, Route | Mount] = {}
        self._remembered: dict[tuple[str, str], MatchedRoute] = {}
        templates: dict[str, list[RouteSpec]] = {}
        for spec in self.specs:
            if spec.mount is not None:
                self._prefixes.append(spec)
                continue
            _, _, convertors = compile_path(spec.path)
            same_path = (templates if convertors else self._fixed).setdefault(spec.path, [])
            if any(set(other.methods) & set(spec.methods) for other in same_path):
                raise ValueError(f"{spec.path}: a method is declared twice")
            same_path.append(spec)
        for path, specs_of_path in templates.items():
            regex, _, convertors = compile_path(path)
            self._templated.append((regex, convertors, specs_of_path))

    @property
    def monitoring_paths(self) -> frozenset[str]:
        """Route labels left out of the traffic figures (with unmatched requests)."""
        return frozenset({s.path for s in self.specs if s.monitoring} | {UNMATCHED})

    def route_for(self, scope: Scope) -> MatchedRoute | None:
        """The request's declaration, remembered in ``scope`` (see :meth:`match`)."""
        found = scope.get(_SCOPE_KEY, _NO_ROUTE)
        if found is _NO_ROUTE:
            found = scope[_SCOPE_KEY] = self.match(scope["method"], _route_path(scope))
        return found  # type: ignore[no-any-return]

    def protocol_of(self, scope: Scope) -> Protocol:
        """The protocol of the request's route, or of its path when no route declares it."""
        matched = self.route_for(scope)
        return protocol_of_path(_route_path(scope)) if matched is None else matched.spec.protocol

    def label(self, scope: Scope) -> str:
        """The request's route label for metrics and spans: the declared path template, or
        ``unmatched`` (a raw path never becomes a label)."""
        matched = self.route_for(scope)
        return UNMATCHED if matched is None else matched.spec.path

    def match(self, method: str, path: str) -> MatchedRoute | None:
        """The declaration of ``path`` for ``method``; for a method it does not allow, the
        path's first declaration (its access still applies; the router answers 405).

        A path matched before is answered from memory: trying each templated route's regular
        expression in turn was about 3 % of a single-row V2 infer request."""
        key = (method, path)
        found = self._remembered.get(key)
        if found is None:
            found = self._match(method, path)
            if found is not None:
                if len(self._remembered) >= _REMEMBERED_MATCHES:
                    self._remembered.clear()
                self._remembered[key] = found
        return found

    def _match(self, method: str, path: str) -> MatchedRoute | None:
        specs = self._fixed.get(path)
        if specs is not None:
            return self._matched(specs, method, {})
        for regex, convertors, specs in self._templated:
            found = regex.match(path)
            if found is not None:
                params = {k: convertors[k].convert(v) for k, v in found.groupdict().items()}
                return self._matched(specs, method, params)
        for spec in self._prefixes:
            if path == spec.path or path.startswith(spec.path + "/"):
                return MatchedRoute(spec, self._routes.get(id(spec)), {})
        return None

    def _matched(self, specs: list[RouteSpec], method: str, params: dict[str, Any]) -> MatchedRoute:
        spec = next((s for s in specs if method in s.methods), specs[0])
        return MatchedRoute(spec, self._routes.get(id(spec)), params)

    def install(self, app: FastAPI, admin_guard: Callable[..., Any]) -> None:
        """Add every declared route to ``app``'s router, in declaration order.

        FastAPI routes with :attr:`Access.ADMIN` also get ``admin_guard`` as a dependency, a
        second check behind the auth middleware.
        """
        self._remembered.clear()  # matches made before now have no Starlette route
        for spec in self.specs:
            if spec.mount is not None:
                mount = Mount(spec.path, spec.mount)
                app.router.routes.append(mount)
                self._routes[id(spec)] = mount
            elif spec.fastapi is not None and spec.endpoint is not None:
                options = spec.fastapi
                guard = [Depends(admin_guard)] if spec.access is Access.ADMIN else []
                if spec.json_body:
                    guard.append(Depends(json_body_required))
                app.add_api_route(
                    spec.path,
                    spec.endpoint,
                    methods=list(spec.methods),
                    response_model=options.response_model,
                    summary=options.summary,
                    tags=list(options.tags) or None,
                    responses=options.responses or None,
                    dependencies=guard or None,
                )
            elif spec.endpoint is not None:
                route = Route(spec.path, spec.endpoint, methods=list(spec.methods))
                app.router.routes.append(route)
                self._routes[id(spec)] = route


def _route_path(scope: Scope) -> str:
    """The path below the app's ``root_path``, as Starlette's router matches it."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :]
    return path
