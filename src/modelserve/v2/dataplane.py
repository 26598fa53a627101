"""The Open Inference Protocol over the inference core: what V2 REST and V2 gRPC both call.

Each method converts between V2 messages and :class:`~modelserve.inference.core.InferenceCore`
calls and nothing else: readiness is the probes' readiness, inference is the same
``core.infer`` as ``/predict`` (so the same batcher, cache, metrics and errors), metadata is
the core's, and repository calls are the core's repository operations on configured versions.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from modelserve import __version__
from modelserve.errors import BatchTooLargeError, EmptyBatchError, InvalidInputError
from modelserve.inference.core import InferenceCore, Readiness
from modelserve.inference.large import Pipeline
from modelserve.inference.metadata import VersionMetadata
from modelserve.inference.preprocess import FeatureSchema
from modelserve.inference.result import InferenceResult
from modelserve.inference.typed import TypedFeatureSchema
from modelserve.inference.types import Batch, ModelStatus
from modelserve.observability import metrics
from modelserve.v2.features import feature_matrix, is_matrix, typed_rows
from modelserve.v2.messages import InferRequest, InferResponse
from modelserve.v2.outputs import ModelAnswer, output_tensors
from modelserve.v2.statistics import VersionStatistics, version_statistics
from modelserve.v2.tensor import Tensor

SERVER_NAME: Final = "modelserve"
EXTENSIONS: Final = ("binary_tensor_data", "classification", "model_repository", "statistics")
"""The extensions this server really implements, as ``GET /v2`` lists them."""

REPOSITORY_PARAMETERS: Final = ("version",)
"""The parameters a repository load or unload takes. Triton's ``config`` and ``file:<path>``
overrides are refused: only configured artifacts load, from their configured paths."""

Charge = Callable[[int], Awaitable[None]]
"""Called with the row count once a request is decoded, before any work: the transport's
rate limiter spends the caller's budget there (and raises to refuse)."""

_Answer = TypeVar("_Answer")

_STATES: Final = {
    ModelStatus.READY: "READY",
    ModelStatus.LOADING: "LOADING",
    ModelStatus.FAILED: "UNAVAILABLE",
    ModelStatus.UNLOADED: "UNAVAILABLE",
}


@dataclass(frozen=True, slots=True)
class RepositoryEntry:
    name: str
    version: str
    state: str
    """READY, LOADING or UNAVAILABLE, as Triton's repository index says."""
    reason: str


class DataPlane:
    """V2 operations for one process, over its inference core."""

    def __init__(self, core: InferenceCore, max_rows: int) -> None:
        self.core = core
        self.max_rows = max_rows

    def server_live(self) -> bool:
        return self.core.server_live()

    def server_ready(self) -> Readiness:
        return self.core.server_ready()

    def server_metadata(self) -> tuple[str, str, tuple[str, ...]]:
        return SERVER_NAME, __version__, EXTENSIONS

    def model_ready(self, name: str, version: str | None) -> bool:
        """Whether the version (the model's default when None) serves; 404 if unknown."""
        return self.core.model_ready(name, version or None)

    def model_metadata(self, name: str, version: str | None) -> VersionMetadata:
        return self.core.model_metadata(name, version or None)

    async def infer(
        self,
        name: str,
        version: str | None,
        request: InferRequest,
        caller: str | None = None,
        charge: Charge | None = None,
    ) -> InferResponse:
        """Run ``request`` through the core; outputs as the request selects them."""
        rows = self._checked_rows(request)
        if charge is not None:
            await charge(rows)
        result = await self.core.infer(
            functools.partial(_decode, request), model=name, version=version or None, caller=caller
        )
        return _response(request, result)

    def one_job(self, body_bytes: int) -> bool:
        """Whether a request of ``body_bytes`` goes through :meth:`infer_large`."""
        return self.core.one_job(body_bytes)

    async def infer_large(
        self,
        name: str,
        version: str | None,
        parse: Callable[[], InferRequest],
        encode: Callable[[InferResponse, InferRequest], _Answer],
        body_bytes: int,
        caller: str | None = None,
    ) -> _Answer:
        """:meth:`infer` of a large body as one job in the model's inference thread (no rows
        to charge: the transport has no rate limit): ``parse`` reads the request from the
        body, ``encode`` serialises the response."""

        def parse_checked() -> InferRequest:
            request = parse()
            self._checked_rows(request)
            return request

        def estimate(schema: FeatureSchema) -> int:
            # A binary tensor of float64 features: the largest row count the bytes can hold.
            return min(self.max_rows, max(1, body_bytes // (8 * max(schema.n_features, 1))))

        def encode_result(request: InferRequest, result: InferenceResult) -> _Answer:
            return encode(_response(request, result), request)

        pipeline = Pipeline(parse_checked, _decode, encode_result, estimate)
        _, answer = await self.core.infer_large(
            pipeline, model=name, version=version or None, caller=caller
        )
        return answer

    def _checked_rows(self, request: InferRequest) -> int:
        rows = _rows(request.inputs)
        if rows == 0:
            raise EmptyBatchError()
        if rows > self.max_rows:
            raise BatchTooLargeError(self.max_rows, rows)
        return rows

    def statistics(self, name: str | None, version: str | None) -> list[VersionStatistics]:
        """Statistics of one version, every version of one model, or every version."""
        registry = self.core.registry
        if name is None:
            chosen = registry.versions()
        elif version is None:
            registry.get(name)  # 404 for an unknown model
            chosen = [v for v in registry.versions() if v.name == name]
        else:
            chosen = [registry.get(name, version)]
        return version_statistics(metrics.collect(), [(v.name, v.version) for v in chosen])

    def repository_index(self, ready_only: bool = False) -> list[RepositoryEntry]:
        return [
            RepositoryEntry(
                state.info.name, state.info.version, _STATES[state.info.status],
                state.info.reason or "",
            )
            for state in self.core.repository.index()
            if state.info.status is ModelStatus.READY or not ready_only
        ]  # fmt: skip

    async def load(self, name: str, version: str | None, caller: str | None) -> None:
        """(Re)load a configured version from its configured artifact (the default if None)."""
        entry = self.core.registry.get(name, version or None)
        await self.core.repository.reload(entry.name, entry.version, caller)

    async def unload(self, name: str, version: str | None, caller: str | None) -> None:
        entry = self.core.registry.get(name, version or None)
        await self.core.repository.unload(entry.name, entry.version, caller)


def _decode(request: InferRequest, schema: FeatureSchema) -> Batch:
    """The batch of ``request``'s inputs for the version's schema."""
    if isinstance(schema, TypedFeatureSchema) and not is_matrix(request.inputs):
        names = schema.feature_names or []
        return schema.rows_to_array(typed_rows(request.inputs, names))
    return feature_matrix(request.inputs, schema.n_features, schema.feature_names)


def _response(request: InferRequest, result: InferenceResult) -> InferResponse:
    """The V2 response of ``result``, with the outputs ``request`` selects."""
    outputs = result.outputs
    answer = ModelAnswer(
        labels=outputs.labels,
        probabilities=outputs.probabilities,
        class_labels=result.spec.class_labels or (),
        values=outputs.values,
        label_ids=outputs.label_ids,
        label_names=outputs.label_names,
    )
    return InferResponse(
        result.model,
        result.model_version,
        output_tensors(answer, request.outputs),
        id=request.id,
    )


def _rows(inputs: Sequence[Tensor]) -> int:
    """The batch size the inputs declare (their first dimension); the decode checks the rest."""
    if not inputs:
        raise InvalidInputError("an inference request needs at least one input")
    first = inputs[0].shape
    return first[0] if first else 1


def repository_version(parameters: Mapping[str, object]) -> str | None:
    """The version a repository load or unload names in its parameters (``None``: the
    default); any other parameter is refused, so no call can bring an artifact of its own."""
    unknown = sorted(set(parameters) - set(REPOSITORY_PARAMETERS))
    if unknown:
        raise InvalidInputError(
            f"repository parameters other than 'version' are not accepted, got {unknown}: "
            "only configured artifacts load"
        )
    version = parameters.get("version")
    if version is not None and not isinstance(version, str):
        raise InvalidInputError("parameters.version must be a string")
    return version or None
