"""Rows of a ``/predict-batch`` body counted from its ``Content-Length``, before it is read.

Under overload the queue refuses most large batches (``overloaded`` / ``queue_too_slow``),
but only once their body is read, parsed and converted: 64 connections of 1000-row batches
that retry at once spent the event loop parsing bodies only to refuse them (9.9 answered
requests per second). The batcher's own check runs first instead, on the rows the declared
length stands for: the bytes per row of the bodies this model parsed lately (a moving
average), so a padded or unusual body is misjudged by one request at most. The rows admitted
are reserved in the queue while their body is read and parsed, so later arrivals see them
(otherwise the queue looks empty while every admitted body is still being parsed, the model
idles and the check admits everything). A model with no parsed batch yet, or a body without
``Content-Length``, is left to the queue's own check.
"""

from __future__ import annotations

from starlette.requests import Request

from modelserve.inference.core import InferenceCore
from modelserve.inference.row_queue import Reservation

_SMOOTHING = 0.2
"""Weight of the latest parsed body in the moving average of bytes per row."""


class DeclaredRows:
    """Bytes per row of the batches each model parsed lately (keys: models that exist)."""

    def __init__(self) -> None:
        self._bytes_per_row: dict[str, float] = {}

    def observe(self, model: str, body_bytes: int, rows: int) -> None:
        """A body of ``body_bytes`` held ``rows`` rows for ``model`` (one that answered)."""
        latest = body_bytes / rows
        known = self._bytes_per_row.get(model)
        self._bytes_per_row[model] = (
            latest if known is None else known + _SMOOTHING * (latest - known)
        )

    def estimate(self, model: str | None, declared_bytes: int, limit: int) -> int | None:
        """About how many rows (at most ``limit``) a body of ``declared_bytes`` holds."""
        if model is None:
            return None
        per_row = self._bytes_per_row.get(model)
        if per_row is None:
            return None
        return max(1, min(limit, int(declared_bytes / per_row)))


def declared_length(request: Request) -> int | None:
    """The request's ``Content-Length``, when it declares a valid one."""
    for name, value in request.scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def admit_declared(
    request: Request,
    declared: DeclaredRows,
    *,
    model: str | None,
    version: str | None,
    caller: str | None,
    limit: int,
) -> Reservation | None:
    """Reserve the rows this request declares in its version's queue, or raise the queue's
    refusal, before its body is read (None: nothing to reserve by)."""
    length = declared_length(request)
    if length is None:
        return None
    core: InferenceCore = request.app.state.core
    rows = declared.estimate(model or core.registry.default_model, length, limit)
    if rows is None:
        return None
    return core.admit(rows, model=model, version=version, caller=caller)
