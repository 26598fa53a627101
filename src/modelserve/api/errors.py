"""Every failure becomes the same JSON body: ``{"detail", "code", "request_id"}``."""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from modelserve.api.disconnect import client_closed_request
from modelserve.errors import InvalidJSONError, ModelserveError

log = structlog.get_logger(__name__)

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 415: "unsupported_media_type"}
# Pydantic error types that mean "this is not JSON" rather than "wrong JSON".
_NOT_JSON = {"json_invalid", "json_type"}


def error_response(
    status: int,
    code: str,
    detail: str | list[Any],
    request_id: str | None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The one error body, serialized with orjson."""
    body = orjson.dumps({"detail": detail, "code": code, "request_id": request_id})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def from_domain_error(exc: ModelserveError, request_id: str | None) -> Response:
    return error_response(exc.status_code, exc.code, exc.detail, request_id, exc.headers)


def from_validation_error(exc: ValidationError, request_id: str | None) -> Response:
    """422 for wrong types and missing fields; 400 when the body is not JSON at all."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    if errors and all(e["type"] in _NOT_JSON for e in errors):
        first = errors[0]["msg"]
        return from_domain_error(
            InvalidJSONError(f"request body is not valid JSON: {first}"), request_id
        )
    detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
    return error_response(422, "validation_error", detail, request_id)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers; unexpected exceptions are caught by the middleware instead."""

    async def on_domain(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ModelserveError)  # noqa: S101 - registered for this type
        return from_domain_error(exc, request_id_of(request))

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this type
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        if errors and all(e["type"] in _NOT_JSON for e in errors):
            detail = "request body is not valid JSON"
            return from_domain_error(InvalidJSONError(detail), request_id_of(request))
        return error_response(422, "validation_error", errors, request_id_of(request))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for this type
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(
            exc.status_code, code, str(exc.detail), request_id_of(request), dict(exc.headers or {})
        )

    async def on_disconnect(request: Request, exc: Exception) -> Response:
        return client_closed_request()  # the client is gone: nothing to log, nobody to tell

    app.add_exception_handler(ClientDisconnect, on_disconnect)
    app.add_exception_handler(ModelserveError, on_domain)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
