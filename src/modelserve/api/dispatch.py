"""ModelserveApp: FastAPI with direct dispatch of the routes declared ``direct``.

A route declared with ``direct=True`` in the route table (/predict, /predict-batch, /health,
/ready) is a plain async Starlette endpoint. For it the app runs the same user middleware
(request context, auth, rate limits, tracing) and then the endpoint itself, skipping the
layers FastAPI and Starlette put around every request: telemetry and body-limit wrappers, the
exception middleware, the exit stack and the linear route match. On the single-row /predict
path those layers cost more than the prediction's own Python code. Templated paths work the
same way: the table's match gives the path parameters. Exceptions go to the same exception
handlers, looked up the way Starlette does; anything else (every other route, method, and
lifespan) takes the ordinary FastAPI path.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelserve.api.route_table import RouteTable
from modelserve.errors import StartupFailedError


class ModelserveApp(FastAPI):
    """A FastAPI app dispatching its table's ``direct`` routes straight to their endpoints."""

    route_table: RouteTable | None = None
    _direct_stack: ASGIApp | None = None

    def install_routes(self, table: RouteTable, admin_guard: Any) -> None:
        """Serve ``table``'s routes (see :meth:`RouteTable.install`) and dispatch from it."""
        table.install(self, admin_guard)
        self.route_table = table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        table = self.route_table
        if table is not None and scope["type"] == "http":
            matched = table.route_for(scope)  # once per request; the middleware reuse it
            if (
                matched is not None
                and matched.spec.direct
                and scope["method"] in matched.spec.methods
                and not self.root_path
                and not scope.get("root_path")
            ):
                if self._direct_stack is None:
                    self._direct_stack = self._build_direct_stack()
                scope["app"] = self
                scope["router"] = self.router
                scope["route"] = matched.route
                scope["endpoint"] = matched.spec.endpoint
                scope["path_params"] = dict(matched.path_params)
                await self._direct_stack(scope, receive, send)
                return
        if scope["type"] == "lifespan":
            send = _short_startup_failure(send)
        await super().__call__(scope, receive, send)

    def _build_direct_stack(self) -> ASGIApp:
        if self.middleware_stack is None:
            # Also freezes add_middleware(), exactly as Starlette does on the first request.
            self.middleware_stack = self.build_middleware_stack()
        stack: ASGIApp = self._run_endpoint
        for cls, args, kwargs in reversed(self.user_middleware):
            stack = cls(stack, *args, **kwargs)
        return stack

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


def _short_startup_failure(send: Send) -> Send:
    """Report a ``--strict`` start-up failure as its one-line reason, not a traceback.

    Starlette sends ``lifespan.startup.failed`` with ``traceback.format_exc()`` from inside its
    ``except`` block, so the exception being handled is visible here; the server logs that
    message, and for a model that did not load the reasons are what the operator needs (each
    version's own ``model_load_failed`` line says more). Other failures keep the traceback.
    """

    async def send_short(message: Message) -> None:
        failure = sys.exc_info()[1]
        if message["type"] == "lifespan.startup.failed" and isinstance(failure, StartupFailedError):
            message = {**message, "message": failure.detail}
        await send(message)

    return send_short


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
