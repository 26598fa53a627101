"""Domain errors → gRPC status codes (the gRPC edge of the one error model).

Every kind of domain error has a code here (a test checks none is missing), so a refusal means
the same on every transport; the error's ``code`` travels as trailing metadata
``modelserve-code`` and its ``retry_after_s`` as ``retry-after``.
"""

from __future__ import annotations

from typing import Final

import grpc

from modelserve.errors import ErrorKind, ModelserveError

GRPC_STATUS: Final[dict[ErrorKind, grpc.StatusCode]] = {
    ErrorKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.EMPTY_INPUT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.UNSUPPORTED_FORMAT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.CLIENT_TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorKind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorKind.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.CONFLICT: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorKind.RATE_LIMITED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
}
"""The gRPC status code of each kind of domain error."""


def status_of(error: ModelserveError | type[ModelserveError]) -> grpc.StatusCode:
    """The gRPC status code of a domain error (or error class)."""
    return GRPC_STATUS[error.kind]


def trailing_metadata(error: ModelserveError) -> tuple[tuple[str, str], ...]:
    """The error's code, and ``retry-after`` when the error asks clients to come back."""
    metadata = [("modelserve-code", error.code)]
    if error.retry_after_s is not None:
        metadata.append(("retry-after", str(error.retry_after_s)))
    return tuple(metadata)
