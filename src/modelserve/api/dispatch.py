"""ModelserveApp: FastAPI with direct dispatch of plain, fixed-path routes.

/predict, /predict-batch, /health and /ready are plain Starlette routes. For them the app runs
the same user middleware (request context, auth, rate limits, tracing) and then the endpoint
itself, skipping the layers FastAPI and Starlette put around every request: telemetry and
body-limit wrappers, the exception middleware, the exit stack and the linear route match. On
the single-row /predict path those layers cost more than the prediction's own Python code.
Exceptions go to the same exception handlers, looked up the way Starlette does; anything else
(every other route, method, and lifespan) takes the ordinary FastAPI path.
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send


class ModelserveApp(FastAPI):
    """A FastAPI app whose plain async routes with a fixed path are dispatched directly."""

    _direct_routes: dict[tuple[str, str], Route] | None = None
    _direct_stack: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.root_path and not scope.get("root_path"):
            if self._direct_stack is None:
                self._build_direct_dispatch()
            assert self._direct_routes is not None  # noqa: S101 - built just above
            route = self._direct_routes.get((scope["method"], scope["path"]))
            if route is not None:
                scope["app"] = self
                scope["router"] = self.router
                scope["route"] = route
                scope["endpoint"] = route.endpoint
                scope["path_params"] = {}
                await self._direct_stack(scope, receive, send)  # type: ignore[misc]
                return
        await super().__call__(scope, receive, send)

    def _build_direct_dispatch(self) -> None:
        if self.middleware_stack is None:
            # Also freezes add_middleware(), exactly as Starlette does on the first request.
            self.middleware_stack = self.build_middleware_stack()
        self._direct_routes = {
            (method, route.path): route
            for route in self.router.routes
            if type(route) is Route
            and not route.param_convertors
            and inspect.iscoroutinefunction(route.endpoint)
            for method in route.methods or ()
        }
        stack: ASGIApp = self._run_endpoint
        for cls, args, kwargs in reversed(self.user_middleware):
            stack = cls(stack, *args, **kwargs)
        self._direct_stack = stack

    async def _run_endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response: Response = await scope["endpoint"](request)
        except Exception as exc:
            handler = _handler_for(self.exception_handlers, exc)
            if handler is None:
                raise
            response = handler(request, exc)
            if inspect.isawaitable(response):
                response = await response
        await response(scope, receive, send)


def _handler_for(handlers: dict[Any, Any], exc: Exception) -> Any:
    """The handler Starlette's exception middleware would pick (500/Exception ones excluded:
    Starlette gives those to its outermost error middleware, here the request context's)."""
    if isinstance(exc, HTTPException) and exc.status_code != 500 and exc.status_code in handlers:
        return handlers[exc.status_code]
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None
