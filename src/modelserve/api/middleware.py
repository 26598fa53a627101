"""Pure ASGI middleware: request context, body size and time limits, last-resort 500s.

The request id, log context, access line and request metrics are a
:class:`~modelserve.observability.context.RequestContext`, shared with the gRPC interceptor;
this middleware begins and finishes one per HTTP request. Pure ASGI rather than
``BaseHTTPMiddleware``: no extra task per request, and the endpoint runs in this coroutine's
context, so fields it binds with structlog reach the access line.
"""

from __future__ import annotations

import asyncio

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelserve.api.body_deadline import receive_by
from modelserve.api.errors import PROTOCOL_KEY, answer_error, answer_status
from modelserve.api.route_table import RouteTable
from modelserve.errors import BodyTooLargeError
from modelserve.observability.context import RequestContext
from modelserve.observability.health import HealthState

log = structlog.get_logger("modelserve.access")
_PROBES = frozenset({"/health", "/ready"})


class RequestContextMiddleware:
    """Wraps every HTTP request; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        table: RouteTable,
        max_body_bytes: int,
        body_timeout_s: float = 30.0,
        access_log: bool = True,
        access_log_probes: bool = True,
        health: HealthState | None = None,
    ) -> None:
        self.app = app
        self.table = table
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.access_log = access_log
        self.access_log_probes = access_log_probes
        self.health = health

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        access_log = self.access_log and (self.access_log_probes or scope["path"] not in _PROBES)
        context = RequestContext.begin(scope["headers"], access_log=access_log)
        request_id = context.request_id
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state[PROTOCOL_KEY] = self.table.protocol_of(scope)
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                response_started = True
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
                if self.health is not None and self.health.draining:
                    _close_connection(message["headers"])
            await send(message)

        try:
            declared = _content_length(scope)
            if declared is not None and declared > self.max_body_bytes:
                exc = BodyTooLargeError(self.max_body_bytes)
                response = answer_error(scope, exc)
                await response(scope, receive, send_with_id)
            elif declared == 0:
                await self.app(scope, receive, send_with_id)
            elif declared is not None:
                # The HTTP parser delivers exactly Content-Length bytes, within the limit here:
                # only bodies without a declared length need the counting receive.
                await self.app(scope, self._timed(receive), send_with_id)
            else:
                await self.app(scope, self._timed(self._limited(receive)), send_with_id)
        except Exception as exc:  # the last resort: never a traceback in a response
            log.error("request_failed", exc_info=exc)
            if not response_started:
                response = answer_status(scope, 500, "internal_error", "internal server error")
                await response(scope, receive, send_with_id)
        finally:
            context.finish(
                route=self.table.label(scope),
                method=scope["method"],
                path=scope["path"],
                status=status,
            )

    def _timed(self, receive: Receive) -> Receive:
        """A receive that gives up on the body ``body_timeout_s`` after the request started."""
        timeout_s = self.body_timeout_s
        deadline = asyncio.get_running_loop().time() + timeout_s
        body_done = False

        async def receive_timed() -> Message:
            nonlocal body_done
            if body_done:  # later receives wait for the disconnect, which is not the body
                return await receive()
            message = await receive_by(receive, deadline, timeout_s)
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        return receive_timed

    def _limited(self, receive: Receive) -> Receive:
        """A receive that refuses bodies (chunked ones too) once they pass the limit."""
        limit = self.max_body_bytes
        seen = 0

        async def receive_limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLargeError(limit)
            return message

        return receive_limited


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _close_connection(headers: list[tuple[bytes, bytes]]) -> None:
    """Ask the client to close the connection after this response (once draining).

    Keep-alive clients then reconnect, to another replica, during the pre-stop delay instead
    of racing the close of their idle connection when the server stops.
    """
    if all(name.lower() != b"connection" for name, _ in headers):
        headers.append((b"connection", b"close"))
