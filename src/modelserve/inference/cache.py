"""Prediction cache: which rows of a request were already answered, and remembering new answers.

A row's key is a keyed BLAKE2b of the row's canonical float64 bytes (after validation, so
``[1, 2]`` and ``[1.0, 2.0]`` and the same named features share a key; ``-0.0`` counts as
``0.0``); a row of typed features is keyed by the JSON of its checked, canonical values
(``41`` and ``41.0`` of a float feature are one value). The hash key is derived from a secret
(``cache.key_secret``, or random per process) and binds the model name, version and artifact
fingerprint: nobody without the secret can compute which key holds which row, and a different
version or a reloaded artifact can never return an old answer.

Values are one row of the post-processed :class:`Outputs` (label, full probability row, value),
serialized with orjson (floats round-trip exactly). They are the same whatever the transport
or ``top_k`` (applied when the answer is formatted), so /predict and the V2 protocol share
entries. Nothing read back is trusted: a value that is not exactly what the version could
output (one of its labels, finite floats, its :class:`OutputSpec` shape) is a miss, counted
in ``modelserve_cache_rejected_total`` and logged at most once per interval. Transport-agnostic:
the core decides what to do with HIT, MISS or PARTIAL.

The per-row stages (hashing keys, decoding and checking values read, encoding values to
write, merging) of a request of :data:`THREAD_FROM_ROWS` rows or more run in a worker thread,
so a large request never holds the event loop for them. With a local back-end (memory) the
reads and writes run there too, and each side of the model call is one job: hash + read +
decode before it, encode + write + merge after it. A remote back-end's calls stay on the loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import ParamSpec, TypeVar

import numpy as np
import orjson
import structlog

from modelserve.cache.base import WARN_INTERVAL_S, Cache, LocalCache
from modelserve.inference.types import Batch, Outputs, OutputSpec, is_typed
from modelserve.observability import metrics
from modelserve.observability.throttle import LogThrottle
from modelserve.settings import ModelConfig

log = structlog.get_logger(__name__)

THREAD_FROM_ROWS = 128
"""Requests of this many rows or more hash, decode and encode their rows in a worker thread
(a thread hop costs about what 50-100 rows of those stages do)."""
_DIGEST_BYTES = 16
_MAX_SCOPES = 4096
"""Per-scope hash keys remembered (model x version x fingerprint); cleared beyond."""
# Configuration that changes what a version answers for the same row and artifact.
_OUTPUT_FIELDS = {"task", "labels", "label_from", "torch_output", "output_round", "output_clip"}


_P = ParamSpec("_P")
_T = TypeVar("_T")


async def per_rows(rows: int, stage: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """``stage(*args, **kwargs)``: in a worker thread for ``rows`` >= THREAD_FROM_ROWS."""
    if rows >= THREAD_FROM_ROWS:
        return await asyncio.to_thread(stage, *args, **kwargs)
    return stage(*args, **kwargs)


class CacheStatus(StrEnum):
    """What the cache contributed to one request (the ``X-Cache`` header)."""

    HIT = "HIT"
    """Every row came from the cache; the model was not called."""
    MISS = "MISS"
    """No row came from the cache."""
    PARTIAL = "PARTIAL"
    """Batch requests only: some rows came from the cache, the model computed the rest."""


Row = tuple[str | None, list[float] | None, float | list[float] | None]
"""One cached row: (label, probabilities, value)."""


def artifact_fingerprint(config: ModelConfig, sha256: Sequence[str]) -> str:
    """Identity of what a loaded version computes: artifact bytes, pre-processor, output config.

    ``sha256`` are the digests of the bytes the runtime was built from (model, pre-processor),
    so a reload of a changed file under the same version name gets a new fingerprint.
    """
    parts = [*sha256, config.model_dump_json(include=_OUTPUT_FIELDS)]
    return hashlib.blake2b("\0".join(parts).encode(), digest_size=_DIGEST_BYTES).hexdigest()


@dataclass(slots=True)
class CacheLookup:
    """The outcome of looking up every row of one request."""

    keys: list[bytes]
    found: list[Row | None]
    missing: list[int]
    """Indices of the rows that must be computed."""
    spec: OutputSpec

    @property
    def hits(self) -> int:
        return len(self.keys) - len(self.missing)

    @property
    def status(self) -> CacheStatus:
        if not self.missing:
            return CacheStatus.HIT
        return CacheStatus.PARTIAL if len(self.missing) < len(self.keys) else CacheStatus.MISS

    def merge(self, computed: Outputs) -> Outputs:
        """Every row's outputs: cached ones, and ``computed`` (for ``missing``, in order)."""
        if len(self.missing) == len(self.keys):
            return computed
        rows = list(self.found)
        for index, row in zip(self.missing, _rows(computed), strict=True):
            rows[index] = row
        return _outputs(rows, self.spec)  # type: ignore[arg-type]  # every None was missing


class PredictionCache:
    """Looks rows up in a :class:`~modelserve.cache.base.Cache` and stores computed ones."""

    def __init__(self, backend: Cache, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the cache key secret must be at least 16 bytes")
        self.backend = backend
        self._secret = hashlib.blake2b(secret, digest_size=32).digest()
        self._secrets: dict[tuple[str, str, str], bytes] = {}
        self._rejections = LogThrottle(WARN_INTERVAL_S)

    @property
    def is_local(self) -> bool:
        """Whether the back-end lives in this process (reads and writes from any thread)."""
        return isinstance(self.backend, LocalCache)

    def lookup_local(
        self, model: str, version: str, fingerprint: str, spec: OutputSpec, matrix: Batch
    ) -> CacheLookup:
        """:meth:`lookup` on a local back-end, synchronously (from a large request's job)."""
        if not isinstance(self.backend, LocalCache):
            raise TypeError(f"the {self.backend.name} back-end is not local")
        return self._lookup_local(self.backend, model, version, fingerprint, spec, matrix)

    def complete_local(self, lookup: CacheLookup, computed: Outputs) -> Outputs:
        """:meth:`complete` on a local back-end, synchronously (from a large request's job)."""
        if not isinstance(self.backend, LocalCache):
            raise TypeError(f"the {self.backend.name} back-end is not local")
        return _complete_local(self.backend, lookup, computed)

    def row_keys(self, model: str, version: str, fingerprint: str, matrix: Batch) -> list[bytes]:
        """One key per row of ``matrix``."""
        scope = (model, version, fingerprint)
        secret = self._secrets.get(scope)
        if secret is None:
            if len(self._secrets) >= _MAX_SCOPES:
                self._secrets.clear()
            text = "\0".join(scope).encode()
            secret = self._secrets[scope] = hashlib.blake2b(
                text, key=self._secret, digest_size=32
            ).digest()
        blake2b = hashlib.blake2b
        if is_typed(matrix):  # typed features: canonical values (see inference.typed)
            return [
                blake2b(orjson.dumps(row), key=secret, digest_size=_DIGEST_BYTES).digest()
                for row in matrix.tolist()
            ]
        # Adding 0.0 turns -0.0 into 0.0, so equal numbers have equal bytes. Slicing one
        # bytes object is cheaper than a numpy view per row.
        data = np.add(matrix, 0.0, dtype=np.float64).tobytes()
        width = 8 * matrix.shape[1]
        return [
            blake2b(data[start : start + width], key=secret, digest_size=_DIGEST_BYTES).digest()
            for start in range(0, len(data), width)
        ]

    async def lookup(
        self, model: str, version: str, fingerprint: str, spec: OutputSpec, matrix: Batch
    ) -> CacheLookup:
        """Look every row up in one back-end call; a value that does not fit is a miss."""
        rows = len(matrix)
        if rows >= THREAD_FROM_ROWS and isinstance(self.backend, LocalCache):
            # One worker-thread job: hash, read (a local back-end needs no loop) and decode.
            local = self.backend
            return await asyncio.to_thread(
                self._lookup_local, local, model, version, fingerprint, spec, matrix
            )
        keys = await per_rows(rows, self.row_keys, model, version, fingerprint, matrix)
        values = await self.backend.get_many(keys)
        stored = rows - values.count(None)
        found = await per_rows(stored, self._found, model, version, spec, values)
        return _lookup_of(keys, found, spec)

    def _lookup_local(
        self,
        local: LocalCache,
        model: str,
        version: str,
        fingerprint: str,
        spec: OutputSpec,
        matrix: Batch,
    ) -> CacheLookup:
        keys = self.row_keys(model, version, fingerprint, matrix)
        return _lookup_of(keys, self._found(model, version, spec, local.read(keys)), spec)

    def _found(
        self, model: str, version: str, spec: OutputSpec, values: list[bytes | None]
    ) -> list[Row | None]:
        """The row each stored value holds; ``None`` for a miss or a value that does not fit."""
        found: list[Row | None] = []
        for value in values:
            row = None
            if value is not None and (row := _decode(value, spec)) is None:
                self._rejected(model, version)
            found.append(row)
        return found

    def _rejected(self, model: str, version: str) -> None:
        metrics.record_cache_rejected(model, version)
        held_back = self._rejections.allow()
        if held_back is not None:
            log.warning(
                "cache_value_rejected",
                backend=self.backend.name,
                model=model,
                model_version=version,
                rejected_not_logged=held_back,
            )

    async def fill(self, lookup: CacheLookup, computed: Outputs) -> None:
        """Store the outputs computed for ``lookup.missing`` in one back-end call."""
        items = await per_rows(len(lookup.missing), _encoded, lookup, computed)
        await self.backend.set_many(items)

    async def complete(self, lookup: CacheLookup, computed: Outputs) -> Outputs:
        """:meth:`fill` (when rows were computed), then every row's outputs
        (:meth:`CacheLookup.merge`); for a large request on a local back-end both in one
        worker-thread job."""
        rows = len(lookup.keys)
        if rows >= THREAD_FROM_ROWS and isinstance(self.backend, LocalCache):
            return await asyncio.to_thread(_complete_local, self.backend, lookup, computed)
        if lookup.missing:
            await self.fill(lookup, computed)
        # Cached rows are rebuilt into arrays row by row; with no hit the computed rows are it.
        return await per_rows(rows if lookup.hits else 0, lookup.merge, computed)

    async def close(self) -> None:
        await self.backend.close()


def _lookup_of(keys: list[bytes], found: list[Row | None], spec: OutputSpec) -> CacheLookup:
    return CacheLookup(keys, found, [i for i, row in enumerate(found) if row is None], spec)


def _complete_local(local: LocalCache, lookup: CacheLookup, computed: Outputs) -> Outputs:
    if lookup.missing:
        local.write(_encoded(lookup, computed))
    return lookup.merge(computed)


def _encoded(lookup: CacheLookup, computed: Outputs) -> list[tuple[bytes, bytes]]:
    """(key, value) of each computed row, for ``lookup.missing`` in order."""
    keys = lookup.keys
    return [
        (keys[i], orjson.dumps(row)) for i, row in zip(lookup.missing, _rows(computed), strict=True)
    ]


def _rows(outputs: Outputs) -> list[Row]:
    n = len(outputs)
    labels: list[str | None] = list(outputs.labels) if outputs.labels is not None else [None] * n
    probabilities: list[list[float] | None] = (
        outputs.probabilities.tolist() if outputs.probabilities is not None else [None] * n
    )
    values: list[float | list[float] | None] = (
        outputs.values.tolist() if outputs.values is not None else [None] * n
    )
    return list(zip(labels, probabilities, values, strict=True))


def _outputs(rows: list[Row], spec: OutputSpec) -> Outputs:
    if not spec.is_classifier and not spec.has_probabilities:
        return Outputs(values=np.array([row[2] for row in rows], dtype=np.float64))
    labels = [str(row[0]) for row in rows]
    if not spec.has_probabilities:
        return Outputs(labels=labels)
    return Outputs(labels, np.array([row[1] for row in rows], dtype=np.float64))


def _decode(value: bytes, spec: OutputSpec) -> Row | None:
    """The cached row, or ``None`` (a miss) for a value that does not fit ``spec``."""
    try:
        row = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(row, list) or len(row) != 3:
        return None
    label, probabilities, number = row
    if spec.is_classifier:
        # Only the version's own labels: a made-up one would be served and become a metric label.
        labels = spec.answer_labels
        fits = labels is not None and type(label) is str and label in labels and number is None
        if spec.class_labels is not None:
            fits = fits and _floats(probabilities, len(spec.class_labels))
        else:
            fits = fits and probabilities is None
    elif spec.value_width is None:
        fits = label is None and probabilities is None and _finite(number)
    else:
        fits = label is None and probabilities is None and _floats(number, spec.value_width)
    return (label, probabilities, number) if fits else None


def _finite(value: object) -> bool:
    return type(value) is float and math.isfinite(value)


def _floats(value: object, length: int) -> bool:
    return isinstance(value, list) and len(value) == length and all(map(_finite, value))
