"""The Open Inference Protocol (KServe V2) over REST: ``/v2/...``.

Thin: each endpoint reads the path and body, calls the V2 data plane, and writes its answer.
Failures answer as the protocol says, ``{"error": "<message>"}``, with the status and headers
of the domain error (400 bad input, 404 unknown model or version, 503 + ``Retry-After`` not
ready or overloaded, 500 without internals). Every route is declared
``Protocol.OPEN_INFERENCE``, so refusals made before it runs (API key, rate limit, body size,
bytes in flight, routing) answer in that body too (:func:`~modelserve.api.errors.answer_error`).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from modelserve.api.content_type import require_json, require_v2_infer_body
from modelserve.api.direct_io import RawResponse, header, read_body
from modelserve.api.disconnect import client_closed_request, while_connected
from modelserve.api.errors import v2_error_response
from modelserve.api.offload import run_for_size
from modelserve.api.openapi_v2 import v2_doc
from modelserve.api.ratelimit import charge_infer
from modelserve.api.route_table import Access, Operation, Protocol, RouteSpec
from modelserve.errors import InvalidInputError, ModelserveError
from modelserve.inference.metadata import VersionMetadata
from modelserve.v2.dataplane import Charge, DataPlane, repository_version
from modelserve.v2.rest_body import (
    BINARY_CONTENT_TYPE,
    HEADER_LENGTH,
    decode_infer_request,
    encode_infer_response,
)
from modelserve.v2.statistics import Duration, VersionStatistics

log = structlog.get_logger(__name__)

_JSON: Final = "application/json"
_JSON_TYPE: Final = _JSON.encode("ascii")
_BINARY_TYPE: Final = BINARY_CONTENT_TYPE.encode("ascii")
_HEADER_LENGTH_KEY: Final = HEADER_LENGTH.encode("ascii")
Endpoint = Callable[[Request], Awaitable[Response]]


def _json(content: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status, headers=headers, media_type=_JSON)


def _v2_errors(endpoint: Endpoint) -> Endpoint:
    """Answer failures with the V2 error body; nothing internal leaves the server."""

    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ModelserveError as exc:
            return v2_error_response(exc)
        except ClientDisconnect:
            return client_closed_request()  # the client is gone: not a server failure
        except Exception:
            log.exception("v2_request_failed", path=request.url.path)
            return _json({"error": "internal error; the server log has the details"}, 500)

    wrapped.__name__ = endpoint.__name__
    wrapped.__doc__ = endpoint.__doc__
    return wrapped


def _plane(request: Request) -> DataPlane:
    plane: DataPlane = request.app.state.dataplane
    return plane


def _model(request: Request) -> tuple[str, str | None]:
    params = request.path_params
    return params["name"], params.get("version")


def _caller(request: Request) -> str | None:
    caller: str | None = request.scope.get("state", {}).get("caller")
    return caller


_LIVE: Final = orjson.dumps({"live": True})
_READY: Final = orjson.dumps({"ready": True})
# The status is the answer (Triton's clients read only it); the body is what KServe's server
# sends and its SDK's REST client parses (is_server_live / is_server_ready fail on none).


async def live(request: Request) -> Response:
    """Server live: 200 ``{"live": true}`` while the process serves."""
    if _plane(request).server_live():
        return Response(_LIVE, media_type=_JSON)
    return _json({"live": False}, 503)


async def ready(request: Request) -> Response:
    """Server ready: 200 ``{"ready": true}`` when every required model serves and no drain
    began, else 503."""
    readiness = _plane(request).server_ready()
    if readiness.ready:
        return Response(_READY, media_type=_JSON)
    return _json({"error": "; ".join(readiness.reasons)}, 503, {"Retry-After": "1"})


async def server_metadata(request: Request) -> Response:
    """Server name, version and the extensions it implements."""
    name, version, extensions = _plane(request).server_metadata()
    return _json({"name": name, "version": version, "extensions": list(extensions)})


async def model_metadata(request: Request) -> Response:
    """A model's platform, versions, inputs and outputs (-1: any size)."""
    return _json(_metadata_json(_plane(request).model_metadata(*_model(request))))


def _metadata_json(meta: VersionMetadata) -> dict[str, Any]:
    def tensors(items: Any) -> list[dict[str, Any]]:
        return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in items]

    return {
        "name": meta.name,
        "versions": meta.versions,
        "platform": meta.platform,
        "inputs": tensors(meta.inputs),
        "outputs": tensors(meta.outputs),
    }


async def model_ready(request: Request) -> Response:
    """Model ready: 200 when the version serves, 503 when it does not, 404 when unknown."""
    name, version = _model(request)
    if _plane(request).model_ready(name, version):
        return Response(status_code=200)
    return _json({"error": f"model {name!r} is not ready"}, 503, {"Retry-After": "1"})


async def infer(request: Request) -> Response:
    """Inference: JSON, or JSON followed by binary tensors (``Inference-Header-Content-Length``)."""
    require_v2_infer_body(request.scope)
    name, version = _model(request)
    body = await read_body(request)
    header_length_text = header(request.scope, _HEADER_LENGTH_KEY)
    header_length = None
    if header_length_text is not None:
        text = header_length_text
        if not (text.isascii() and text.isdigit()):  # '²' is a digit int() refuses
            raise InvalidInputError(f"Inference-Header-Content-Length must be a number: {text!r}")
        header_length = int(text)
    size = len(body)
    plane = _plane(request)
    if plane.one_job(size) and request.app.state.rate_limiter is None:
        content, json_length = await while_connected(
            request.receive,
            plane.infer_large(
                name,
                version,
                functools.partial(decode_infer_request, body, header_length),
                encode_infer_response,
                size,
                _caller(request),
            ),
        )
        return _infer_answer(content, json_length)
    infer_request = await run_for_size(size, decode_infer_request, body, header_length)
    answer = await while_connected(
        request.receive,
        _plane(request).infer(name, version, infer_request, _caller(request), _charger(request)),
    )
    content, json_length = await run_for_size(size, encode_infer_response, answer, infer_request)
    structlog.contextvars.bind_contextvars(
        model=answer.model_name, model_version=answer.model_version
    )
    return _infer_answer(content, json_length)


def _infer_answer(content: bytes, json_length: int | None) -> Response:
    if json_length is None:
        return RawResponse(content, _JSON_TYPE)
    return RawResponse(
        content, _BINARY_TYPE, [(_HEADER_LENGTH_KEY, str(json_length).encode("ascii"))]
    )


def _charger(request: Request) -> Charge | None:
    """The rate-limit charge of this request (declared ``infer``), once its rows are known."""
    if request.app.state.rate_limiter is None:
        return None

    async def charge(rows: int) -> None:
        await charge_infer(request, rows)

    return charge


async def statistics(request: Request) -> Response:
    """Inference statistics of a version, of every version of a model, or of every model."""
    name = request.path_params.get("name")
    version = request.path_params.get("version")
    stats = _plane(request).statistics(name, version)
    return _json({"model_stats": [_statistics_json(s) for s in stats]})


def _statistics_json(stats: VersionStatistics) -> dict[str, Any]:
    def duration(value: Duration) -> dict[str, int]:
        return {"count": value.count, "ns": value.ns}

    return {
        "name": stats.name,
        "version": stats.version,
        "inference_count": stats.inference_count,
        "execution_count": stats.execution_count,
        "inference_stats": {
            "success": duration(stats.success),
            "fail": duration(stats.fail),
            "queue": duration(stats.queue),
            "compute_infer": duration(stats.compute_infer),
        },
    }


async def repository_index(request: Request) -> Response:
    """Every configured version and its state (``ready: true`` in the body: only ready ones)."""
    options = await _json_options(request)
    ready_only = isinstance(options, dict) and options.get("ready") is True
    entries = _plane(request).repository_index(ready_only=ready_only)
    return _json(
        [
            {"name": e.name, "version": e.version, "state": e.state, "reason": e.reason}
            for e in entries
        ]
    )


async def repository_load(request: Request) -> Response:
    """(Re)load a configured model from its configured artifact; nothing else can be named."""
    await _plane(request).load(
        request.path_params["name"], await _version(request), _caller(request)
    )
    return _json({})


async def repository_unload(request: Request) -> Response:
    """Stop serving a model version (it answers 503 until loaded again)."""
    await _plane(request).unload(
        request.path_params["name"], await _version(request), _caller(request)
    )
    return _json({})


async def _version(request: Request) -> str | None:
    """The optional ``{"parameters": {"version": "..."}}`` of a load or unload body."""
    document = await _json_options(request)
    parameters = document.get("parameters") if isinstance(document, dict) else None
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidInputError("parameters must be an object")
    return repository_version(parameters or {})


async def _json_options(request: Request) -> object:
    """A repository call's optional JSON body (``None`` when empty); JSON declared only, like
    every state-changing route."""
    require_json(request.scope)
    body = await request.body()
    if not body.strip():
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidInputError("the request body is not valid JSON") from None


_MODEL: Final = "/v2/models/{name}"
_VERSION: Final = "/v2/models/{name}/versions/{version}"


def v2_routes(*, repository: bool) -> list[RouteSpec]:
    """The V2 routes' declarations; the repository ones only when ``repository`` (admin
    routes are served)."""
    routes: list[tuple[str, Endpoint, str, Access, Operation | None]] = [
        ("/v2/health/live", live, "GET", Access.PROBE, None),
        ("/v2/health/ready", ready, "GET", Access.PROBE, None),
        ("/v2", server_metadata, "GET", Access.PREDICT, None),
        ("/v2/models/stats", statistics, "GET", Access.METRICS, None),
    ]
    for base in (_MODEL, _VERSION):
        routes += [
            (base, model_metadata, "GET", Access.PREDICT, None),
            (f"{base}/ready", model_ready, "GET", Access.PROBE, None),
            (f"{base}/infer", infer, "POST", Access.PREDICT, Operation.INFER),
            (f"{base}/stats", statistics, "GET", Access.METRICS, None),
        ]
    if repository:
        routes += [
            ("/v2/repository/index", repository_index, "POST", Access.ADMIN, Operation.ADMIN),
            (
                "/v2/repository/models/{name}/load",
                repository_load,
                "POST",
                Access.ADMIN,
                Operation.ADMIN,
            ),
            (
                "/v2/repository/models/{name}/unload",
                repository_unload,
                "POST",
                Access.ADMIN,
                Operation.ADMIN,
            ),
        ]
    return [
        RouteSpec(
            path=path,
            methods=(method,),
            endpoint=_v2_errors(endpoint),
            access=access,
            operation=operation,
            doc=v2_doc(path),
            monitoring=access in (Access.PROBE, Access.METRICS),
            direct=endpoint in _DIRECT,
            protocol=Protocol.OPEN_INFERENCE,
        )
        for path, endpoint, method, access, operation in routes
    ]


_DIRECT: Final = (live, ready, infer)
"""Hot and cheap routes taken straight to the endpoint (see ModelserveApp)."""
