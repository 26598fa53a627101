"""Domain errors → gRPC status codes (the gRPC edge of the one error model).

The code follows the error's HTTP status, so a refusal means the same on every transport; a
``Retry-After`` travels as trailing metadata ``retry-after``.
"""

from __future__ import annotations

from typing import Final

import grpc

from modelserve.errors import ModelserveError

_BY_HTTP_STATUS: Final = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def status_of(error: ModelserveError) -> grpc.StatusCode:
    return _BY_HTTP_STATUS.get(int(error.status_code), grpc.StatusCode.INTERNAL)


def trailing_metadata(error: ModelserveError) -> tuple[tuple[str, str], ...]:
    """The error's code, and ``retry-after`` when the error asks clients to come back."""
    metadata = [("modelserve-code", error.code)]
    retry_after = error.headers.get("Retry-After")
    if retry_after is not None:
        metadata.append(("retry-after", retry_after))
    return tuple(metadata)
