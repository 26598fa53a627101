"""HTTP's edge of the domain errors: each error's status and headers, and the one error body.

Every failure becomes the same JSON body, ``{"detail", "code", "request_id"}``; the Open
Inference Protocol's routes answer ``{"error": detail}`` with the same status and headers
(:func:`v2_error_response`). Domain errors carry a kind and data, never HTTP: the mapping is
:data:`HTTP_STATUS` and :func:`http_headers`, here only.

Which body a request gets is its route's protocol (``RouteSpec.protocol``), which the request
context records in the scope's state: :func:`answer_error` and :func:`answer_status` read it,
so a refusal made by a middleware before the route runs (API key, rate limit, body size,
bytes in flight) answers in the body the route itself would.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Final

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Scope

from modelserve.api.disconnect import client_closed_request
from modelserve.api.route_table import Protocol
from modelserve.api.schemas import TYPED_VALUE_EXPECTED
from modelserve.errors import (
    BodyTimeoutError,
    BodyTooLargeError,
    ErrorKind,
    InvalidJSONError,
    ModelserveError,
    RateLimitedError,
    RateWindow,
    ShuttingDownError,
)

log = structlog.get_logger(__name__)

HTTP_STATUS: Final[dict[ErrorKind, HTTPStatus]] = {
    ErrorKind.INVALID_ARGUMENT: HTTPStatus.BAD_REQUEST,
    ErrorKind.EMPTY_INPUT: HTTPStatus.UNPROCESSABLE_ENTITY,
    ErrorKind.UNSUPPORTED_FORMAT: HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
    ErrorKind.TOO_LARGE: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    ErrorKind.CLIENT_TIMEOUT: HTTPStatus.REQUEST_TIMEOUT,
    ErrorKind.UNAUTHENTICATED: HTTPStatus.UNAUTHORIZED,
    ErrorKind.PERMISSION_DENIED: HTTPStatus.FORBIDDEN,
    ErrorKind.NOT_FOUND: HTTPStatus.NOT_FOUND,
    ErrorKind.CONFLICT: HTTPStatus.CONFLICT,
    ErrorKind.RATE_LIMITED: HTTPStatus.TOO_MANY_REQUESTS,
    ErrorKind.UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,
    ErrorKind.DEADLINE_EXCEEDED: HTTPStatus.GATEWAY_TIMEOUT,
    ErrorKind.INTERNAL: HTTPStatus.INTERNAL_SERVER_ERROR,
}
"""The HTTP status of each kind of domain error."""

_CLOSES_CONNECTION: Final = (BodyTooLargeError, BodyTimeoutError, ShuttingDownError)
"""Errors answered with ``Connection: close``: the rest of the body is never read (or may
still trickle in), or the server is going away."""

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


def http_status(error: ModelserveError | type[ModelserveError]) -> int:
    """The HTTP status of a domain error (or error class)."""
    return int(HTTP_STATUS[error.kind])


def http_headers(error: ModelserveError) -> dict[str, str]:
    """The headers an error's HTTP answer carries, built from its kind and data."""
    headers: dict[str, str] = {}
    if isinstance(error, RateLimitedError):
        headers.update(rate_limit_headers(error.window))
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(error.retry_after_s)
    if error.kind is ErrorKind.UNAUTHENTICATED:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(error, _CLOSES_CONNECTION):
        headers["Connection"] = "close"
    if error.model_version is not None:
        headers["X-Model-Version"] = error.model_version
    return headers


def rate_limit_headers(window: RateWindow) -> dict[str, str]:
    """``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (Unix seconds) of a window."""
    return {
        "X-RateLimit-Limit": str(window.limit),
        "X-RateLimit-Remaining": str(window.remaining),
        "X-RateLimit-Reset": str(window.reset_at),
    }


def from_domain_error(
    exc: ModelserveError, request_id: str | None, headers: dict[str, str] | None = None
) -> Response:
    """The error body; an error a model version raised also names it (body and header).

    ``headers`` replaces the error's own (the dashboard's browser challenge does).
    """
    headers = http_headers(exc) if headers is None else headers
    if exc.model_version is None:
        return error_response(http_status(exc), exc.code, exc.detail, request_id, headers)
    body = orjson.dumps(
        {
            "detail": exc.detail,
            "code": exc.code,
            "request_id": request_id,
            "model": exc.model,
            "model_version": exc.model_version,
        }
    )
    return Response(body, http_status(exc), media_type="application/json", headers=headers)


def v2_error_response(exc: ModelserveError, headers: dict[str, str] | None = None) -> Response:
    """The Open Inference Protocol's answer: ``{"error": detail}``, same status and headers."""
    return _v2_body(http_status(exc), exc.detail, http_headers(exc) if headers is None else headers)


def _v2_body(status: int, message: str, headers: dict[str, str] | None) -> Response:
    body = orjson.dumps({"error": message})
    return Response(body, status, media_type="application/json", headers=headers)


PROTOCOL_KEY: Final = "protocol"
"""The scope-state key of the request's :class:`Protocol` (set by the request context)."""


def _speaks_v2(scope: Scope) -> bool:
    return scope.get("state", {}).get(PROTOCOL_KEY) is Protocol.OPEN_INFERENCE


def answer_error(
    scope: Scope, exc: ModelserveError, headers: dict[str, str] | None = None
) -> Response:
    """A domain error's answer in the error body of the request's protocol."""
    if _speaks_v2(scope):
        return v2_error_response(exc, headers)
    return from_domain_error(exc, scope.get("state", {}).get("request_id"), headers)


def answer_status(
    scope: Scope,
    status: int,
    code: str,
    detail: str | list[Any],
    headers: dict[str, str] | None = None,
) -> Response:
    """An error that is no domain error (routing, validation, last-resort 500) in the error
    body of the request's protocol; a V2 message is the detail, as JSON text if structured."""
    if _speaks_v2(scope):
        message = detail if isinstance(detail, str) else orjson.dumps(detail).decode()
        return _v2_body(status, message, headers)
    return error_response(status, code, detail, scope.get("state", {}).get("request_id"), headers)


def from_validation_error(exc: ValidationError, request_id: str | None) -> Response:
    """422 for wrong types and missing fields; 400 when the body is not JSON at all."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    if errors and all(e["type"] in _NOT_JSON for e in errors):
        first = errors[0]["msg"]
        return from_domain_error(
            InvalidJSONError(f"request body is not valid JSON: {first}"), request_id
        )
    return error_response(422, "validation_error", _problems(exc), request_id)


# The shapes of a feature row (``list[Number] | dict[str, Number] | dict[str, TypedValue]``),
# as Pydantic names them in an error's location, and the error that means "the row is not of
# this shape". A named row that fails as numbers is read as typed values: only that branch's
# problems are reported for it.
_NUMBERS_BY_NAME = "dict[str,float]"
_TYPED_BY_NAME = "dict[str,function-plain[_typed_value()]]"
_ROW_SHAPES = {
    "list[float]": "list_type",
    _NUMBERS_BY_NAME: "dict_type",
    _TYPED_BY_NAME: "dict_type",
}


def _problems(exc: ValidationError) -> list[dict[str, Any]]:
    """The 422 ``detail``: one entry per problem; for a feature row only the branch it took.

    A row is a list or an object, so Pydantic reports every bad value twice, once per shape
    ("should be a valid number" and "should be an object"). Here the shape the row was sent in
    decides; the message names the row, the feature and the type expected.
    """
    problems: list[dict[str, Any]] = []
    unshaped: dict[tuple[Any, ...], list[Any]] = {}
    for error in exc.errors(include_url=False, include_context=False):
        loc = tuple(error["loc"])
        at = next((i for i, part in enumerate(loc) if str(part) in _ROW_SHAPES), None)
        if at is None:
            problems.append({"loc": list(loc), "msg": error["msg"], "type": error["type"]})
            continue
        row_loc, feature = loc[:at], loc[at + 1 :]
        if not feature and error["type"] == _ROW_SHAPES[str(loc[at])]:
            unshaped.setdefault(row_loc, []).append(error["input"])
            continue
        if str(loc[at]) == _NUMBERS_BY_NAME:
            continue  # the row is an object: its typed branch says what is wrong
        where = f"row {_row_number(row_loc)}, feature " + ", ".join(map(repr, feature))
        expected = _expected(error)
        problems.append(
            {
                "loc": [*row_loc, *feature],
                "msg": f"{where}: expected {expected}, got {_json_type(error['input'])}",
                "type": error["type"],
            }
        )
    for row_loc, inputs in unshaped.items():
        if len(inputs) == len(_ROW_SHAPES):  # neither shape: not a row at all
            problems.append(
                {
                    "loc": list(row_loc),
                    "msg": f"row {_row_number(row_loc)}: expected a list of numbers or an "
                    f"object of feature name to number, got {_json_type(inputs[0])}",
                    "type": "row_type",
                }
            )
    return problems


def _expected(error: Any) -> str:
    if error["type"] == "float_type":
        return "a number"
    if error["type"] == "value_error":
        return TYPED_VALUE_EXPECTED
    return str(error["msg"]).lower()


def _row_number(row_loc: tuple[Any, ...]) -> int:
    """``("features",)`` is /predict's only row; ``("batch", 3)`` is row 3 of a batch."""
    return row_loc[-1] if row_loc and isinstance(row_loc[-1], int) else 0


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers; unexpected exceptions are caught by the middleware instead."""

    async def on_domain(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ModelserveError)  # noqa: S101 - registered for this type
        return answer_error(request.scope, exc)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this type
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        if errors and all(e["type"] in _NOT_JSON for e in errors):
            detail = "request body is not valid JSON"
            return answer_error(request.scope, InvalidJSONError(detail))
        return answer_status(request.scope, 422, "validation_error", errors)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for this type
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        return answer_status(request.scope, exc.status_code, code, str(exc.detail), headers)

    async def on_disconnect(request: Request, exc: Exception) -> Response:
        return client_closed_request()  # the client is gone: nothing to log, nobody to tell

    app.add_exception_handler(ClientDisconnect, on_disconnect)
    app.add_exception_handler(ModelserveError, on_domain)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
