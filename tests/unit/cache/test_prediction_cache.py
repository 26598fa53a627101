"""PredictionCache: row keys, HIT/MISS/PARTIAL lookups, exact round trips, shape checks."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from modelserve.cache.memory import MemoryCache
from modelserve.inference.artifact import file_sha256
from modelserve.inference.cache import (
    THREAD_FROM_ROWS,
    CacheStatus,
    PredictionCache,
    Row,
    artifact_fingerprint,
)
from modelserve.inference.types import Outputs, OutputSpec
from modelserve.settings import ModelConfig

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])
SECRET = b"a test secret, not a real one"
REJECTED = "modelserve_cache_rejected_total"
CLASSES = ["setosa", "virginica"]
CLASSIFIER = OutputSpec(is_classifier=True, class_labels=CLASSES, answer_labels=frozenset(CLASSES))
CLASSIFIED = Outputs(["setosa"], np.array([[0.9847031668428455, 6.20377713724823e-8]]))
REGRESSOR = OutputSpec(is_classifier=False, class_labels=None)
MULTI_OUTPUT = OutputSpec(is_classifier=False, class_labels=None, value_width=3)
LABELS_ONLY = OutputSpec(
    is_classifier=True, class_labels=None, answer_labels=frozenset({"dog", "cached", "first"})
)


def _keys(matrix: np.ndarray, *, version: str = "1", fingerprint: str = "f") -> list[bytes]:
    return _cache().row_keys("iris", version, fingerprint, matrix)


def _cache(secret: bytes = SECRET) -> PredictionCache:
    return PredictionCache(MemoryCache(maxsize=100, ttl_s=60), secret)


def test_row_keys_equal_for_equal_values_including_negative_zero() -> None:
    """Rows with equal float64 values, -0.0 and 0.0 included, share a key."""
    assert _keys(np.array([[1.0, -0.0]])) == _keys(np.array([[1, 0]], dtype=np.float64))


@pytest.mark.parametrize(
    "changed", [{"version": "2"}, {"fingerprint": "g"}], ids=["version", "fingerprint"]
)
def test_row_keys_differ_when_scope_changes(changed: dict[str, object]) -> None:
    """The same row gets another key under another version or artifact."""
    assert _keys(ROWS[:1]) != _keys(ROWS[:1], **changed)  # type: ignore[arg-type]


def test_row_keys_differ_between_secrets() -> None:
    """The same row and scope get another key under another secret: keys need the secret."""
    other = _cache(b"another secret of enough length").row_keys("iris", "1", "f", ROWS)
    assert set(other).isdisjoint(_keys(ROWS))


def test_prediction_cache_refuses_a_short_secret() -> None:
    """A secret shorter than 16 bytes is refused."""
    with pytest.raises(ValueError, match="at least 16 bytes"):
        PredictionCache(MemoryCache(maxsize=10, ttl_s=60), b"short")


def test_row_keys_differ_between_rows() -> None:
    """Different rows of one request get different keys."""
    assert len(set(_keys(ROWS))) == len(ROWS)


def _same(first: Outputs, second: Outputs) -> bool:
    def parts(o: Outputs) -> tuple[object, ...]:
        return (
            o.labels,
            None if o.probabilities is None else o.probabilities.tolist(),
            None if o.values is None else o.values.tolist(),
        )

    return parts(first) == parts(second)


@pytest.mark.parametrize(
    ("outputs", "spec"),
    [
        (CLASSIFIED, CLASSIFIER),
        (Outputs(labels=["dog"]), LABELS_ONLY),
        (Outputs(values=np.array([1.0000000000000002])), REGRESSOR),
        (Outputs(values=np.array([[0.1, 1e-300, -2.5]])), MULTI_OUTPUT),
    ],
    ids=["classifier", "labels-only", "regressor", "multi-output"],
)
async def test_prediction_cache_round_trips_outputs_exactly(
    outputs: Outputs, spec: OutputSpec
) -> None:
    """A cached row equals the stored one: label, probabilities and values, bit for bit."""
    cache = _cache()
    first = await cache.lookup("iris", "1", "f", spec, ROWS[:1])
    await cache.fill(first, outputs)
    second = await cache.lookup("iris", "1", "f", spec, ROWS[:1])
    assert second.status is CacheStatus.HIT
    assert _same(second.merge(Outputs()), outputs)


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
    seed = await cache.lookup("iris", "1", "f", REGRESSOR, ROWS[stored_rows])
    await cache.fill(seed, Outputs(values=np.ones(len(stored_rows))))
    assert (await cache.lookup("iris", "1", "f", REGRESSOR, ROWS)).status is status


async def test_prediction_cache_merge_keeps_request_order() -> None:
    """Cached and computed rows are reassembled in the request's order."""
    cache = _cache()
    seed = await cache.lookup("iris", "1", "f", LABELS_ONLY, ROWS[1:2])
    await cache.fill(seed, Outputs(labels=["cached"]))
    lookup = await cache.lookup("iris", "1", "f", LABELS_ONLY, ROWS)
    merged = lookup.merge(Outputs(labels=["first", "third"]))
    assert merged.labels == ["first", "cached", "third"]


@pytest.mark.parametrize(
    ("stored", "spec"),
    [
        (b"not json", CLASSIFIER),
        (b'["setosa", [0.5, 0.5, 0.0], null]', CLASSIFIER),
        (b'["setosa", null, null]', CLASSIFIER),
        (b"[null, null, 1.0]", CLASSIFIER),
        (b'["setosa", [0.5, "x"], null]', CLASSIFIER),
        (b'{"label": "setosa"}', CLASSIFIER),
        (b'["made-up", [0.5, 0.5], null]', CLASSIFIER),
        (b'["setosa", [0.5, 1e999], null]', CLASSIFIER),
        (b'["made-up", null, null]', LABELS_ONLY),
        (b'["dog", null, null]', OutputSpec(is_classifier=True, class_labels=None)),
        (b"[null, null, 1e999]", REGRESSOR),
        (b"[null, null, 1]", REGRESSOR),
        (b"[null, null, [1.0, 2.0]]", MULTI_OUTPUT),
        (b'["setosa", [0.5, 0.5]]', CLASSIFIER),
    ],
    ids=[
        "not-json",
        "too-many-columns",
        "no-probabilities",
        "regressor-row",
        "text",
        "object",
        "made-up-label",
        "infinite-probability",
        "made-up-label-without-probabilities",
        "labels-unknown",
        "infinite-value",
        "integer-value",
        "wrong-width",
        "short-row",
    ],
)
async def test_prediction_cache_treats_misfit_value_as_a_counted_miss(
    stored: bytes, spec: OutputSpec
) -> None:
    """A value the version could not have output is a miss, counted, never an error."""
    backend = MemoryCache(maxsize=10, ttl_s=60)
    cache = PredictionCache(backend, SECRET)
    labels = {"model": "iris", "model_version": "1"}
    before = REGISTRY.get_sample_value(REJECTED, labels) or 0.0
    await backend.set_many([(_keys(ROWS[:1])[0], stored)])
    assert (await cache.lookup("iris", "1", "f", spec, ROWS[:1])).missing == [0]
    assert REGISTRY.get_sample_value(REJECTED, labels) == before + 1


async def test_prediction_cache_logs_rejected_values_at_most_once_per_interval() -> None:
    """Three misfit values in a row: one warning naming the back-end and the version; the
    next two are held back (counted by the next warning after the interval)."""
    backend = MemoryCache(maxsize=10, ttl_s=60)
    cache = PredictionCache(backend, SECRET)
    await backend.set_many([(key, b"not json") for key in _keys(ROWS)])
    with capture_logs() as logs:
        for row in range(3):
            await cache.lookup("iris", "1", "f", CLASSIFIER, ROWS[row : row + 1])
    warnings = [line for line in logs if line["event"] == "cache_value_rejected"]
    assert warnings == [
        {
            "event": "cache_value_rejected",
            "log_level": "warning",
            "backend": backend.name,
            "model": "iris",
            "model_version": "1",
            "rejected_not_logged": 0,
        }
    ]


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


class _ThreadRecordingCache(PredictionCache):
    """Records the thread that hashes, decodes and encodes rows."""

    def __init__(self) -> None:
        super().__init__(MemoryCache(maxsize=10_000, ttl_s=60), SECRET)
        self.threads: dict[str, str] = {}

    def row_keys(
        self, model: str, version: str, fingerprint: str, matrix: np.ndarray
    ) -> list[bytes]:
        self.threads["keys"] = threading.current_thread().name
        return super().row_keys(model, version, fingerprint, matrix)

    def _found(
        self, model: str, version: str, spec: OutputSpec, values: list[bytes | None]
    ) -> list[Row | None]:
        self.threads["decode"] = threading.current_thread().name
        return super()._found(model, version, spec, values)


@pytest.mark.parametrize(
    ("rows", "off_loop"),
    [(THREAD_FROM_ROWS - 1, False), (THREAD_FROM_ROWS, True)],
    ids=["small-request", "large-request"],
)
async def test_cache_hashes_and_decodes_a_large_requests_rows_off_the_event_loop(
    rows: int, off_loop: bool
) -> None:
    """From THREAD_FROM_ROWS rows, keys are hashed and stored values decoded in a worker
    thread, and the merged answer is still every row's; a smaller request stays on the loop."""
    cache = _ThreadRecordingCache()
    matrix = np.arange(rows * 2, dtype=np.float64).reshape(rows, 2)
    values = Outputs(values=np.arange(rows, dtype=np.float64))
    await cache.fill(await cache.lookup("m", "1", "f", REGRESSOR, matrix), values)

    lookup = await cache.lookup("m", "1", "f", REGRESSOR, matrix)

    loop_thread = threading.current_thread().name
    assert {stage: name != loop_thread for stage, name in cache.threads.items()} == {
        "keys": off_loop,
        "decode": off_loop,
    }
    assert lookup.status is CacheStatus.HIT
    assert _same(lookup.merge(Outputs()), values)


class _ThreadRecordingMemory(MemoryCache):
    """Records the thread of every read and write of the memory back-end."""

    def __init__(self) -> None:
        super().__init__(maxsize=10_000, ttl_s=60)
        self.threads: list[tuple[str, str]] = []

    def read(self, keys: Sequence[bytes]) -> list[bytes | None]:
        self.threads.append(("read", threading.current_thread().name))
        return super().read(keys)

    def write(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        self.threads.append(("write", threading.current_thread().name))
        super().write(items)


@pytest.mark.parametrize(
    ("rows", "off_loop"),
    [(THREAD_FROM_ROWS - 1, False), (THREAD_FROM_ROWS, True)],
    ids=["small-request", "large-request"],
)
async def test_cache_reads_and_writes_a_large_requests_rows_in_its_worker_jobs(
    rows: int, off_loop: bool
) -> None:
    """From THREAD_FROM_ROWS rows the memory back-end is read in the job that hashes the keys
    and written in the job that merges the answer, never on the event loop; the second
    request is answered from the cache, every row as stored."""
    backend = _ThreadRecordingMemory()
    cache = PredictionCache(backend, SECRET)
    matrix = np.arange(rows * 2, dtype=np.float64).reshape(rows, 2)
    values = Outputs(values=np.arange(rows, dtype=np.float64))
    first = await cache.lookup("m", "1", "f", REGRESSOR, matrix)
    assert _same(await cache.complete(first, values), values)
    second = await cache.lookup("m", "1", "f", REGRESSOR, matrix)
    assert second.status is CacheStatus.HIT
    assert _same(await cache.complete(second, Outputs()), values)

    loop_thread = threading.current_thread().name
    assert [(call, name != loop_thread) for call, name in backend.threads] == [
        ("read", off_loop),
        ("write", off_loop),
        ("read", off_loop),
    ]
