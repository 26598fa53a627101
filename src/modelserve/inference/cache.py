"""Prediction cache: which rows of a request were already answered, and remembering new answers.

A row's key is a keyed BLAKE2b of the row's canonical float64 bytes (after validation, so
``[1, 2]`` and ``[1.0, 2.0]`` and the same named features share a key; ``-0.0`` counts as
``0.0``). The hash key binds the model name, version, artifact fingerprint and ``top_k``, so a
different version, a reloaded artifact or another ``top_k`` can never return an old answer.

Values are the post-processed :class:`Prediction`, serialized with orjson (floats round-trip
exactly). Transport-agnostic: the service decides what to do with HIT, MISS or PARTIAL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import orjson

from modelserve.cache.base import Cache
from modelserve.inference.types import FloatArray, Prediction
from modelserve.settings import ModelConfig

_DIGEST_BYTES = 16
_MAX_SCOPES = 4096
"""Per-scope hash keys remembered (model x version x fingerprint x top_k); cleared beyond."""
# Configuration that changes what a version answers for the same row and artifact.
_OUTPUT_FIELDS = {"task", "labels", "label_from", "torch_output", "output_round", "output_clip"}


class CacheStatus(StrEnum):
    """What the cache contributed to one request (the ``X-Cache`` header)."""

    HIT = "HIT"
    """Every row came from the cache; the model was not called."""
    MISS = "MISS"
    """No row came from the cache."""
    PARTIAL = "PARTIAL"
    """Batch requests only: some rows came from the cache, the model computed the rest."""


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
    found: list[Prediction | None]
    missing: list[int]
    """Indices of the rows that must be computed."""

    @property
    def hits(self) -> int:
        return len(self.keys) - len(self.missing)

    @property
    def status(self) -> CacheStatus:
        if not self.missing:
            return CacheStatus.HIT
        return CacheStatus.PARTIAL if len(self.missing) < len(self.keys) else CacheStatus.MISS

    def merge(self, computed: Sequence[Prediction]) -> list[Prediction]:
        """Every row's prediction: cached ones, and ``computed`` (for ``missing``, in order)."""
        if len(self.missing) == len(self.keys):
            return list(computed)
        out = list(self.found)
        for index, prediction in zip(self.missing, computed, strict=True):
            out[index] = prediction
        return out  # type: ignore[return-value]  # every None was at a missing index


class PredictionCache:
    """Looks rows up in a :class:`~modelserve.cache.base.Cache` and stores computed ones."""

    def __init__(self, backend: Cache) -> None:
        self.backend = backend
        self._secrets: dict[tuple[str, str, str, int | None], bytes] = {}

    def row_keys(
        self, model: str, version: str, fingerprint: str, top_k: int | None, matrix: FloatArray
    ) -> list[bytes]:
        """One key per row of ``matrix``."""
        scope = (model, version, fingerprint, top_k)
        secret = self._secrets.get(scope)
        if secret is None:
            if len(self._secrets) >= _MAX_SCOPES:
                self._secrets.clear()
            text = "\0".join(map(str, scope)).encode()
            secret = self._secrets[scope] = hashlib.blake2b(text, digest_size=32).digest()
        # Adding 0.0 turns -0.0 into 0.0, so equal numbers have equal bytes. Slicing one
        # bytes object is cheaper than a numpy view per row.
        data = np.add(matrix, 0.0, dtype=np.float64).tobytes()
        width = 8 * matrix.shape[1]
        blake2b = hashlib.blake2b
        return [
            blake2b(data[start : start + width], key=secret, digest_size=_DIGEST_BYTES).digest()
            for start in range(0, len(data), width)
        ]

    async def lookup(
        self, model: str, version: str, fingerprint: str, top_k: int | None, matrix: FloatArray
    ) -> CacheLookup:
        """Look every row up in one back-end call."""
        keys = self.row_keys(model, version, fingerprint, top_k, matrix)
        values = await self.backend.get_many(keys)
        found = [_decode(v) if v is not None else None for v in values]
        missing = [i for i, prediction in enumerate(found) if prediction is None]
        return CacheLookup(keys, found, missing)

    async def fill(self, lookup: CacheLookup, computed: Sequence[Prediction]) -> None:
        """Store the predictions computed for ``lookup.missing`` in one back-end call."""
        await self.backend.set_many(
            [(lookup.keys[i], _encode(p)) for i, p in zip(lookup.missing, computed, strict=True)]
        )

    async def close(self) -> None:
        await self.backend.close()


def _encode(prediction: Prediction) -> bytes:
    return orjson.dumps((prediction.prediction, prediction.confidence, prediction.probabilities))


def _decode(value: bytes) -> Prediction | None:
    """The cached prediction, or ``None`` (a miss) for a value this code did not write."""
    try:
        answer, confidence, probabilities = orjson.loads(value)
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return None
    return Prediction(answer, confidence, probabilities)
