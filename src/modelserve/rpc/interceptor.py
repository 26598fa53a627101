"""The gRPC edge of every inference RPC: request context and domain errors → status codes.

:class:`RequestContextInterceptor` wraps each unary method of ``inference.GRPCInferenceService``
in a :class:`~modelserve.observability.context.RequestContext`, the one the HTTP middleware
uses: the same request id (``x-request-id`` metadata in, trailing metadata out), the same
``request_completed`` line and the same request metrics. gRPC's entries in them:

- ``route`` and ``path``: the method's full name (``/inference.GRPCInferenceService/ModelInfer``);
- ``method``: ``GRPC``;
- ``status``: the HTTP status the same answer has over REST (200, 404, 503...), so error rates
  and ``/stats`` read alike across transports; the access line adds ``grpc_code``.

A handler raises domain errors; here they become status codes (:mod:`modelserve.rpc.status`).
Anything else is ``INTERNAL`` with no internals; the traceback goes to the log.

With tracing on, each call is also the SERVER span an HTTP request gets
(:mod:`modelserve.observability.request_span`): it continues the trace of a ``traceparent``
metadata entry, and adds ``rpc.system``, ``rpc.service``, ``rpc.method`` and
``rpc.grpc.status_code``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

import grpc
import structlog

from modelserve.api.disconnect import CLIENT_CLOSED_REQUEST
from modelserve.api.errors import http_status
from modelserve.errors import ModelserveError
from modelserve.observability.context import RequestContext
from modelserve.rpc.status import status_of, trailing_metadata

log = structlog.get_logger("modelserve.access")
GRPC_METHOD: Final = "GRPC"
"""The ``method`` label and access-line field of gRPC calls."""
_INTERNAL_MESSAGE: Final = "internal error; the server log has the details"

Behaviour = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from modelserve.observability.request_span import RequestSpans

    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:  # generic in the type stubs only
    _Interceptor = grpc.aio.ServerInterceptor


class RequestContextInterceptor(_Interceptor):
    """See the module docstring. ``probes`` are method names logged only when
    ``access_log_probes`` is on (as ``/health`` and ``/ready`` are over HTTP); ``tracer``
    (tracing on) gives every call its span."""

    def __init__(
        self,
        service: str,
        *,
        access_log: bool,
        access_log_probes: bool,
        probes: frozenset[str],
        tracer: Tracer | None = None,
    ) -> None:
        self._prefix = f"/{service}/"
        self._access_log = access_log
        self._quiet = frozenset() if access_log_probes else {self._prefix + p for p in probes}
        self._spans: RequestSpans | None = None
        if tracer is not None:  # OpenTelemetry is imported only when tracing is on
            from modelserve.observability.request_span import RequestSpans

            self._spans = RequestSpans(tracer)

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or handler.unary_unary is None or not method.startswith(self._prefix):
            return handler
        access_log = self._access_log and method not in self._quiet
        return grpc.unary_unary_rpc_method_handler(
            _in_context(handler.unary_unary, method, access_log, self._spans),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _in_context(
    behaviour: Any, method: str, access_log: bool, spans: RequestSpans | None
) -> Behaviour:
    service, _, method_name = method.lstrip("/").partition("/")

    async def contextual(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        headers = metadata_as_headers(context.invocation_metadata())
        call = RequestContext.begin(headers, access_log=access_log)
        request_id = ("x-request-id", call.request_id)
        status, code = int(HTTPStatus.OK), grpc.StatusCode.OK
        traced = (
            spans.started(GRPC_METHOD, method, headers)
            if spans is not None
            else contextlib.nullcontext()
        )
        with traced as span:
            try:
                response = await behaviour(request, context)
                context.set_trailing_metadata((request_id,))
                return response
            except ModelserveError as exc:
                status, code = http_status(exc), status_of(exc)
                context.set_trailing_metadata((*trailing_metadata(exc), request_id))
                await context.abort(code, exc.detail)
            except asyncio.CancelledError:  # the client went away or its deadline passed
                status, code = CLIENT_CLOSED_REQUEST, grpc.StatusCode.CANCELLED
                raise
            except Exception:
                status, code = int(HTTPStatus.INTERNAL_SERVER_ERROR), grpc.StatusCode.INTERNAL
                log.exception("request_failed", path=method)
                context.set_trailing_metadata((request_id,))
                await context.abort(code, _INTERNAL_MESSAGE)
            finally:
                call.finish(
                    route=method,
                    method=GRPC_METHOD,
                    path=method,
                    status=status,
                    grpc_code=code.name,
                )
                if spans is not None and span is not None:
                    spans.finish(
                        span,
                        GRPC_METHOD,
                        method,
                        status,
                        **{
                            "rpc.system": "grpc",
                            "rpc.service": service,
                            "rpc.method": method_name,
                            "rpc.grpc.status_code": code.value[0],
                        },
                    )
        raise AssertionError("unreachable: abort() raises")  # pragma: no cover

    return contextual


def metadata_as_headers(items: Any) -> list[tuple[bytes, bytes]]:
    """gRPC metadata ((name, value) pairs, or None) as the lower-case byte pairs of HTTP
    headers."""
    out = []
    for name, value in items or ():
        raw = value if isinstance(value, bytes) else value.encode("latin-1", "replace")
        out.append((name.lower().encode("latin-1", "replace"), raw))
    return out
