"""A large request as one job: the batcher's job queue and the core's one-job pipeline."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from modelserve.cache.memory import MemoryCache
from modelserve.errors import (
    FeatureCountError,
    InferenceTimeoutError,
    InvalidInputError,
    ModelNotFoundError,
    OverloadedError,
    PredictionFailedError,
    QueueTimeoutError,
)
from modelserve.inference.batcher import INFERENCE_THREAD_PREFIX, DynamicBatcher
from modelserve.inference.cache import PredictionCache
from modelserve.inference.core import InferenceCore
from modelserve.inference.large import LARGE_BODY_BYTES, SWITCH_INTERVAL_S, Pipeline
from modelserve.inference.preprocess import FeatureSchema
from modelserve.inference.registry import ModelRegistry
from modelserve.inference.result import InferenceResult
from modelserve.inference.typed import model_call
from modelserve.inference.types import Batch, FloatArray, PredictFn, RawOutput
from modelserve.observability.health import HealthState
from modelserve.settings import BatchingConfig, load_settings
from tests import iris_versions as iv
from tests.fakes import EchoRuntime, FailingRuntime

SECRET = b"large job test secret"
RNG = np.random.default_rng(3)
ROWS = np.round(RNG.uniform([4, 2, 1, 0], [8, 5, 7, 3], size=(600, 4)), 2)


def _thread() -> str:
    return threading.current_thread().name


def _echo_job(rows: FloatArray, seen: list[str]) -> Callable[[PredictFn], list[float]]:
    def job(predict: PredictFn) -> list[float]:
        seen.append(_thread())
        values = predict(rows).values
        assert values is not None
        return [float(v) for v in values]

    return job


def echoed(output: RawOutput) -> list[float]:
    assert output.values is not None
    return [float(v) for v in output.values]


@pytest.fixture
async def make_batcher() -> AsyncIterator[Callable[..., DynamicBatcher]]:
    made: list[DynamicBatcher] = []

    def make(runtime: EchoRuntime, **config: Any) -> DynamicBatcher:
        batcher = DynamicBatcher("fake", "1", model_call(runtime), BatchingConfig(**config))
        made.append(batcher)
        return batcher

    yield make
    for batcher in made:
        await batcher.close(timeout_s=5)


async def test_batcher_runs_a_job_alone_in_its_inference_thread(
    make_batcher: Callable[..., DynamicBatcher],
) -> None:
    """A job runs in the batcher's inference thread, its model call in calls of at most
    max_request_rows_per_call rows, never coalesced with the small requests queued beside it."""
    runtime = EchoRuntime(delay_s=0.01)
    batcher = make_batcher(runtime, max_batch_size=8, max_request_rows_per_call=256)
    rows = np.zeros((600, 4))
    rows[:, 0] = np.arange(600)
    seen: list[str] = []
    small = [np.full((1, 4), float(i)) for i in range(3)]
    results = await asyncio.gather(
        batcher.submit(small[0]),
        batcher.run_job(_echo_job(rows, seen), 600),
        batcher.submit(small[1]),
        batcher.submit(small[2]),
    )
    assert results[1] == list(range(600))
    assert [echoed(r) for r in (results[0], results[2], results[3])] == [[0], [1], [2]]
    assert seen[0].startswith(INFERENCE_THREAD_PREFIX)
    assert sorted(runtime.batch_sizes) == [1, 2, 88, 256, 256]


async def test_batcher_refuses_a_job_over_the_queue_bound(
    make_batcher: Callable[..., DynamicBatcher],
) -> None:
    """A job counts its estimated rows against max_queue_rows like any request: refused with
    OverloadedError (503) before it runs."""
    runtime = EchoRuntime(delay_s=0.2)
    batcher = make_batcher(runtime, max_batch_size=8, max_queue_rows=100)
    seen: list[str] = []
    first = asyncio.ensure_future(batcher.submit(np.zeros((8, 4))))
    second = asyncio.ensure_future(batcher.submit(np.zeros((50, 4))))
    await asyncio.sleep(0)
    with pytest.raises(OverloadedError):
        await batcher.run_job(_echo_job(np.zeros((60, 4)), seen), 60)
    await asyncio.gather(first, second)
    assert seen == []


async def test_batcher_times_out_a_queued_job_without_running_it(
    make_batcher: Callable[..., DynamicBatcher],
) -> None:
    """A job still queued at its deadline is answered QueueTimeoutError and never runs."""
    runtime = EchoRuntime(delay_s=0.3)
    batcher = make_batcher(runtime, max_batch_size=8, timeout_ms=100)
    seen: list[str] = []
    busy = asyncio.ensure_future(batcher.submit(np.zeros((1, 4))))
    await asyncio.sleep(0)
    with pytest.raises(QueueTimeoutError):
        await batcher.run_job(_echo_job(np.zeros((300, 4)), seen), 300)
    with pytest.raises(InferenceTimeoutError):  # the call ahead of it ran past its own deadline
        await busy
    assert seen == []


async def test_batcher_answers_a_failing_model_call_of_a_job_as_prediction_failed(
    make_batcher: Callable[..., DynamicBatcher],
) -> None:
    """A model call failing inside a job answers PredictionFailedError (no internals); an
    error of the job's own (bad input) comes back unchanged."""
    batcher = make_batcher(FailingRuntime(), max_batch_size=8)
    with pytest.raises(PredictionFailedError):
        await batcher.run_job(_echo_job(np.full((300, 4), -1.0), []), 300)

    def bad_input(_: PredictFn) -> None:
        raise InvalidInputError("bad row 3")

    with pytest.raises(InvalidInputError, match="bad row 3"):
        await batcher.run_job(bad_input, 300)


class _RecordingMemory(MemoryCache):
    """A memory back-end that records the thread of each read and write."""

    def __init__(self) -> None:
        super().__init__(maxsize=10_000, ttl_s=60)
        self.threads: list[tuple[str, str]] = []

    def read(self, keys: Sequence[bytes]) -> list[bytes | None]:
        self.threads.append(("read", _thread()))
        return super().read(keys)

    def write(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        self.threads.append(("write", _thread()))
        super().write(items)


@pytest.fixture
async def iris_core(tmp_path: Path) -> AsyncIterator[tuple[InferenceCore, _RecordingMemory]]:
    model = iv.dump(iv.logistic(), tmp_path / "logistic.joblib")
    entries = [iv.version_entry("iris", "1", model, default=True)]
    registry = ModelRegistry(load_settings(iv.write_config(tmp_path / "core.yaml", entries)))
    await registry.load_all(strict=True)
    backend = _RecordingMemory()
    core = InferenceCore(registry, HealthState(loading_done=True), PredictionCache(backend, SECRET))
    yield core, backend
    await core.close(5)


class _Stages:
    """A pipeline over ``rows`` whose parse, decode and encode record their thread."""

    def __init__(self, rows: FloatArray, *, parse_error: Exception | None = None) -> None:
        self.rows = rows
        self.parse_error = parse_error
        self.threads: list[tuple[str, str]] = []

    def parse(self) -> FloatArray:
        self.threads.append(("parse", _thread()))
        if self.parse_error is not None:
            raise self.parse_error
        return self.rows

    def decode(self, rows: FloatArray, schema: FeatureSchema) -> Batch:
        self.threads.append(("decode", _thread()))
        return schema.to_array(rows.tolist())

    def encode(self, _: FloatArray, result: InferenceResult) -> list[str]:
        self.threads.append(("encode", _thread()))
        assert result.outputs.labels is not None
        return list(result.outputs.labels)

    def pipeline(self) -> Pipeline[FloatArray, list[str]]:
        return Pipeline(self.parse, self.decode, self.encode, lambda _: len(self.rows))


def _failures(code: str) -> float:
    value = REGISTRY.get_sample_value(
        "modelserve_inference_errors_total", {"model": "iris", "model_version": "1", "code": code}
    )
    return value or 0.0


async def test_infer_large_runs_every_stage_in_one_inference_thread(
    iris_core: tuple[InferenceCore, _RecordingMemory],
) -> None:
    """Parse, decode, the cache's read and write, the model call and encode of a large request
    all run in one inference thread (the loop only routes and writes); the second request is
    a HIT, read in that thread too, with the same labels."""
    core, backend = iris_core
    stages = _Stages(ROWS)
    result, labels = await core.infer_large(stages.pipeline())
    again = _Stages(ROWS)
    cached, labels_again = await core.infer_large(again.pipeline())

    assert (result.cache_status, cached.cache_status) == ("MISS", "HIT")
    assert labels == labels_again == result.outputs.labels
    assert len(labels) == len(ROWS)
    threads = {name for _, name in stages.threads + again.threads + backend.threads}
    assert len(threads) == 1
    assert threads.pop().startswith(INFERENCE_THREAD_PREFIX)
    assert [stage for stage, _ in stages.threads] == ["parse", "decode", "encode"]
    assert [call for call, _ in backend.threads] == ["read", "write", "read"]


async def test_infer_large_counts_decode_errors_not_parse_errors(
    iris_core: tuple[InferenceCore, _RecordingMemory],
) -> None:
    """As when the body was parsed before routing: a body that fails to parse is not a
    failure of the model; a batch that does not fit the version is."""
    core, _ = iris_core
    before = _failures("wrong_feature_count"), _failures("invalid_input")
    with pytest.raises(InvalidInputError, match="not JSON"):
        await core.infer_large(_Stages(ROWS, parse_error=InvalidInputError("not JSON")).pipeline())
    with pytest.raises(FeatureCountError, match="expected 4 features, got 3"):
        await core.infer_large(_Stages(ROWS[:, :3]).pipeline())
    assert _failures("wrong_feature_count") == before[0] + 1
    assert _failures("invalid_input") == before[1]


async def test_infer_large_names_a_bad_body_before_an_unknown_model(
    iris_core: tuple[InferenceCore, _RecordingMemory],
) -> None:
    """A bad body fails on its body even when the model is unknown; a good one gets 404."""
    core, _ = iris_core
    with pytest.raises(InvalidInputError, match="not JSON"):
        await core.infer_large(
            _Stages(ROWS, parse_error=InvalidInputError("not JSON")).pipeline(), model="nope"
        )
    with pytest.raises(ModelNotFoundError):
        await core.infer_large(_Stages(ROWS).pipeline(), model="nope")


async def test_core_takes_one_job_for_large_bodies_with_a_local_cache_only(
    iris_core: tuple[InferenceCore, _RecordingMemory],
) -> None:
    """From LARGE_BODY_BYTES on a body is one job, unless the cache is remote (its calls need
    the event loop)."""
    core, _ = iris_core
    assert not core.one_job(LARGE_BODY_BYTES - 1)
    assert core.one_job(LARGE_BODY_BYTES)
    remote = InferenceCore(core.registry, core.health, PredictionCache(_Remote(), SECRET))
    assert not remote.one_job(LARGE_BODY_BYTES)


class _Remote:
    """A back-end that is not local (only the type matters here)."""

    name = "remote"

    async def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        return [None] * len(keys)

    async def set_many(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_infer_large_shortens_the_switch_interval_while_its_job_runs(
    iris_core: tuple[InferenceCore, _RecordingMemory],
) -> None:
    """During a job the interpreter switches threads every SWITCH_INTERVAL_S (the loop gets
    the GIL sooner); afterwards the previous interval is back."""
    core, _ = iris_core
    before = sys.getswitchinterval()
    seen: list[float] = []
    stages = _Stages(ROWS)

    def parse() -> FloatArray:
        seen.append(sys.getswitchinterval())
        return stages.parse()

    pipeline = Pipeline(parse, stages.decode, stages.encode, lambda _: len(ROWS))
    await core.infer_large(pipeline)
    assert seen == [SWITCH_INTERVAL_S]
    assert sys.getswitchinterval() == before
