"""Pure ASGI middleware: request id, body size and time limits, access log, HTTP metrics, 500s.

Pure ASGI rather than ``BaseHTTPMiddleware``: no extra task per request, and the endpoint runs
in this coroutine's context, so fields it binds with structlog reach the access line.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import secrets
import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelserve.api.errors import error_response, from_domain_error
from modelserve.api.route_table import RouteTable
from modelserve.errors import BodyTimeoutError, BodyTooLargeError
from modelserve.observability import metrics
from modelserve.observability.health import HealthState

log = structlog.get_logger("modelserve.access")
REQUEST_ID_MAX_LENGTH = 128
_REQUEST_ID_CHARACTERS = re.compile(r"[A-Za-z0-9._:-]+")
_PROBES = frozenset({"/health", "/ready"})
# Generated request ids: 32 hex digits like uuid4().hex, from a random per-process prefix and
# a counter. Unique all the same, without uuid4's getrandom() system call on every request.
_id_prefix = secrets.token_hex(10)
_id_counter = itertools.count()


def _new_id_prefix() -> None:
    global _id_prefix, _id_counter
    _id_prefix, _id_counter = secrets.token_hex(10), itertools.count()


os.register_at_fork(after_in_child=_new_id_prefix)  # forked workers must not share ids


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
        started = time.perf_counter()
        request_id, refused = request_id_and_refusal(scope["headers"])
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        if refused is not None:
            log.warning("request_id_refused", reason=refused)
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

        metrics.HTTP_IN_FLIGHT.inc()
        try:
            declared = _content_length(scope)
            if declared is not None and declared > self.max_body_bytes:
                exc = BodyTooLargeError(self.max_body_bytes)
                response = from_domain_error(exc, request_id)
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
                response = error_response(
                    500, "internal_error", "internal server error", request_id
                )
                await response(scope, receive, send_with_id)
        finally:
            metrics.HTTP_IN_FLIGHT.dec()
            elapsed = time.perf_counter() - started
            metrics.record_http(self.table.label(scope), scope["method"], status, elapsed)
            if self.access_log and (self.access_log_probes or scope["path"] not in _PROBES):
                log.info(
                    "request_completed",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    latency_ms=round(elapsed * 1000, 3),
                )
            structlog.contextvars.clear_contextvars()

    def _timed(self, receive: Receive) -> Receive:
        """A receive that gives up on the body ``body_timeout_s`` after the request started."""
        timeout_s = self.body_timeout_s
        deadline = asyncio.get_running_loop().time() + timeout_s
        body_done = False

        async def receive_timed() -> Message:
            nonlocal body_done
            if body_done:  # later receives wait for the disconnect, which is not the body
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeoutError(timeout_s) from None
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


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's valid ``X-Request-ID``, else a new id (HTTP headers or gRPC metadata)."""
    return request_id_and_refusal(headers)[0]


def request_id_and_refusal(headers: list[tuple[bytes, bytes]]) -> tuple[str, str | None]:
    """The sent X-Request-ID when it is acceptable, else a generated one and why it was refused.

    Accepted: 1 to 128 characters from ``A-Z a-z 0-9 . _ : -``; anything else (spaces, other
    punctuation, longer) could forge log fields or headers downstream.
    """
    for name, value in headers:
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if len(candidate) > REQUEST_ID_MAX_LENGTH:
                refused = f"X-Request-ID longer than {REQUEST_ID_MAX_LENGTH} characters"
            elif not _REQUEST_ID_CHARACTERS.fullmatch(candidate):
                refused = "X-Request-ID has characters other than A-Z a-z 0-9 . _ : -"
            else:
                return candidate, None
            return _new_request_id(), f"{refused} ({len(candidate)} sent); a new id was generated"
    return _new_request_id(), None


def _new_request_id() -> str:
    return f"{_id_prefix}{next(_id_counter) & 0xFFFFFFFFFFFF:012x}"


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
