"""``inference.GRPCInferenceService``: each RPC converts and calls the V2 data plane.

Every method is declared once in :data:`METHODS` with the scope an API key needs; the
server's generic handler reads that table for auth, limits and the request context.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf.message import Message

from modelserve.api.route_table import Access
from modelserve.rpc import convert
from modelserve.rpc import inference_pb2 as pb
from modelserve.v2.dataplane import Charge, DataPlane, repository_version
from modelserve.v2.messages import InferRequest, InferResponse

SERVICE: Final = "inference.GRPCInferenceService"


@dataclass(frozen=True, slots=True)
class Call:
    """Who is calling (the API key's name, or None) and how to spend their rate limit."""

    caller: str | None
    charge: Charge | None


Handler = Callable[[DataPlane, Any, Call], Awaitable[Message]]
LargeHandler = Callable[[DataPlane, Any, Call], Awaitable[bytes]]
"""A method's handler for a large message without rows to charge: the serialised answer."""


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    request: type[Message]
    response: type[Message]
    handler: Handler
    access: Access
    """Who may call it, as for an HTTP route: ``PREDICT``, ``ADMIN``, ``PROBE`` (open unless
    auth.protect_probes) or ``METRICS`` (open unless auth.protect_metrics)."""
    large: LargeHandler | None = None
    """For a message of :meth:`DataPlane.one_job` size, the handler that computes it as one
    job, serialising the answer there too."""


async def _server_live(plane: DataPlane, _: pb.ServerLiveRequest, __: Call) -> Message:
    return pb.ServerLiveResponse(live=plane.server_live())


async def _server_ready(plane: DataPlane, _: pb.ServerReadyRequest, __: Call) -> Message:
    return pb.ServerReadyResponse(ready=plane.server_ready().ready)


async def _model_ready(plane: DataPlane, request: pb.ModelReadyRequest, _: Call) -> Message:
    return pb.ModelReadyResponse(ready=plane.model_ready(request.name, request.version))


async def _server_metadata(plane: DataPlane, _: pb.ServerMetadataRequest, __: Call) -> Message:
    name, version, extensions = plane.server_metadata()
    return pb.ServerMetadataResponse(name=name, version=version, extensions=extensions)


async def _model_metadata(plane: DataPlane, request: pb.ModelMetadataRequest, _: Call) -> Message:
    meta = plane.model_metadata(request.name, request.version)
    tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=meta.name,
        versions=meta.versions,
        platform=meta.platform,
        inputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in meta.inputs],
        outputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in meta.outputs],
    )


async def _model_infer(plane: DataPlane, request: pb.ModelInferRequest, call: Call) -> Message:
    infer = convert.infer_request(request)
    response = await plane.infer(
        request.model_name, request.model_version, infer, call.caller, call.charge
    )
    return convert.infer_response(response, raw=bool(request.raw_input_contents))


async def _model_infer_large(plane: DataPlane, request: pb.ModelInferRequest, call: Call) -> bytes:
    """:func:`_model_infer` as one job: the contents to arrays, the model call, and the answer
    back to raw contents and serialised, in the model's inference thread."""
    raw = bool(request.raw_input_contents)

    def encode(response: InferResponse, _: InferRequest) -> bytes:
        return convert.infer_response(response, raw=raw).SerializeToString()

    return await plane.infer_large(
        request.model_name,
        request.model_version,
        functools.partial(convert.infer_request, request),
        encode,
        request.ByteSize(),
        call.caller,
    )


async def _model_statistics(
    plane: DataPlane, request: pb.ModelStatisticsRequest, _: Call
) -> Message:
    response = pb.ModelStatisticsResponse()
    for stats in plane.statistics(request.name or None, request.version or None):
        entry = response.model_stats.add(
            name=stats.name,
            version=stats.version,
            inference_count=stats.inference_count,
            execution_count=stats.execution_count,
        )
        for field in ("success", "fail", "queue", "compute_infer"):
            duration = getattr(stats, field)
            target = getattr(entry.inference_stats, field)
            target.count, target.ns = duration.count, duration.ns
    return response


async def _repository_index(
    plane: DataPlane, request: pb.RepositoryIndexRequest, _: Call
) -> Message:
    index = pb.RepositoryIndexResponse.ModelIndex
    return pb.RepositoryIndexResponse(
        models=[
            index(name=e.name, version=e.version, state=e.state, reason=e.reason)
            for e in plane.repository_index(ready_only=request.ready)
        ]
    )


async def _repository_load(
    plane: DataPlane, request: pb.RepositoryModelLoadRequest, call: Call
) -> Message:
    await plane.load(request.model_name, _version_parameter(request.parameters), call.caller)
    return pb.RepositoryModelLoadResponse()


async def _repository_unload(
    plane: DataPlane, request: pb.RepositoryModelUnloadRequest, call: Call
) -> Message:
    await plane.unload(request.model_name, _version_parameter(request.parameters), call.caller)
    return pb.RepositoryModelUnloadResponse()


def _version_parameter(parameters: Any) -> str | None:
    """A ``version`` string parameter picks the version to load or unload (else the default)."""
    return repository_version(
        {
            name: getattr(value, value.WhichOneof("parameter_choice") or "string_param")
            for name, value in parameters.items()
        }
    )


METHODS: Final = (
    Method("ServerLive", pb.ServerLiveRequest, pb.ServerLiveResponse, _server_live, Access.PROBE),
    Method(
        "ServerReady", pb.ServerReadyRequest, pb.ServerReadyResponse, _server_ready, Access.PROBE
    ),
    Method("ModelReady", pb.ModelReadyRequest, pb.ModelReadyResponse, _model_ready, Access.PROBE),
    Method(
        "ServerMetadata",
        pb.ServerMetadataRequest,
        pb.ServerMetadataResponse,
        _server_metadata,
        Access.PREDICT,
    ),
    Method(
        "ModelMetadata",
        pb.ModelMetadataRequest,
        pb.ModelMetadataResponse,
        _model_metadata,
        Access.PREDICT,
    ),
    Method(
        "ModelInfer",
        pb.ModelInferRequest,
        pb.ModelInferResponse,
        _model_infer,
        Access.PREDICT,
        large=_model_infer_large,
    ),
    Method(
        "ModelStatistics",
        pb.ModelStatisticsRequest,
        pb.ModelStatisticsResponse,
        _model_statistics,
        Access.METRICS,
    ),
    Method(
        "RepositoryIndex",
        pb.RepositoryIndexRequest,
        pb.RepositoryIndexResponse,
        _repository_index,
        Access.ADMIN,
    ),
    Method(
        "RepositoryModelLoad",
        pb.RepositoryModelLoadRequest,
        pb.RepositoryModelLoadResponse,
        _repository_load,
        Access.ADMIN,
    ),
    Method(
        "RepositoryModelUnload",
        pb.RepositoryModelUnloadRequest,
        pb.RepositoryModelUnloadResponse,
        _repository_unload,
        Access.ADMIN,
    ),
)
