"""Admission by bytes in flight: refuse at once what the server has no room to parse.

The batcher bounds queued *rows* per model (``max_queue_rows``); rows exist only once a body
is parsed, and parsing is where an overloaded server spends its memory and event-loop time.
This middleware bounds the *bytes* of request bodies being handled at once
(``server.max_inflight_bytes``), by their declared ``Content-Length`` before a byte is read
(a body without one is charged ``server.max_body_bytes``). Past the bound a request gets
503 ``overloaded`` with ``Retry-After`` at once, never a wait. As with the row bound, a single
request larger than the whole budget is still admitted when nothing else is in flight.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from modelserve.api.errors import answer_error
from modelserve.errors import BusyError
from modelserve.observability import metrics


class InFlightBytesLimit:
    """Pure ASGI: see the module docstring."""

    def __init__(self, app: ASGIApp, *, max_inflight_bytes: int, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_inflight_bytes
        self.undeclared_charge = max_body_bytes
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        charge = _declared_length(scope)
        if charge is None:
            charge = self.undeclared_charge if scope["method"] in ("POST", "PUT") else 0
        if charge and self.inflight and self.inflight + charge > self.limit:
            exc = BusyError(self.inflight, self.limit)
            metrics.record_busy()
            response = answer_error(scope, exc)
            await response(scope, receive, send)
            return
        self.inflight += charge
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= charge


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None
