"""One request's context for any transport: request id, log context, access line, metrics.

A transport starts a :class:`RequestContext` per request with :meth:`RequestContext.begin`
(from the request's headers, or gRPC metadata as the same byte pairs) and ends it with
:meth:`RequestContext.finish`. The HTTP middleware (:mod:`modelserve.api.middleware`) and the
gRPC interceptor (:mod:`modelserve.rpc.interceptor`) both do, so both write the same
``request_completed`` line (``request_id``, ``method``, ``path``, ``status``, ``latency_ms``)
and count in the same ``modelserve_http_requests_*`` metrics. Between the two calls every log
line carries ``request_id`` (structlog contextvars), and what the code handling the request
binds (``model``, ``model_version``, ``batch_size``, cache results) reaches the access line.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import time
from typing import Any

import structlog

from modelserve.observability import metrics
from modelserve.observability.logging import log_request_completed

log = structlog.get_logger("modelserve.access")
REQUEST_ID_MAX_LENGTH = 128
_REQUEST_ID_CHARACTERS = re.compile(r"[A-Za-z0-9._:-]+")
# Generated request ids: 32 hex digits like uuid4().hex, from a random per-process prefix and
# a counter. Unique all the same, without uuid4's getrandom() system call on every request.
_id_prefix = secrets.token_hex(10)
_id_counter = itertools.count()


def _new_id_prefix() -> None:
    global _id_prefix, _id_counter
    _id_prefix, _id_counter = secrets.token_hex(10), itertools.count()


os.register_at_fork(after_in_child=_new_id_prefix)  # forked workers must not share ids


class RequestContext:
    """One request in progress (see the module docstring)."""

    __slots__ = ("_access_log", "_started", "request_id")

    def __init__(self, request_id: str, *, access_log: bool) -> None:
        self.request_id = request_id
        self._access_log = access_log
        self._started = time.perf_counter()

    @classmethod
    def begin(cls, headers: list[tuple[bytes, bytes]], *, access_log: bool) -> RequestContext:
        """Start a request: choose its id (the client's ``x-request-id`` when acceptable), bind
        it for every log line, count the request in flight. ``access_log`` false: no access
        line for this request (metrics all the same)."""
        request_id, refused = request_id_and_refusal(headers)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        if refused is not None:
            log.warning("request_id_refused", reason=refused)
        metrics.HTTP_IN_FLIGHT.inc()
        return cls(request_id, access_log=access_log)

    def finish(self, *, route: str, method: str, path: str, status: int, **extra: Any) -> None:
        """End the request: count it by ``route`` (a bounded label: a declared template or a
        gRPC method, never a raw path), write the access line, unbind the log context.

        ``status`` is an HTTP status (for gRPC the one the same answer has over REST);
        ``extra`` fields go to the access line only.
        """
        elapsed = time.perf_counter() - self._started
        metrics.HTTP_IN_FLIGHT.dec()
        metrics.record_http(route, method, status, elapsed)
        if self._access_log:
            fields = {
                "method": method,
                "path": path,
                "status": status,
                "latency_ms": round(elapsed * 1000, 3),
            }
            if extra:
                fields.update(extra)
            log_request_completed(fields)
        structlog.contextvars.clear_contextvars()


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
