"""uvicorn's httptools protocol with a deadline for the request line and headers, and
refusals that cost nothing: past the connection limit, and while the event loop is behind.

uvicorn bounds only the idle time between keep-alive requests: a client that connects and sends
nothing, or sends half a request line and stops, holds its connection (and a slot of
``server.max_connections``) for as long as it likes. This protocol closes such a connection
once ``server.header_timeout_s`` passes between the connection (or a request's first byte on
a kept-alive connection) and the end of that request's headers.

Once a request's headers are in, it is refused with the documented 503 ``overloaded`` JSON
body (``{"error"}`` on ``/v2`` paths) and ``Retry-After``, before the app runs or its body is
parsed:

* past ``server.max_connections`` (uvicorn's rule: open connections or requests in progress
  at the limit), where uvicorn itself would answer a text/plain 503 without ``Retry-After``
  and log a warning per request; this one answers with ``Connection: close``;
* for a request with a body while the process does not keep up with what arrives
  (:mod:`modelserve.congestion`: the event loop more than ``server.max_loop_lag_ms`` behind
  with other requests in progress, or more than ``server.max_accept_queue`` connections
  waiting to be accepted): they are
  shed at the cheapest point, so the refusals stay fast and the loop catches up, and the
  connection stays open. Bodiless requests (probes, scrapes, reads) are still served.

Each refusal is counted in ``modelserve_requests_busy_total``; one log line per interval says
why, with how many it stands for.

A response with a ``Content-Length`` leaves in one socket write: uvicorn writes the status
line and headers when the app sends ``http.response.start`` and the body at
``http.response.body``, two ``send`` system calls (and two TCP segments) per answer, which
were about a tenth of the single-row ``/predict`` path. :class:`OneWriteCycle` holds the head
until the body comes and writes both together; chunked responses keep uvicorn's writes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import structlog
from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from modelserve.api.route_table import Protocol, protocol_of_path
from modelserve.congestion import congestion
from modelserve.observability.throttle import LogThrottle

log = structlog.get_logger(__name__)

_REFUSAL_LOG_INTERVAL_S = 10.0
_BODY_METHODS = frozenset((b"POST", b"PUT", b"PATCH"))
_SHED_ON_LAG_IN_PROGRESS = 2
"""Requests in progress (this one not yet counted) before a lagging loop sheds: a loop that
lags with less in flight was held by the machine (CPU taken by other processes, a pause), not
by arrivals, and refusing the lone request frees nothing (a sequential client was refused
while its machine was busy)."""


class _Refusal:
    """One reason to refuse a request before the app runs: its body, log line and throttle.

    The body is the server's error body, or the Open Inference Protocol's ``{"error"}`` on
    ``/v2`` paths, as every other refusal there."""

    def __init__(self, event: str, detail: str, *, close: bool) -> None:
        self.event = event
        self.close = close
        self.body = orjson.dumps({"detail": detail, "code": "overloaded", "request_id": None})
        self.v2_body = orjson.dumps({"error": detail})
        self.throttle = LogThrottle(_REFUSAL_LOG_INTERVAL_S)

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        # Imported here: prometheus-client must be first imported after the gunicorn set-up
        # chooses its multiprocess directory, and this module is imported before that.
        from modelserve.observability import metrics

        metrics.record_busy()
        held_back = self.throttle.allow()
        if held_back is not None:
            log.warning(self.event, refused_not_logged=held_back)
        v2 = protocol_of_path(str(scope.get("path", ""))) is Protocol.OPEN_INFERENCE
        body = self.v2_body if v2 else self.body
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", b"1"),
                    *([(b"connection", b"close")] if self.close else []),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})


_OVER_CONNECTION_LIMIT = _Refusal(
    "connection_limit_reached",
    "the server is at its connection limit (server.max_connections); retry later",
    close=True,
)
_NOT_KEEPING_UP = _Refusal(
    "arrivals_outpace_the_server",
    "the server is overloaded: requests arrive faster than it can read them "
    "(server.max_loop_lag_ms, server.max_accept_queue); retry later",
    # Kept open: a client that reconnects at once after a close would feed the accept queue
    # this refusal is meant to drain (wrk with 256 connections did, and never stopped).
    close=False,
)


class _HeldWrite:
    """Stands in for the transport while uvicorn writes a response's head: keeps the bytes."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data


class OneWriteCycle(RequestResponseCycle):
    """uvicorn's request/response cycle, writing a fixed-length response's head with its body.

    Only ``send`` differs: the head uvicorn renders at ``http.response.start`` is held (when
    the response has a ``Content-Length``) and goes out in the same ``transport.write`` as
    the first body message. If the app fails between the two, uvicorn closes the connection
    as it would after a head without a body.
    """

    _held_head: bytes = b""

    async def send(self, message: Any) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if message["type"] == "http.response.start" and not self.response_started:
            transport, held = self.transport, _HeldWrite()
            self.transport = held  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                self.transport = transport
            if self.chunked_encoding is False:
                self._held_head = held.data
            elif held.data:
                transport.write(held.data)
            return
        head = self._held_head
        if head and message["type"] == "http.response.body" and not self.disconnected:
            self._held_head = b""
            body = message.get("body", b"")
            if (
                body
                and len(body) <= self.expected_content_length
                and self.scope["method"] != "HEAD"
            ):
                self.transport.write(head + body)
                self.expected_content_length -= len(body)
                message = {**message, "body": b""}
            else:  # uvicorn's own checks decide what happens to this body
                self.transport.write(head)
        await super().send(message)


class ServingProtocol(HttpToolsProtocol):
    """See the module docstring: a header deadline, and refusals before the app runs."""

    header_timeout_s: float = 10.0
    max_loop_lag_s: float = 0.5
    max_accept_queue: int = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None
        # The limit is enforced here, so uvicorn's own refusal never runs.
        self._max_connections, self.limit_concurrency = self.limit_concurrency, None
        self._congestion = congestion(self.loop)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        refusal = self._refusal()
        if refusal is None:
            super().on_headers_complete()
            return
        # uvicorn starts the request with ``self.app``: this one request gets the refusal.
        app, self.app = self.app, refusal
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        # Every cycle, pipelined ones too, starts here, before any of its code has run.
        cycle.__class__ = OneWriteCycle
        super()._start_asgi_task(cycle, app)

    def _refusal(self) -> _Refusal | None:
        limit = self._max_connections
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            return _OVER_CONNECTION_LIMIT
        busy = self._congestion
        lagging = busy.lag_s > self.max_loop_lag_s and len(self.tasks) >= _SHED_ON_LAG_IN_PROGRESS
        if (
            lagging or busy.accept_queue > self.max_accept_queue
        ) and self.parser.get_method() in _BODY_METHODS:
            return _NOT_KEEPING_UP
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(
                self.header_timeout_s, self._headers_too_slow
            )

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def serving_protocol(
    header_timeout_s: float, max_loop_lag_ms: float, max_accept_queue: int
) -> type[ServingProtocol]:
    """The protocol class to pass as uvicorn's ``http``, with these bounds."""
    bounds = {
        "header_timeout_s": header_timeout_s,
        "max_loop_lag_s": max_loop_lag_ms / 1000,
        "max_accept_queue": max_accept_queue,
    }
    return type("ServingProtocol", (ServingProtocol,), bounds)
