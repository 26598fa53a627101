"""PredictionCache: row keys, HIT/MISS/PARTIAL lookups, exact round trips, fingerprints."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from modelserve.cache.memory import MemoryCache
from modelserve.inference.artifact import file_sha256
from modelserve.inference.cache import CacheStatus, PredictionCache, artifact_fingerprint
from modelserve.inference.types import Prediction
from modelserve.settings import ModelConfig

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])
CLASSIFIED = Prediction(
    "setosa", 0.9847031668428455, {"setosa": 0.9847031668428455, "virginica": 6.20377713724823e-8}
)


def _keys(
    matrix: np.ndarray, *, version: str = "1", fingerprint: str = "f", top_k: int | None = None
) -> list[bytes]:
    return _cache().row_keys("iris", version, fingerprint, top_k, matrix)


def _cache() -> PredictionCache:
    return PredictionCache(MemoryCache(maxsize=100, ttl_s=60))


def test_row_keys_equal_for_equal_values_including_negative_zero() -> None:
    """Rows with equal float64 values, -0.0 and 0.0 included, share a key."""
    assert _keys(np.array([[1.0, -0.0]])) == _keys(np.array([[1, 0]], dtype=np.float64))


@pytest.mark.parametrize(
    "changed",
    [{"version": "2"}, {"fingerprint": "g"}, {"top_k": 1}],
    ids=["version", "fingerprint", "top_k"],
)
def test_row_keys_differ_when_scope_changes(changed: dict[str, object]) -> None:
    """The same row gets another key under another version, artifact or top_k."""
    assert _keys(ROWS[:1]) != _keys(ROWS[:1], **changed)  # type: ignore[arg-type]


def test_row_keys_differ_between_rows() -> None:
    """Different rows of one request get different keys."""
    assert len(set(_keys(ROWS))) == len(ROWS)


@pytest.mark.parametrize(
    "prediction",
    [CLASSIFIED, Prediction(1.0000000000000002), Prediction([0.1, 1e-300, -2.5])],
    ids=["classifier", "regressor", "multi-output"],
)
async def test_prediction_cache_round_trips_prediction_exactly(prediction: Prediction) -> None:
    """A cached prediction equals the stored one: label, confidence and probabilities."""
    cache = _cache()
    first = await cache.lookup("iris", "1", "f", None, ROWS[:1])
    await cache.fill(first, [prediction])
    second = await cache.lookup("iris", "1", "f", None, ROWS[:1])
    assert second.merge([]) == [prediction]


@pytest.mark.parametrize(
    ("stored_rows", "status"),
    [([0, 1, 2], CacheStatus.HIT), ([], CacheStatus.MISS), ([1], CacheStatus.PARTIAL)],
    ids=["all", "none", "some"],
)
async def test_prediction_cache_status_reflects_hits(
    stored_rows: list[int], status: CacheStatus
) -> None:
    """HIT when every row is cached, MISS when none is, PARTIAL in between."""
    cache = _cache()
    seed = await cache.lookup("iris", "1", "f", None, ROWS[stored_rows])
    await cache.fill(seed, [CLASSIFIED] * len(stored_rows))
    assert (await cache.lookup("iris", "1", "f", None, ROWS)).status is status


async def test_prediction_cache_merge_keeps_request_order() -> None:
    """Cached and computed rows are reassembled in the request's order."""
    cache = _cache()
    seed = await cache.lookup("iris", "1", "f", None, ROWS[1:2])
    await cache.fill(seed, [Prediction("cached")])
    lookup = await cache.lookup("iris", "1", "f", None, ROWS)
    merged = lookup.merge([Prediction("first"), Prediction("third")])
    assert [p.prediction for p in merged] == ["first", "cached", "third"]


async def test_prediction_cache_treats_foreign_value_as_miss() -> None:
    """A value this code did not write is a miss, not an error."""
    backend = MemoryCache(maxsize=10, ttl_s=60)
    cache = PredictionCache(backend)
    await backend.set_many([(_keys(ROWS[:1])[0], b"not json")])
    assert (await cache.lookup("iris", "1", "f", None, ROWS[:1])).missing == [0]


def test_artifact_fingerprint_changes_with_file_bytes(
    tmp_path: Path, demo_models_dir: Path
) -> None:
    """Replacing the artifact under the same path changes the fingerprint."""
    path = tmp_path / "model.joblib"
    shutil.copy(demo_models_dir / "iris.joblib", path)
    config = ModelConfig(name="iris", path=path)
    before = artifact_fingerprint(config, [file_sha256(path)])
    path.write_bytes(path.read_bytes() + b"\0")
    assert artifact_fingerprint(config, [file_sha256(path)]) != before


def test_artifact_fingerprint_changes_with_labels(demo_models_dir: Path) -> None:
    """Output configuration (here the label names) is part of the fingerprint."""
    path = demo_models_dir / "iris.joblib"
    plain = ModelConfig(name="iris", path=path)
    labelled = ModelConfig(name="iris", path=path, labels=["a", "b", "c"])
    digests = [file_sha256(path)]
    assert artifact_fingerprint(plain, digests) != artifact_fingerprint(labelled, digests)
