"""The route table: matching, derived scopes and limits, direct dispatch, stats exclusions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from modelserve.api.auth import ApiKeyring
from modelserve.api.dispatch import ModelserveApp
from modelserve.api.ratelimit import RateLimitMiddleware, RouteLimiter
from modelserve.api.route_table import (
    Access,
    FastAPIRoute,
    Operation,
    Protocol,
    RouteSpec,
    RouteTable,
)
from modelserve.api.routes.table import declare_routes
from modelserve.app import create_app
from modelserve.settings import AuthSettings, RateLimitSettings, Settings


async def echo(request: Request) -> Response:
    """Answers its path parameters."""
    return JSONResponse(dict(request.path_params))


async def fastapi_echo(name: str) -> dict[str, str]:
    return {"name": name}


INFER = RouteSpec(
    path="/v2/models/{name}/infer",
    methods=("POST",),
    endpoint=echo,
    access=Access.PREDICT,
    operation=Operation.PREDICT,
    direct=True,
    protocol=Protocol.OPEN_INFERENCE,
)
PLAIN = RouteSpec(path="/plain/{name}", endpoint=echo)
FIXED = RouteSpec(path="/fixed", endpoint=echo, direct=True)
DECORATED = RouteSpec(path="/decorated/{name}", endpoint=fastapi_echo, fastapi=FastAPIRoute())


def test_route_table_matches_templates_and_gives_parameters() -> None:
    """A templated path matches its declaration, with its parameters converted."""
    matched = RouteTable([FIXED, INFER]).match("POST", "/v2/models/iris/infer")
    assert matched is not None
    assert (matched.spec, matched.path_params) == (INFER, {"name": "iris"})


def test_route_table_remembered_match_is_the_same_as_the_first() -> None:
    """A path matched again gives the same declaration and parameters as the first time."""
    table = RouteTable([FIXED, INFER, PLAIN])
    paths = ["/v2/models/iris/infer", "/plain/b", "/v2/models/wine/infer", "/fixed"]
    first = [table.match("POST", p) for p in paths]
    again = [table.match("POST", p) for p in reversed(paths)][::-1]
    assert [(m.spec, m.path_params) for m in again if m] == [
        (m.spec, m.path_params) for m in first if m
    ]
    assert [m.path_params for m in again if m][:3] == [
        {"name": "iris"},
        {"name": "b"},
        {"name": "wine"},
    ]


def test_route_table_memory_of_matches_stays_bounded() -> None:
    """Paths come from clients: however many distinct ones match, the table keeps a bounded
    number, and still matches each correctly."""
    table = RouteTable([INFER])
    for n in range(3000):
        matched = table.match("POST", f"/v2/models/m{n}/infer")
        assert matched is not None
        assert matched.path_params == {"name": f"m{n}"}
    assert len(table._remembered) <= 1024


async def test_direct_route_parameters_are_each_requests_own() -> None:
    """An endpoint changing its path parameters changes nothing for the next request of the
    same path (the remembered match hands each request a copy)."""

    async def mutating(request: Request) -> Response:
        answer = dict(request.path_params)
        request.path_params["name"] = "changed"
        return JSONResponse(answer)

    spec = RouteSpec(
        path="/v2/models/{name}/infer",
        methods=("POST",),
        endpoint=mutating,
        direct=True,
        protocol=Protocol.OPEN_INFERENCE,
    )
    app, _ = _app(spec)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answers = [(await client.post("/v2/models/iris/infer")).json() for _ in range(2)]
    assert answers == [{"name": "iris"}, {"name": "iris"}]


def test_route_table_picks_the_declaration_of_the_method() -> None:
    """Two declarations of one path: each method gets its own (and its own operation)."""
    get = RouteSpec(path="/things/{name}", endpoint=echo, access=Access.ADMIN)
    put = RouteSpec(
        path="/things/{name}",
        methods=("PUT",),
        endpoint=echo,
        access=Access.ADMIN,
        operation=Operation.ADMIN,
    )
    table = RouteTable([get, put])
    assert [table.match(m, "/things/a").spec for m in ("GET", "PUT")] == [get, put]  # type: ignore[union-attr]


def test_route_table_refuses_a_method_declared_twice() -> None:
    """The same path and method declared twice is a programming error, caught at start."""
    with pytest.raises(ValueError, match="declared twice"):
        RouteTable([FIXED, RouteSpec(path="/fixed", endpoint=echo)])


def test_route_spec_refuses_direct_dispatch_of_a_fastapi_route() -> None:
    """Only plain async endpoints can take the direct path."""
    with pytest.raises(ValueError, match="plain async"):
        RouteSpec(path="/x", endpoint=fastapi_echo, fastapi=FastAPIRoute(), direct=True)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/predict", "predict"),
        ("/admin/models/iris/routing", "admin"),
        ("/admin/models/iris/versions/1/reload", "admin"),
        ("/health", None),
        ("/dashboard/static/dashboard.js", "any"),
        ("/docs", None),
        ("/no/such/route", "predict"),
    ],
    ids=["predict", "admin-template", "admin-action", "probe", "mount", "docs", "undeclared"],
)
def test_route_table_gives_the_auth_scope_from_declarations(
    settings_factory: Callable[..., Settings], path: str, expected: str | None
) -> None:
    """Auth reads the scope from the matched declaration; undeclared paths need predict.
    (Auth is on with an admin key: only then are the admin routes declared; the dashboard's
    assets need any key, as protect_metrics defaults to on.)"""
    ops = {"name": "ops", "key": "route-table-admin-key-1f2e3d4c", "scopes": ["admin"]}
    table = RouteTable(declare_routes(settings_factory(auth={"enabled": True, "keys": [ops]})))
    keyring = ApiKeyring(AuthSettings())
    matched = table.match("GET", path)
    assert keyring.required_scope(matched.spec.access if matched else None) == expected


def test_route_table_monitoring_paths_come_from_declarations(
    settings_factory: Callable[..., Settings],
) -> None:
    """Probes, scrapes, docs and the dashboard are left out of the traffic figures."""
    paths = RouteTable(declare_routes(settings_factory())).monitoring_paths
    assert {"/health", "/ready", "/metrics", "/stats", "/dashboard/static", "/docs"} <= paths
    assert "unmatched" in paths
    assert not {"/predict", "/predict-batch", "/models"} & paths


def _app(*specs: RouteSpec) -> tuple[ModelserveApp, RouteTable]:
    app, table = ModelserveApp(), RouteTable(specs)
    app.install_routes(table, lambda: None)
    return app, table


class _StackSpy:
    """Counts requests that went through FastAPI's own middleware stack."""

    def __init__(self, app: FastAPI) -> None:
        self.calls = 0
        self.inner = app.middleware_stack

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        assert self.inner is not None
        await self.inner(scope, receive, send)


@pytest.fixture
async def spied() -> AsyncIterator[tuple[httpx.AsyncClient, _StackSpy]]:
    """An app with direct, plain and FastAPI routes, and a spy on FastAPI's stack."""
    app, _ = _app(FIXED, INFER, PLAIN, DECORATED)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await client.get("/plain/warm")  # builds the middleware stack
        spy = _StackSpy(app)
        app.middleware_stack = spy
        yield client, spy


async def test_direct_route_takes_the_fast_path(spied: Any) -> None:
    """A route declared direct is answered without FastAPI's middleware stack."""
    client, spy = spied
    response = await client.get("/fixed")
    assert (response.status_code, spy.calls) == (200, 0)


async def test_direct_templated_route_takes_the_fast_path_with_parameters(spied: Any) -> None:
    """A templated direct route gets its path parameters on the fast path."""
    client, spy = spied
    response = await client.post("/v2/models/iris/infer")
    assert (response.json(), spy.calls) == ({"name": "iris"}, 0)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/plain/a", 200), ("GET", "/decorated/a", 200), ("GET", "/v2/models/a/infer", 405)],
    ids=["plain", "fastapi", "direct-wrong-method"],
)
async def test_other_routes_take_the_fastapi_path(
    spied: Any, method: str, path: str, status: int
) -> None:
    """Routes not declared direct, and wrong methods on direct ones, go through FastAPI."""
    client, spy = spied
    response = await client.request(method, path)
    assert (response.status_code, spy.calls) == (status, 1)


async def test_templated_route_is_limited_by_its_declared_operation() -> None:
    """A new templated path spends its declared operation's budget, shared with /predict's."""
    app, table = _app(
        INFER,
        RouteSpec(
            path="/predict",
            methods=("POST",),
            endpoint=echo,
            direct=True,
            operation=Operation.PREDICT,
        ),
    )
    limiter = RouteLimiter(RateLimitSettings(enabled=True, predict="3/minute"))
    app.add_middleware(RateLimitMiddleware, limiter=limiter, table=table)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        statuses = [(await client.post("/v2/models/iris/infer")).status_code for _ in range(2)]
        statuses.append((await client.post("/predict")).status_code)
        statuses.append((await client.post("/v2/models/other/infer")).status_code)
    await limiter.close()
    assert statuses == [200, 200, 200, 429]


async def test_create_app_serves_every_declared_route(
    settings_factory: Callable[..., Settings],
) -> None:
    """Every declaration with an endpoint or mount becomes a route of the app."""
    settings = settings_factory()
    app = create_app(settings)
    served = {(getattr(r, "path", None)) for r in app.routes}
    declared = {s.path for s in declare_routes(settings) if s.endpoint or s.mount}
    assert declared <= served


@pytest.mark.parametrize(
    ("path", "protocol"),
    [("/v2/models/{name}/things", Protocol.MODELSERVE), ("/things", Protocol.OPEN_INFERENCE)],
    ids=["v2-path-as-modelserve", "modelserve-path-as-v2"],
)
def test_route_table_refuses_a_protocol_its_path_does_not_speak(
    path: str, protocol: Protocol
) -> None:
    """A route's protocol is its path's: refusals made before matching (by path) and the
    route's own errors can then never answer in two different bodies."""
    with pytest.raises(ValueError, match="declared"):
        RouteSpec(path=path, endpoint=echo, protocol=protocol)


def test_route_table_protocol_of_declared_and_undeclared_paths(
    settings_factory: Callable[..., Settings],
) -> None:
    """Every declared /v2 route speaks the Open Inference Protocol, so does an undeclared /v2
    path; /predict and an unknown path elsewhere speak modelserve's."""
    table = RouteTable(declare_routes(settings_factory()))
    v2 = [spec for spec in table.specs if spec.path.startswith("/v2")]

    def protocol(path: str) -> Protocol:
        return table.protocol_of({"type": "http", "method": "GET", "path": path})

    assert v2
    assert {spec.protocol for spec in v2} == {Protocol.OPEN_INFERENCE}
    assert protocol("/v2/nothing/here") is Protocol.OPEN_INFERENCE
    assert protocol("/v2") is Protocol.OPEN_INFERENCE
    assert protocol("/v2x") is Protocol.MODELSERVE
    assert protocol("/predict") is Protocol.MODELSERVE
    assert protocol("/nothing") is Protocol.MODELSERVE
