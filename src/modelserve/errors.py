"""Domain errors. Every failure a client can see is one of these, with a stable ``code``.

An error carries no transport detail: a ``kind`` (what sort of failure, see
:class:`ErrorKind`), its message and its data (``retry_after_s``, a rate-limit window, the
version that answered). Each transport maps them at its edge: :mod:`modelserve.api.errors`
to an HTTP status, headers and the REST body (the Open Inference Protocol's ``{"error"}``
body on ``/v2``), :mod:`modelserve.rpc.status` to a gRPC status code and trailing metadata.

The tree, with each error's kind (and the HTTP status that kind answers)::

    ModelserveError (internal: 500 internal_error)
    ├── InvalidInputError (invalid_argument: 400 invalid_input)
    │   ├── InvalidJSONError (400 invalid_json)
    │   ├── FeatureCountError (400 wrong_feature_count)
    │   ├── NonFiniteFeatureError (400 non_finite_feature)
    │   ├── UnknownFeatureError (400 unknown_feature)
    │   ├── MissingFeatureError (400 missing_feature)
    │   ├── InvalidFeatureValueError (400 invalid_feature_value; row, feature, expected, got)
    │   │   ├── UnknownCategoryError (400 unknown_category)
    │   │   └── NullFeatureError (400 missing_feature; null or absent, not nullable)
    │   ├── UnknownDatatypeError (400 unknown_datatype; Open Inference Protocol tensors)
    │   ├── InvalidTensorError (400 invalid_tensor; shape, data length or values)
    │   └── UnknownTensorError (400 unknown_tensor; an input or output the model lacks)
    ├── EmptyBatchError (empty_input: 422 empty_batch)
    ├── BatchTooLargeError (too_large: 413 batch_too_large)
    ├── BodyTooLargeError (too_large: 413 body_too_large)
    ├── UnsupportedMediaTypeError (unsupported_format: 415 unsupported_media_type)
    ├── BodyTimeoutError (client_timeout: 408 body_timeout)
    ├── ModelNotFoundError (not_found: 404 model_not_found)
    ├── VersionNotFoundError (not_found: 404 version_not_found)
    ├── VersionInUseError (conflict: 409 version_in_use)
    ├── VersionNotLoadedError (conflict: 409 version_not_loaded)
    ├── ModelNotReadyError (unavailable: 503 model_not_ready; retry_after_s)
    ├── OverloadedError (unavailable: 503 overloaded; the queue is full; retry_after_s)
    │   └── QueueTooSlowError (unavailable: 503 overloaded; the queue would outlast the
    │                          deadline; retry_after_s)
    ├── BusyError (unavailable: 503 overloaded; request bytes in flight; retry_after_s)
    ├── ShuttingDownError (unavailable: 503 shutting_down; retry_after_s)
    ├── QueueTimeoutError (deadline_exceeded: 504 queue_timeout)
    ├── InferenceTimeoutError (deadline_exceeded: 504 inference_timeout)
    ├── PredictionFailedError (internal: 500 prediction_failed)
    ├── NonFiniteOutputError (invalid_argument: 400 non_finite_output; the input drove the
    │                         model to NaN or infinity)
    ├── UnauthorizedError (unauthenticated: 401 unauthorized)
    ├── ForbiddenError (permission_denied: 403 forbidden)
    ├── RateLimitedError (rate_limited: 429 rate_limited; window, retry_after_s)
    ├── AuthLockedOutError (rate_limited: 429 too_many_auth_failures; retry_after_s)
    ├── RateLimitUnavailableError (unavailable: 503 rate_limit_unavailable; retry_after_s)
    ├── ControlUnavailableError (unavailable: 503 control_unavailable; an admin change not
    │                            shared; retry_after_s)
    └── ModelLoadError (conflict: 409 model_load_failed; admin load/reload only, never on
        │               predict)
        ├── StartupFailedError (``--strict`` start-up; never sent to a client)
        ├── ChecksumMismatchError (sha256 differs from the pin)
        └── PinRequiredError (require_sha256 and a code-running format without a pin)

Inference code raises these; the transports turn them into answers.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import ClassVar


class ErrorKind(enum.Enum):
    """What sort of failure an error is, in words no transport owns.

    Each transport's adapter maps every kind (a test checks that none is missing); the kinds
    are as fine as the finest transport needs (HTTP tells 413 from 429, gRPC does not).
    """

    INVALID_ARGUMENT = "invalid_argument"
    """The request is wrong: a bad value, shape, name or body."""
    EMPTY_INPUT = "empty_input"
    """Well-formed, but with nothing to compute."""
    UNSUPPORTED_FORMAT = "unsupported_format"
    """The body is declared in a format the operation does not take."""
    TOO_LARGE = "too_large"
    """The request is over a size limit."""
    CLIENT_TIMEOUT = "client_timeout"
    """The client did not send its request in time."""
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission_denied"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    """The request contradicts the server's state (a version still routed to, a load that
    failed)."""
    RATE_LIMITED = "rate_limited"
    """The caller is over its budget; ``retry_after_s`` says when it frees up."""
    UNAVAILABLE = "unavailable"
    """The server cannot take it now (not ready, overloaded, draining); often with
    ``retry_after_s``."""
    DEADLINE_EXCEEDED = "deadline_exceeded"
    """The server ran out of time (queue wait or model execution)."""
    INTERNAL = "internal"

    @property
    def is_client_error(self) -> bool:
        """The request's fault (bad input, too large, no key, over its budget...), not the
        server's."""
        return self not in _SERVER_KINDS


_SERVER_KINDS = frozenset({ErrorKind.UNAVAILABLE, ErrorKind.DEADLINE_EXCEEDED, ErrorKind.INTERNAL})


@dataclass(frozen=True, slots=True)
class RateWindow:
    """A caller's tightest rate limit after a charge."""

    limit: int
    """Requests (or rows) allowed per window."""
    remaining: int
    reset_at: int
    """Unix time, in seconds, when the window frees up."""


class ModelserveError(Exception):
    """Base class: a stable machine-readable ``code``, a ``kind``, a message and data."""

    code: ClassVar[str] = "internal_error"
    kind: ClassVar[ErrorKind] = ErrorKind.INTERNAL
    retry_after_s: int | None = None
    """Seconds after which the same request may succeed (overload, draining, rate limits)."""
    model: str | None = None
    """The model whose version answered with this error, once a version was chosen."""
    model_version: str | None = None
    """That version (a canary's error names the canary)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def answered_by(self, model: str, version: str) -> None:
        """Record which version raised this error, so the response can name it."""
        self.model, self.model_version = model, version


class InvalidInputError(ModelserveError):
    code = "invalid_input"
    kind = ErrorKind.INVALID_ARGUMENT


class InvalidJSONError(InvalidInputError):
    code = "invalid_json"


class FeatureCountError(InvalidInputError):
    code = "wrong_feature_count"

    def __init__(self, expected: int, got: int, row: int | None = None) -> None:
        where = f" in row {row}" if row is not None else ""
        super().__init__(f"expected {expected} features, got {got}{where}")
        self.expected, self.got, self.row = expected, got, row


class NonFiniteFeatureError(InvalidInputError):
    code = "non_finite_feature"

    def __init__(self, row: int, column: int, feature: str | None, value: float) -> None:
        name = f" ({feature!r})" if feature else ""
        super().__init__(
            f"feature values must be finite numbers: row {row}, column {column}{name} is {value}"
        )
        self.row, self.column = row, column


class UnknownFeatureError(InvalidInputError):
    code = "unknown_feature"

    def __init__(self, names: list[str], expected: list[str]) -> None:
        super().__init__(f"unknown feature(s) {', '.join(names)}; expected {', '.join(expected)}")


class MissingFeatureError(InvalidInputError):
    code = "missing_feature"

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"missing feature(s) {', '.join(names)}")


class InvalidFeatureValueError(InvalidInputError):
    """A typed feature's value does not fit its schema: names row, feature, expected and got."""

    code = "invalid_feature_value"

    def __init__(self, row: int, feature: str, expected: str, got: str) -> None:
        super().__init__(f"row {row}, feature {feature!r}: expected {expected}, got {got}")
        self.row, self.feature, self.expected, self.got = row, feature, expected, got


class UnknownCategoryError(InvalidFeatureValueError):
    code = "unknown_category"


class NullFeatureError(InvalidFeatureValueError):
    code = "missing_feature"


class UnknownDatatypeError(InvalidInputError):
    code = "unknown_datatype"

    def __init__(self, datatype: object, known: tuple[str, ...]) -> None:
        super().__init__(f"unknown datatype {datatype!r}; expected one of {', '.join(known)}")


class InvalidTensorError(InvalidInputError):
    """A V2 tensor whose shape, data length, values or datatype do not fit."""

    code = "invalid_tensor"

    def __init__(self, tensor: str, problem: str) -> None:
        super().__init__(f"tensor {tensor!r}: {problem}")
        self.tensor = tensor


class UnknownTensorError(InvalidInputError):
    code = "unknown_tensor"

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        super().__init__(f"unknown {kind} {name!r}; this model has {', '.join(known) or 'none'}")


class EmptyBatchError(ModelserveError):
    code = "empty_batch"
    kind = ErrorKind.EMPTY_INPUT

    def __init__(self) -> None:
        super().__init__("the batch is empty: send at least one row")


class BatchTooLargeError(ModelserveError):
    code = "batch_too_large"
    kind = ErrorKind.TOO_LARGE

    def __init__(self, limit: int, got: int | None = None, *, width: int | None = None) -> None:
        if width is not None:
            super().__init__(
                f"a batch may hold at most {limit} rows of {width} features (server."
                "max_batch_rows x the widest model; set n_features for a wider one), got more"
            )
            return
        counted = "more" if got is None else str(got)
        super().__init__(f"a batch may hold at most {limit} rows, got {counted}")


class BodyTooLargeError(ModelserveError):
    code = "body_too_large"
    kind = ErrorKind.TOO_LARGE

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"request body exceeds the limit of {limit} bytes (setting server.max_body_bytes)"
        )


class UnsupportedMediaTypeError(ModelserveError):
    """A body sent to a predicting or state-changing route that is not declared JSON.

    Browsers send ``text/plain`` and form bodies cross-origin without a CORS preflight; JSON
    needs one, so requiring it stops a web page from driving the API from a visitor's browser.
    """

    code = "unsupported_media_type"
    kind = ErrorKind.UNSUPPORTED_FORMAT

    def __init__(self, got: str | None, expected: str = "Content-Type: application/json") -> None:
        shown = repr(got[:64]) if got else "none"
        super().__init__(f"this route takes {expected}, got {shown}")


class BodyTimeoutError(ModelserveError):
    code = "body_timeout"
    kind = ErrorKind.CLIENT_TIMEOUT

    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            f"request body not received within {timeout_s:g} s (setting server.body_timeout_s)"
        )


class ModelNotFoundError(ModelserveError):
    code = "model_not_found"
    kind = ErrorKind.NOT_FOUND

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown model {name!r}; served models: {', '.join(known) or 'none'}")


class VersionNotFoundError(ModelserveError):
    code = "version_not_found"
    kind = ErrorKind.NOT_FOUND

    def __init__(self, name: str, version: str, known: list[str]) -> None:
        super().__init__(
            f"model {name!r} has no version {version!r}; versions: {', '.join(known) or 'none'}"
        )


class VersionInUseError(ModelserveError):
    """An admin unload of a version that the model's routing still names."""

    code = "version_in_use"
    kind = ErrorKind.CONFLICT

    def __init__(self, name: str, version: str, role: str) -> None:
        super().__init__(
            f"model {name!r} version {version!r} is still named by its routing ({role}); "
            "route traffic away from it first"
        )


class VersionNotLoadedError(ModelserveError):
    """An admin routing change that would send traffic to a version that does not serve."""

    code = "version_not_loaded"
    kind = ErrorKind.CONFLICT

    def __init__(self, name: str, version: str, status: str) -> None:
        super().__init__(
            f"model {name!r} version {version!r} is {status}; load it before routing to it"
        )


class ModelNotReadyError(ModelserveError):
    code = "model_not_ready"
    kind = ErrorKind.UNAVAILABLE

    def __init__(self, name: str, version: str, reason: str, retry_after_s: int = 1) -> None:
        super().__init__(f"model {name!r} version {version!r} is not ready: {reason}")
        self.retry_after_s = retry_after_s


class OverloadedError(ModelserveError):
    code = "overloaded"
    kind = ErrorKind.UNAVAILABLE

    def __init__(self, name: str, queued_rows: int, limit: int, retry_after_s: int = 1) -> None:
        super().__init__(
            f"model {name!r} is overloaded: {queued_rows} rows queued, limit {limit}; retry later"
        )
        self.retry_after_s = retry_after_s


class QueueTooSlowError(OverloadedError):
    """Computing the rows ahead and the request's own would take longer than the deadline
    allows (``ADMISSION_SHARE`` of ``timeout_ms``)."""

    def __init__(self, name: str, queued_rows: int, done_in_s: float, budget_s: float) -> None:
        ModelserveError.__init__(
            self,
            f"model {name!r} is overloaded: with {queued_rows} rows queued this request would "
            f"be answered in about {done_in_s:.2f} s, past the {budget_s:.2f} s its deadline "
            "allows; retry later",
        )
        self.retry_after_s = max(1, math.ceil(done_in_s))


class BusyError(ModelserveError):
    """Too many request bytes already in flight (``server.max_inflight_bytes``)."""

    code = "overloaded"
    kind = ErrorKind.UNAVAILABLE
    retry_after_s = 1

    def __init__(self, inflight_bytes: int, limit: int) -> None:
        super().__init__(
            f"the server is busy: {inflight_bytes} bytes of requests in flight, limit {limit}; "
            "retry later"
        )


class ShuttingDownError(ModelserveError):
    code = "shutting_down"
    kind = ErrorKind.UNAVAILABLE
    retry_after_s = 1

    def __init__(self) -> None:
        super().__init__("the server is shutting down; retry on another replica")


class QueueTimeoutError(ModelserveError):
    code = "queue_timeout"
    kind = ErrorKind.DEADLINE_EXCEEDED

    def __init__(self, timeout_ms: float) -> None:
        super().__init__(f"request waited in the queue past its {timeout_ms:g} ms deadline")


class InferenceTimeoutError(ModelserveError):
    code = "inference_timeout"
    kind = ErrorKind.DEADLINE_EXCEEDED

    def __init__(self, timeout_ms: float) -> None:
        super().__init__(f"model execution exceeded the {timeout_ms:g} ms deadline")


class PredictionFailedError(ModelserveError):
    code = "prediction_failed"
    kind = ErrorKind.INTERNAL

    def __init__(self) -> None:
        super().__init__("the model failed to compute a prediction; see the server log")


class NonFiniteOutputError(ModelserveError):
    """A client error: finite input far outside the training data (``1e308``) is what drives
    a fitted model to NaN or infinity, and answering 500 to arbitrary input would make any
    client page the operator."""

    code = "non_finite_output"
    kind = ErrorKind.INVALID_ARGUMENT

    def __init__(self, row: int) -> None:
        super().__init__(
            f"the model returned a non-finite value (NaN or infinity) for row {row}; "
            "the input may be far outside the data the model was trained on"
        )
        self.row = row


class UnauthorizedError(ModelserveError):
    code = "unauthorized"
    kind = ErrorKind.UNAUTHENTICATED

    def __init__(self, detail: str = "missing or invalid API key") -> None:
        super().__init__(detail)


class ForbiddenError(ModelserveError):
    code = "forbidden"
    kind = ErrorKind.PERMISSION_DENIED

    def __init__(self, scope: str) -> None:
        super().__init__(f"this API key lacks the {scope!r} scope")


class RateLimitedError(ModelserveError):
    code = "rate_limited"
    kind = ErrorKind.RATE_LIMITED

    def __init__(self, limit: str, window: RateWindow, retry_after_s: int) -> None:
        super().__init__(f"rate limit exceeded: {limit}")
        self.window = window
        self.retry_after_s = retry_after_s


class AuthLockedOutError(ModelserveError):
    """A client address over ``auth.failed_auth_limit``: refused until its window ends."""

    code = "too_many_auth_failures"
    kind = ErrorKind.RATE_LIMITED

    def __init__(self, limit: str, retry_after_s: int) -> None:
        super().__init__(
            f"too many failed authentications from this address (limit {limit}); "
            f"retry in {retry_after_s} s"
        )
        self.retry_after_s = retry_after_s


class RateLimitUnavailableError(ModelserveError):
    """Rate-limit storage unreachable and ``rate_limit.fail_open`` is false."""

    code = "rate_limit_unavailable"
    kind = ErrorKind.UNAVAILABLE
    retry_after_s = 1

    def __init__(self) -> None:
        super().__init__("rate limits cannot be checked right now; retry later")


class ControlUnavailableError(ModelserveError):
    """An admin change succeeded here but the shared desired state could not be written."""

    code = "control_unavailable"
    kind = ErrorKind.UNAVAILABLE
    retry_after_s = 1

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"the change could not be shared with the other processes ({reason}); this "
            "process returns to the shared state once the store answers: retry later"
        )


class ModelLoadError(ModelserveError):
    """An artifact that cannot be loaded or warmed up. At startup the version answers 503; on an
    admin load/reload the call answers 409 and the previous artifact, if any, keeps serving."""

    code = "model_load_failed"
    kind = ErrorKind.CONFLICT


class StartupFailedError(ModelLoadError):
    """``--strict``: at least one version failed to load; the server exits instead of serving."""

    def __init__(self, failures: list[str]) -> None:
        super().__init__(
            f"--strict: {len(failures)} model version(s) failed to load: " + "; ".join(failures)
        )
        self.failures = failures


class ChecksumMismatchError(ModelLoadError):
    code = "checksum_mismatch"

    def __init__(self, path: str, expected: str, got: str) -> None:
        super().__init__(f"sha256 of {path} is {got}, configuration pins {expected}")


class PinRequiredError(ModelLoadError):
    code = "sha256_required"

    def __init__(self, filename: str, field: str = "sha256", how: str | None = None) -> None:
        super().__init__(
            f"{filename} is a format that runs code when loaded and require_sha256 is on: "
            f"pin its digest in `{field}` ({how or f'sha256sum {filename}'}), or turn"
            " require_sha256 off"
        )
