"""Domain errors carry a kind and data; each transport maps every one of them at its edge.

One row per error class: the HTTP status (``/predict`` and the other REST routes), the V2 REST
answer (``{"error"}`` with the same status) and the gRPC status code. A new error class
without a row fails :func:`test_error_table_has_a_row_for_every_error_class`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import orjson
import pytest

from modelserve import errors
from modelserve.api.errors import HTTP_STATUS, from_domain_error, http_headers, v2_error_response
from modelserve.errors import ErrorKind, ModelserveError, RateWindow
from modelserve.rpc.status import GRPC_STATUS, status_of, trailing_metadata

Code = grpc.StatusCode
WINDOW = RateWindow(limit=2, remaining=0, reset_at=1_800_000_000)

ERROR_TABLE: list[tuple[Callable[[], ModelserveError], int, grpc.StatusCode]] = [
    (lambda: errors.ModelserveError("boom"), 500, Code.INTERNAL),
    (lambda: errors.InvalidInputError("bad"), 400, Code.INVALID_ARGUMENT),
    (lambda: errors.InvalidJSONError("not json"), 400, Code.INVALID_ARGUMENT),
    (lambda: errors.FeatureCountError(4, 3), 400, Code.INVALID_ARGUMENT),
    (lambda: errors.NonFiniteFeatureError(0, 1, "x", float("nan")), 400, Code.INVALID_ARGUMENT),
    (lambda: errors.UnknownFeatureError(["z"], ["x"]), 400, Code.INVALID_ARGUMENT),
    (lambda: errors.MissingFeatureError(["x"]), 400, Code.INVALID_ARGUMENT),
    (lambda: errors.InvalidFeatureValueError(0, "x", "int", "2.5"), 400, Code.INVALID_ARGUMENT),
    (lambda: errors.UnknownCategoryError(0, "x", "one of 'a'", "'b'"), 400, Code.INVALID_ARGUMENT),
    (
        lambda: errors.NullFeatureError(0, "x", "int (not nullable)", "null"),
        400,
        Code.INVALID_ARGUMENT,
    ),
    (lambda: errors.UnknownDatatypeError("F7", ("FP32",)), 400, Code.INVALID_ARGUMENT),
    (lambda: errors.InvalidTensorError("input", "bad shape"), 400, Code.INVALID_ARGUMENT),
    (lambda: errors.UnknownTensorError("input", "z", ["x"]), 400, Code.INVALID_ARGUMENT),
    (errors.EmptyBatchError, 422, Code.INVALID_ARGUMENT),
    (lambda: errors.BatchTooLargeError(10, 11), 413, Code.RESOURCE_EXHAUSTED),
    (lambda: errors.BodyTooLargeError(100), 413, Code.RESOURCE_EXHAUSTED),
    (lambda: errors.UnsupportedMediaTypeError("text/plain"), 415, Code.INVALID_ARGUMENT),
    (lambda: errors.BodyTimeoutError(5.0), 408, Code.DEADLINE_EXCEEDED),
    (lambda: errors.ModelNotFoundError("x", ["iris"]), 404, Code.NOT_FOUND),
    (lambda: errors.VersionNotFoundError("iris", "9", ["1"]), 404, Code.NOT_FOUND),
    (lambda: errors.VersionInUseError("iris", "1", "default"), 409, Code.FAILED_PRECONDITION),
    (lambda: errors.VersionNotLoadedError("iris", "2", "failed"), 409, Code.FAILED_PRECONDITION),
    (lambda: errors.ModelNotReadyError("iris", "1", "loading"), 503, Code.UNAVAILABLE),
    (lambda: errors.OverloadedError("iris", 10, 10, retry_after_s=3), 503, Code.UNAVAILABLE),
    (lambda: errors.QueueTooSlowError("iris", 10, 2.5, 0.6), 503, Code.UNAVAILABLE),
    (lambda: errors.BusyError(200, 100), 503, Code.UNAVAILABLE),
    (lambda: errors.ControlUnavailableError("the store is down"), 503, Code.UNAVAILABLE),
    (errors.ShuttingDownError, 503, Code.UNAVAILABLE),
    (lambda: errors.QueueTimeoutError(50), 504, Code.DEADLINE_EXCEEDED),
    (lambda: errors.InferenceTimeoutError(50), 504, Code.DEADLINE_EXCEEDED),
    (errors.PredictionFailedError, 500, Code.INTERNAL),
    (lambda: errors.NonFiniteOutputError(2), 400, Code.INVALID_ARGUMENT),
    (errors.UnauthorizedError, 401, Code.UNAUTHENTICATED),
    (lambda: errors.ForbiddenError("admin"), 403, Code.PERMISSION_DENIED),
    (lambda: errors.RateLimitedError("2/minute", WINDOW, 7), 429, Code.RESOURCE_EXHAUSTED),
    (lambda: errors.AuthLockedOutError("5/minute", 30), 429, Code.RESOURCE_EXHAUSTED),
    (errors.RateLimitUnavailableError, 503, Code.UNAVAILABLE),
    (lambda: errors.ModelLoadError("cannot load"), 409, Code.FAILED_PRECONDITION),
    (lambda: errors.StartupFailedError(["iris:1"]), 409, Code.FAILED_PRECONDITION),
    (lambda: errors.ChecksumMismatchError("m.pkl", "ab", "cd"), 409, Code.FAILED_PRECONDITION),
    (lambda: errors.PinRequiredError("m.pkl"), 409, Code.FAILED_PRECONDITION),
]
ROWS = [(make(), status, code) for make, status, code in ERROR_TABLE]
IDS = [type(error).__name__ for error, _, _ in ROWS]


def _error_classes(root: type[ModelserveError]) -> set[type[ModelserveError]]:
    return {root, *(c for sub in root.__subclasses__() for c in _error_classes(sub))}


def test_error_table_has_a_row_for_every_error_class() -> None:
    """Every ModelserveError subclass, in errors.py or anywhere else, has one row above."""
    tabled = [type(error) for error, _, _ in ROWS]
    assert len(tabled) == len(set(tabled))
    assert set(tabled) == _error_classes(ModelserveError)


@pytest.mark.parametrize("kind", list(ErrorKind), ids=lambda kind: kind.value)
def test_every_error_kind_has_an_http_status_and_a_grpc_code(kind: ErrorKind) -> None:
    """Both adapters map every kind, so no error can fall through to a default."""
    assert kind in HTTP_STATUS
    assert kind in GRPC_STATUS


@pytest.mark.parametrize(("error", "status", "code"), ROWS, ids=IDS)
def test_domain_error_maps_to_its_http_answer(
    error: ModelserveError, status: int, code: grpc.StatusCode
) -> None:
    """The REST answer: the status and the ``{detail, code, request_id}`` body."""
    response = from_domain_error(error, "req-1")
    assert response.status_code == status
    body: dict[str, Any] = orjson.loads(response.body)
    assert body == {"detail": error.detail, "code": error.code, "request_id": "req-1"}


@pytest.mark.parametrize(("error", "status", "code"), ROWS, ids=IDS)
def test_domain_error_maps_to_its_v2_rest_answer(
    error: ModelserveError, status: int, code: grpc.StatusCode
) -> None:
    """The Open Inference Protocol's answer: ``{"error": message}``, the same status."""
    response = v2_error_response(error)
    assert response.status_code == status
    assert orjson.loads(response.body) == {"error": error.detail}


@pytest.mark.parametrize(("error", "status", "code"), ROWS, ids=IDS)
def test_domain_error_maps_to_its_grpc_status(
    error: ModelserveError, status: int, code: grpc.StatusCode
) -> None:
    """The gRPC status code, and the error's code in the trailing metadata."""
    assert status_of(error) is code
    assert ("modelserve-code", error.code) in trailing_metadata(error)


def test_domain_errors_carry_no_transport_details() -> None:
    """No error class knows an HTTP status or header: only a kind and its own data."""
    for cls in _error_classes(ModelserveError):
        assert not hasattr(cls, "status_code"), cls
        assert not hasattr(cls, "headers"), cls
        assert isinstance(cls.kind, ErrorKind), cls


@pytest.mark.parametrize(
    ("error", "headers", "metadata"),
    [
        (
            errors.OverloadedError("x", 10, 10, retry_after_s=3),
            {"Retry-After": "3"},
            {"retry-after": "3"},
        ),
        (
            errors.ShuttingDownError(),
            {"Retry-After": "1", "Connection": "close"},
            {"retry-after": "1"},
        ),
        (errors.BodyTooLargeError(100), {"Connection": "close"}, {}),
        (errors.BodyTimeoutError(5.0), {"Connection": "close"}, {}),
        (errors.UnauthorizedError(), {"WWW-Authenticate": "Bearer"}, {}),
        (
            errors.RateLimitedError("2/minute", WINDOW, 7),
            {
                "X-RateLimit-Limit": "2",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": "1800000000",
                "Retry-After": "7",
            },
            {"retry-after": "7"},
        ),
        (errors.AuthLockedOutError("5/minute", 30), {"Retry-After": "30"}, {"retry-after": "30"}),
        (errors.ModelNotFoundError("x", []), {}, {}),
    ],
    ids=[
        "overloaded",
        "shutting-down",
        "body-too-large",
        "body-timeout",
        "unauthorized",
        "rate-limited",
        "locked-out",
        "none",
    ],
)
def test_transport_headers_come_from_the_errors_data(
    error: ModelserveError, headers: dict[str, str], metadata: dict[str, str]
) -> None:
    """Retry-After, WWW-Authenticate, Connection and the rate headers are built at the HTTP
    edge; the gRPC edge sends the same retry-after as trailing metadata."""
    assert http_headers(error) == headers
    assert dict(trailing_metadata(error)) == {"modelserve-code": error.code, **metadata}


def test_error_naming_its_version_carries_it_on_every_transport() -> None:
    """An error a version raised names it in the REST body and header and the V2 header."""
    error = errors.PredictionFailedError()
    error.answered_by("iris", "2")
    rest, v2 = from_domain_error(error, None), v2_error_response(error)
    assert orjson.loads(rest.body)["model_version"] == "2"
    assert rest.headers["x-model-version"] == v2.headers["x-model-version"] == "2"
