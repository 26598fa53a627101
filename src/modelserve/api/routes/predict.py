"""POST /predict and POST /predict-batch.

These are plain Starlette endpoints rather than FastAPI-decorated ones: the decorator path
costs about half the HTTP ceiling per request on the hottest
route. The same Pydantic models validate the bodies and document them in /docs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

import orjson
import structlog
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from modelserve.api.batch_body import BatchRows, parse_batch
from modelserve.api.content_type import require_json
from modelserve.api.declared_rows import DeclaredRows, admit_declared
from modelserve.api.direct_io import RawResponse, header, query, read_body
from modelserve.api.disconnect import while_connected
from modelserve.api.errors import from_validation_error
from modelserve.api.offload import now_or_in_thread, run_for_size
from modelserve.api.ratelimit import charge_rows, rows_charge_pending
from modelserve.api.schemas import PredictRequest
from modelserve.errors import BatchTooLargeError, EmptyBatchError, InvalidInputError
from modelserve.inference.core import InferenceCore
from modelserve.inference.formatting import format_batch, format_predictions
from modelserve.inference.large import Pipeline
from modelserve.inference.preprocess import FeatureSchema, Row
from modelserve.inference.result import InferenceResult
from modelserve.inference.row_queue import Reservation
from modelserve.inference.types import Batch, Prediction
from modelserve.observability.logging import utc_timestamp

_ENVELOPE_BRACKETS = 2
"""``{"batch": [`` around the rows."""


def _selection(request: Request) -> tuple[str | None, str | None, int | None]:
    if not request.scope["query_string"]:  # the common case: no parameters to parse
        return None, header(request.scope, b"x-model-version"), None
    params = query(request.scope)
    version = params.get("model_version") or header(request.scope, b"x-model-version")
    top_k_text = params.get("top_k")
    top_k = None
    if top_k_text is not None:
        # Only ASCII: '²' is a digit to str.isdigit() that int() refuses.
        if not (top_k_text.isascii() and top_k_text.isdigit()) or int(top_k_text) < 1:
            raise InvalidInputError(f"top_k must be a positive integer, got {top_k_text!r}")
        top_k = int(top_k_text)
    return params.get("model"), version, top_k


def _caller(request: Request) -> str | None:
    """Who is asking, for sticky routing: the API key's name, else X-Client-ID."""
    caller: str | None = request.scope["state"].get("caller")
    return caller or header(request.scope, b"x-client-id")


def _request_id(request: Request) -> str:
    request_id: str = request.scope["state"]["request_id"]
    return request_id


class _JSONAnswer(RawResponse):
    """A 200 JSON answer naming the version that computed it (and the cache's part)."""

    media_type = "application/json"

    def __init__(self, content: dict[str, object] | bytes, result: InferenceResult) -> None:
        body = content if isinstance(content, bytes) else orjson.dumps(content)
        super().__init__(body, b"application/json", _result_headers(result))


def _result_headers(result: InferenceResult) -> list[tuple[bytes, bytes]]:
    headers = [(b"x-model-version", result.model_version.encode())]
    if result.cache_status is not None:
        headers.append((b"x-cache", result.cache_status.encode()))
    return headers


def _json(content: dict[str, object], result: InferenceResult) -> Response:
    return _JSONAnswer(content, result)


async def _infer_rows(
    request: Request, rows: Sequence[Row], size: int
) -> tuple[InferenceResult, list[Prediction]]:
    """Infer ``rows`` with the model, version and ``top_k`` the request names, while the
    client stays connected: the result and each row's answer formatted with that ``top_k``.

    A body of ``size`` bytes above the offload threshold has its rows converted and its
    answers formatted in a thread (:mod:`modelserve.api.offload`)."""
    core: InferenceCore = request.app.state.core
    model, version, top_k = _selection(request)

    def decode(schema: FeatureSchema) -> Batch | Awaitable[Batch]:
        return now_or_in_thread(size, schema.rows_to_array, rows)

    result = await while_connected(
        request.receive,
        core.infer(decode, model=model, version=version, caller=_caller(request), top_k=top_k),
    )
    return result, await run_for_size(size, format_predictions, result.outputs, result.spec, top_k)


async def predict(request: Request) -> Response:
    """Predict one row."""
    require_json(request.scope)
    body = await read_body(request)
    try:
        payload = PredictRequest.model_validate_json(body)
    except ValidationError as exc:
        return from_validation_error(exc, _request_id(request))
    result, (answer,) = await _infer_rows(request, [payload.features], len(body))
    structlog.contextvars.bind_contextvars(
        prediction=answer.prediction, confidence=answer.confidence
    )
    return _json(
        {
            "prediction": answer.prediction,
            "confidence": answer.confidence,
            "probabilities": answer.probabilities,
            "model": result.model,
            "model_version": result.model_version,
            "latency_ms": round(result.latency_ms, 3),
            "timestamp": utc_timestamp(),
            "request_id": _request_id(request),
        },
        result,
    )


def _bound_batch(body: bytes, limit: int, width: int) -> None:
    """Refuse a batch of more than ``limit`` rows, or ``limit`` x ``width`` values, unparsed.

    Every row opens with ``[`` or ``{`` and values are separated by commas, so counting them
    (at memchr speed) bounds rows and values from above. Parsing is what costs: a body within
    the byte limit can hold ~100 000 ``[1]`` rows or numbers, and would hold the event loop
    through a long parse only to be refused.
    """
    if body.count(b"[") + body.count(b"{") > limit + _ENVELOPE_BRACKETS:
        raise BatchTooLargeError(limit)
    if body.count(b",") > limit * (width + 1):
        raise BatchTooLargeError(limit, width=width)


async def predict_batch(request: Request) -> Response:
    """Predict many rows in one request.

    A body the model's queue would refuse by its declared rows is refused before it is read
    (:mod:`modelserve.api.declared_rows`)."""
    require_json(request.scope)
    settings = request.app.state.settings
    limit: int = settings.server.max_batch_rows
    declared: DeclaredRows = request.app.state.declared_rows
    model, version, top_k = _selection(request)
    caller = _caller(request)
    reservation = admit_declared(
        request, declared, model=model, version=version, caller=caller, limit=limit
    )
    try:
        body = await read_body(request)
        size = len(body)
        _bound_batch(body, limit, settings.widest_model())
        core: InferenceCore = request.app.state.core
        if core.one_job(size) and not rows_charge_pending(request.scope):
            selection = _Selection(model, version, caller, top_k)
            return await _predict_large_batch(request, body, limit, selection, reservation)
        try:
            rows = await run_for_size(size, parse_batch, body)
        except ValidationError as exc:
            return from_validation_error(exc, _request_id(request))
        if not len(rows):
            raise EmptyBatchError()
        if len(rows) > limit:
            raise BatchTooLargeError(limit, len(rows))
        await charge_rows(request, len(rows))

        def decode(schema: FeatureSchema) -> Batch | Awaitable[Batch]:
            if not rows.converts(schema):
                return rows.to_array(schema)  # no thread hop for an array already built
            return now_or_in_thread(size, rows.to_array, schema)

        inference = core.infer(
            decode,
            model=model,
            version=version,
            caller=caller,
            top_k=top_k,
            reservation=reservation,
        )
        result = await while_connected(request.receive, inference)
    finally:
        if reservation is not None:
            reservation.release()  # a body refused, or a client gone, before its rows queued
    declared.observe(result.model, size, len(rows))
    structlog.contextvars.bind_contextvars(
        avg_latency_per_sample_ms=round(result.latency_ms / len(rows), 4)
    )
    envelope: dict[str, object] = {
        "model": result.model,
        "model_version": result.model_version,
        "latency_ms": round(result.latency_ms, 3),
        "timestamp": utc_timestamp(),
        "request_id": _request_id(request),
    }
    probabilities = query(request.scope).get("probabilities") in ("1", "true")
    answer = await run_for_size(size, _batch_answer, result, top_k, probabilities, envelope)
    return _JSONAnswer(answer, result)


@dataclass(frozen=True, slots=True)
class _Selection:
    model: str | None
    version: str | None
    caller: str | None
    top_k: int | None


async def _predict_large_batch(
    request: Request,
    body: bytes,
    limit: int,
    selection: _Selection,
    reservation: Reservation | None,
) -> Response:
    """A large batch as one job (:mod:`modelserve.inference.large`): parsing, validation,
    column ordering, the cache, the model call, formatting and serialising run in the model's
    inference thread; the loop writes the bytes. Same answers and errors as the staged path."""
    core: InferenceCore = request.app.state.core
    request_id = _request_id(request)
    top_k = selection.top_k
    probabilities = query(request.scope).get("probabilities") in ("1", "true")

    def parse() -> BatchRows:
        rows = parse_batch(body)
        if not len(rows):
            raise EmptyBatchError()
        if len(rows) > limit:
            raise BatchTooLargeError(limit, len(rows))
        return rows

    def encode(rows: BatchRows, result: InferenceResult) -> bytes:
        envelope: dict[str, object] = {
            "model": result.model,
            "model_version": result.model_version,
            "latency_ms": round(result.latency_ms, 3),
            "timestamp": utc_timestamp(),
            "request_id": request_id,
        }
        return _batch_answer(result, top_k, probabilities, envelope)

    # Every row opens with one bracket, the envelope with two (see _bound_batch).
    estimate = min(limit, max(1, body.count(b"[") + body.count(b"{") - _ENVELOPE_BRACKETS))
    pipeline = Pipeline(parse, BatchRows.to_array, encode, lambda _: estimate)
    inference = core.infer_large(
        pipeline,
        model=selection.model,
        version=selection.version,
        caller=selection.caller,
        top_k=top_k,
        reservation=reservation,
    )
    try:
        result, answer = await while_connected(request.receive, inference)
    except ValidationError as exc:
        return from_validation_error(exc, request_id)
    rows = len(result.outputs)
    declared: DeclaredRows = request.app.state.declared_rows
    declared.observe(result.model, len(body), rows)
    structlog.contextvars.bind_contextvars(
        avg_latency_per_sample_ms=round(result.latency_ms / rows, 4)
    )
    return _JSONAnswer(answer, result)


def _batch_answer(
    result: InferenceResult, top_k: int | None, probabilities: bool, envelope: dict[str, object]
) -> bytes:
    """The serialised /predict-batch answer: formatted per column and serialised once."""
    answer = format_batch(result.outputs, result.spec, top_k, probabilities=probabilities)
    content: dict[str, object] = {
        "predictions": answer.predictions,
        "confidences": answer.confidences,
        **envelope,
    }
    if answer.probabilities is not None:
        content["probabilities"] = answer.probabilities
    return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
