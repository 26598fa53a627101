"""The request-context interceptor around a handler that fails in ways a real call rarely can."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from structlog.testing import capture_logs

from modelserve.rpc.interceptor import RequestContextInterceptor

SERVICE = "inference.GRPCInferenceService"


class _AbortedError(Exception):
    """What grpc.aio's abort() raises, for this fake context."""


class _Context:
    """The part of grpc.aio.ServicerContext the interceptor uses."""

    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str] | None = None
        self.trailing: tuple[tuple[str, str], ...] = ()

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-request-id", "unit-1"),)

    def set_trailing_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.trailing = metadata

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise _AbortedError


class _Details:
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


async def _wrapped(failure: BaseException) -> Any:
    async def behaviour(request: bytes, context: Any) -> bytes:
        raise failure

    async def continuation(details: Any) -> grpc.RpcMethodHandler[Any, Any]:
        return grpc.unary_unary_rpc_method_handler(behaviour)

    interceptor = RequestContextInterceptor(
        SERVICE, access_log=True, access_log_probes=True, probes=frozenset()
    )
    handler = await interceptor.intercept_service(
        continuation,
        _Details(f"/{SERVICE}/ModelInfer"),  # type: ignore[arg-type]
    )
    assert handler.unary_unary is not None
    return handler.unary_unary


async def test_interceptor_unexpected_failure_is_internal_without_internals() -> None:
    """A handler's own bug: INTERNAL with a generic message, the traceback in the log, and
    an access line with status 500."""
    call = await _wrapped(RuntimeError("secret path /srv/model.joblib"))
    context = _Context()
    with capture_logs() as logs, pytest.raises(_AbortedError):
        await call(b"", context)
    assert context.aborted is not None
    code, details = context.aborted
    assert code is grpc.StatusCode.INTERNAL
    assert "secret" not in details
    assert ("x-request-id", "unit-1") in context.trailing
    (failed,) = [e for e in logs if e["event"] == "request_failed"]
    assert failed["exc_info"] is True
    (line,) = [e for e in logs if e["event"] == "request_completed"]
    assert (line["status"], line["grpc_code"]) == (500, "INTERNAL")


async def test_interceptor_cancelled_call_is_logged_as_client_closed() -> None:
    """A call the client gave up on: re-raised as cancelled, logged with status 499."""
    call = await _wrapped(asyncio.CancelledError())
    with capture_logs() as logs, pytest.raises(asyncio.CancelledError):
        await call(b"", _Context())
    (line,) = [e for e in logs if e["event"] == "request_completed"]
    assert (line["status"], line["grpc_code"]) == (499, "CANCELLED")
