"""DynamicBatcher driven directly on the event loop with runtime doubles."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs

from modelserve.errors import (
    EmptyBatchError,
    ErrorKind,
    InferenceTimeoutError,
    OverloadedError,
    PredictionFailedError,
    QueueTimeoutError,
    QueueTooSlowError,
    ShuttingDownError,
)
from modelserve.inference.batcher import DynamicBatcher
from modelserve.inference.typed import model_call
from modelserve.inference.types import FloatArray, RawOutput
from modelserve.settings import BatchingConfig
from tests.fakes import EchoRuntime, FailingRuntime

BatcherFactory = Callable[..., DynamicBatcher]


def rows_of(*firsts: float) -> FloatArray:
    """Rows whose first feature is each of ``firsts`` (what EchoRuntime echoes back)."""
    matrix = np.zeros((len(firsts), 4))
    matrix[:, 0] = firsts
    return matrix


def echoed(output: RawOutput) -> list[float]:
    assert output.values is not None
    return [float(v) for v in output.values]


async def wait_for_calls(runtime: EchoRuntime, count: int, timeout_s: float = 5.0) -> None:
    """Wait until the runtime has started ``count`` model calls."""
    async with asyncio.timeout(timeout_s):
        # Polling: the runtime records calls from its worker thread, not on the event loop.
        while len(runtime.batch_sizes) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.005)


@pytest.fixture
async def make_batcher() -> AsyncIterator[BatcherFactory]:
    """Factory: a started batcher over ``runtime`` with BatchingConfig overrides; closed after."""
    made: list[DynamicBatcher] = []

    def make(runtime: EchoRuntime, **config: Any) -> DynamicBatcher:
        batcher = DynamicBatcher("fake", "1", model_call(runtime), BatchingConfig(**config))
        batcher.start()
        made.append(batcher)
        return batcher

    yield make
    for batcher in made:
        await batcher.close(timeout_s=5)


async def test_batcher_returns_each_callers_rows_in_order(make_batcher: BatcherFactory) -> None:
    """Concurrent single-row, multi-row and split requests each get exactly their own rows."""
    runtime = EchoRuntime(delay_s=0.002)
    batcher = make_batcher(runtime, max_batch_size=8, max_delay_ms=5)
    generator = random.Random(7)
    requests: list[list[float]] = []
    for i in range(60):
        size = generator.choice([1, 1, 1, 3, 8, 13])
        requests.append([i * 100 + j for j in range(size)])

    results = await asyncio.gather(*(batcher.submit(rows_of(*r)) for r in requests))

    assert [echoed(result) for result in results] == requests


async def test_batcher_coalesces_requests_that_queue_while_the_model_is_busy(
    make_batcher: BatcherFactory,
) -> None:
    """Requests arriving during a model call are sent together in the next call."""
    runtime = EchoRuntime(delay_s=0.05)
    batcher = make_batcher(runtime, max_batch_size=64, max_delay_ms=2)
    first = asyncio.create_task(batcher.submit(rows_of(0)))
    await wait_for_calls(runtime, 1)

    await asyncio.gather(first, *(batcher.submit(rows_of(i)) for i in range(1, 11)))

    assert runtime.batch_sizes == [1, 10]


async def test_batcher_splits_a_request_larger_than_max_request_rows_per_call(
    make_batcher: BatcherFactory,
) -> None:
    """A 10-row request with max_request_rows_per_call 4 runs as 4 + 4 + 2 rows, whole back."""
    runtime = EchoRuntime()
    batcher = make_batcher(runtime, max_batch_size=2, max_request_rows_per_call=4)

    result = await batcher.submit(rows_of(*range(10)))

    assert runtime.batch_sizes == [4, 4, 2]
    assert echoed(result) == list(range(10))


async def test_batcher_computes_a_request_larger_than_max_batch_size_in_one_call(
    make_batcher: BatcherFactory,
) -> None:
    """A 10-row request with max_batch_size 4 is one model call, not 4 + 4 + 2."""
    runtime = EchoRuntime()
    batcher = make_batcher(runtime, max_batch_size=4)

    result = await batcher.submit(rows_of(*range(10)))

    assert runtime.batch_sizes == [10]
    assert echoed(result) == list(range(10))


async def test_batcher_never_coalesces_a_large_request_with_others(
    make_batcher: BatcherFactory,
) -> None:
    """Queued small, large, small requests become three calls: the large one goes alone."""
    runtime = EchoRuntime(delay_s=0.05)
    batcher = make_batcher(runtime, max_batch_size=4, max_delay_ms=0)
    first = asyncio.create_task(batcher.submit(rows_of(0)))
    await wait_for_calls(runtime, 1)

    results = await asyncio.gather(
        first,
        batcher.submit(rows_of(1)),
        batcher.submit(rows_of(*range(10, 20))),
        batcher.submit(rows_of(2)),
    )

    assert runtime.batch_sizes == [1, 1, 10, 1]
    assert [echoed(r) for r in results] == [[0], [1], list(range(10, 20)), [2]]


async def test_batcher_never_exceeds_its_call_sizes(make_batcher: BatcherFactory) -> None:
    """Under concurrent load of mixed sizes, calls that coalesce requests hold at most
    max_batch_size rows, and no call more than max_request_rows_per_call."""
    runtime = EchoRuntime(delay_s=0.003)
    batcher = make_batcher(runtime, max_batch_size=5, max_delay_ms=5, max_request_rows_per_call=6)

    await asyncio.gather(*(batcher.submit(rows_of(*range(i % 7 + 1))) for i in range(50)))

    assert max(runtime.batch_sizes) <= 6
    assert sum(runtime.batch_sizes) == sum(i % 7 + 1 for i in range(50))


async def test_batcher_sends_a_lone_request_at_once_when_idle(
    make_batcher: BatcherFactory,
) -> None:
    """An idle model computes a lone request without waiting out a 10 s max_delay_ms."""
    runtime = EchoRuntime()
    batcher = make_batcher(runtime, max_delay_ms=10_000, timeout_ms=60_000)

    async with asyncio.timeout(2):
        result = await batcher.submit(rows_of(1.5))

    assert echoed(result) == [1.5]


async def test_batcher_without_batching_calls_the_model_once_per_request(
    make_batcher: BatcherFactory,
) -> None:
    """With batching disabled, queued requests are never merged."""
    runtime = EchoRuntime(delay_s=0.02)
    batcher = make_batcher(runtime, enabled=False)

    await asyncio.gather(*(batcher.submit(rows_of(i, i)) for i in range(5)))

    assert runtime.batch_sizes == [2, 2, 2, 2, 2]


async def test_batcher_model_failure_fails_only_the_requests_in_that_batch(
    make_batcher: BatcherFactory,
) -> None:
    """A poisoned batch fails its two requests; the batches before and after succeed."""
    runtime = FailingRuntime(delay_s=0.05)
    batcher = make_batcher(runtime, max_batch_size=2)
    before = asyncio.create_task(batcher.submit(rows_of(1)))
    await wait_for_calls(runtime, 1)
    poisoned = asyncio.create_task(batcher.submit(rows_of(-1)))
    companion = asyncio.create_task(batcher.submit(rows_of(2)))
    after = asyncio.create_task(batcher.submit(rows_of(3, 4)))

    outcomes = await asyncio.gather(before, poisoned, companion, after, return_exceptions=True)

    assert echoed(outcomes[0]) == [1]  # type: ignore[arg-type]
    assert isinstance(outcomes[1], PredictionFailedError)
    assert isinstance(outcomes[2], PredictionFailedError)
    assert echoed(outcomes[3]) == [3, 4]  # type: ignore[arg-type]


async def test_batcher_model_failure_answers_500_without_internal_detail(
    make_batcher: BatcherFactory,
) -> None:
    """The caller sees a generic prediction_failed error, never the model's message."""
    batcher = make_batcher(FailingRuntime())

    with pytest.raises(PredictionFailedError) as caught:
        await batcher.submit(rows_of(-1))

    assert caught.value.kind is ErrorKind.INTERNAL
    assert caught.value.code == "prediction_failed"
    assert "internal detail" not in caught.value.detail


async def test_batcher_model_failure_logs_batch_failed_with_traceback(
    make_batcher: BatcherFactory,
) -> None:
    """The model's exception is logged once, as batch_failed, with its traceback."""
    batcher = make_batcher(FailingRuntime())

    with capture_logs() as logs, pytest.raises(PredictionFailedError):
        await batcher.submit(rows_of(-1))

    failures = [entry for entry in logs if entry["event"] == "batch_failed"]
    assert len(failures) == 1
    assert isinstance(failures[0]["exc_info"], RuntimeError)
    assert failures[0]["batch_size"] == 1


async def test_batcher_keeps_serving_after_a_model_failure(make_batcher: BatcherFactory) -> None:
    """The request after a failed batch is computed normally."""
    batcher = make_batcher(FailingRuntime())
    with pytest.raises(PredictionFailedError):
        await batcher.submit(rows_of(-1))

    result = await batcher.submit(rows_of(5))

    assert echoed(result) == [5]


async def test_batcher_queue_deadline_raises_queue_timeout(make_batcher: BatcherFactory) -> None:
    """A request still queued at its deadline gets 504 queue_timeout and is never computed."""
    runtime = EchoRuntime(delay_s=0.3)
    batcher = make_batcher(runtime, timeout_ms=100)
    running = asyncio.create_task(batcher.submit(rows_of(1)))
    await wait_for_calls(runtime, 1)

    with pytest.raises(QueueTimeoutError) as caught:
        await batcher.submit(rows_of(2))

    assert (caught.value.kind, caught.value.code) == (ErrorKind.DEADLINE_EXCEEDED, "queue_timeout")
    with pytest.raises(InferenceTimeoutError):
        await running
    await batcher.close(timeout_s=5)
    assert runtime.batch_sizes == [1]


async def test_batcher_slow_model_call_raises_inference_timeout(
    make_batcher: BatcherFactory,
) -> None:
    """A model call still running at the deadline answers 504 inference_timeout."""
    batcher = make_batcher(EchoRuntime(delay_s=0.3), timeout_ms=50)

    with pytest.raises(InferenceTimeoutError) as caught:
        await batcher.submit(rows_of(1))

    assert (caught.value.kind, caught.value.code) == (
        ErrorKind.DEADLINE_EXCEEDED,
        "inference_timeout",
    )


async def test_batcher_full_queue_refuses_at_once_with_overloaded(
    make_batcher: BatcherFactory,
) -> None:
    """Rows beyond max_queue_rows are refused with 503 overloaded and a Retry-After header."""
    runtime = EchoRuntime(delay_s=0.2)
    batcher = make_batcher(runtime, max_queue_rows=4)
    running = asyncio.create_task(batcher.submit(rows_of(1)))
    await wait_for_calls(runtime, 1)
    queued = asyncio.create_task(batcher.submit(rows_of(1, 2, 3, 4)))
    await asyncio.sleep(0)

    with pytest.raises(OverloadedError) as caught:
        await batcher.submit(rows_of(5))

    assert (caught.value.kind, caught.value.code) == (ErrorKind.UNAVAILABLE, "overloaded")
    assert caught.value.retry_after_s is not None
    assert caught.value.retry_after_s >= 1
    await asyncio.gather(running, queued)


async def test_batcher_sheds_at_once_what_the_queue_could_not_compute_in_time(
    make_batcher: BatcherFactory,
) -> None:
    """A request that, at the rate model calls ran, would be computed later than its share of
    the deadline allows gets 503 overloaded on arrival (not a 504 later), never computed."""
    runtime = EchoRuntime(delay_s=0.1)
    batcher = make_batcher(runtime, max_batch_size=1, timeout_ms=3000)
    await batcher.submit(rows_of(0))  # the measured rate: one call per 0.1 s or slower
    running = asyncio.create_task(batcher.submit(rows_of(1)))
    await wait_for_calls(runtime, 2)
    queued = asyncio.create_task(batcher.submit(rows_of(*range(10, 25))))  # the queue was empty
    await asyncio.sleep(0)

    with pytest.raises(QueueTooSlowError) as caught:
        await batcher.submit(rows_of(99))  # 1 + 15 + 1 calls: 1.7 s or more, past 0.9 s

    assert (caught.value.kind, caught.value.code) == (ErrorKind.UNAVAILABLE, "overloaded")
    assert caught.value.retry_after_s is not None
    assert caught.value.retry_after_s >= 2
    results = await asyncio.gather(running, queued)
    assert [echoed(r) for r in results] == [[1], list(range(10, 25))]
    assert sum(runtime.batch_sizes) == 1 + 1 + 15


async def test_batcher_sheds_queued_requests_at_once_when_the_model_slows_down(
    make_batcher: BatcherFactory,
) -> None:
    """Requests admitted at a fast rate get 503 overloaded as soon as a slow call shows they
    cannot be computed before their deadline, not a 504 when it passes; none is computed."""
    runtime = EchoRuntime(delay_s=0.01)
    batcher = make_batcher(runtime, max_batch_size=1, timeout_ms=1000)
    await batcher.submit(rows_of(0))  # the rate admission sees: one row per 0.01 s
    runtime.delay_s = 0.6
    running = asyncio.create_task(batcher.submit(rows_of(1)))
    await wait_for_calls(runtime, 2)
    queued = [asyncio.create_task(batcher.submit(rows_of(i))) for i in (2, 3, 4)]

    outcomes = await asyncio.gather(*queued, return_exceptions=True)

    assert [type(outcome) for outcome in outcomes] == [QueueTooSlowError] * 3
    assert echoed(await running) == [1]
    assert runtime.batch_sizes == [1, 1]


async def test_batcher_large_request_is_accepted_by_an_empty_queue(
    make_batcher: BatcherFactory,
) -> None:
    """A request bigger than max_queue_rows still runs when nothing else is queued."""
    batcher = make_batcher(EchoRuntime(), max_queue_rows=2, max_batch_size=2)

    result = await batcher.submit(rows_of(1, 2, 3, 4, 5))

    assert echoed(result) == [1, 2, 3, 4, 5]


async def test_batcher_does_not_compute_requests_of_cancelled_callers(
    make_batcher: BatcherFactory,
) -> None:
    """A queued request whose caller went away is dropped before the model sees it."""
    runtime = EchoRuntime(delay_s=0.1)
    batcher = make_batcher(runtime)
    running = asyncio.create_task(batcher.submit(rows_of(1)))
    await wait_for_calls(runtime, 1)
    abandoned = asyncio.create_task(batcher.submit(rows_of(2, 3)))
    await asyncio.sleep(0)

    abandoned.cancel()
    await running
    after = await batcher.submit(rows_of(4))

    assert echoed(after) == [4]
    assert runtime.batch_sizes == [1, 1]
    assert abandoned.cancelled()


async def test_batcher_refuses_empty_requests(make_batcher: BatcherFactory) -> None:
    """Zero rows are refused rather than queued (they could never form a batch)."""
    batcher = make_batcher(EchoRuntime())

    with pytest.raises(EmptyBatchError):
        await batcher.submit(np.zeros((0, 4)))


async def test_batcher_close_finishes_queued_work(make_batcher: BatcherFactory) -> None:
    """close() lets the running call and every queued request finish with results."""
    runtime = EchoRuntime(delay_s=0.05)
    batcher = make_batcher(runtime, max_batch_size=2)
    pending = [asyncio.create_task(batcher.submit(rows_of(i))) for i in range(5)]
    await wait_for_calls(runtime, 1)

    await batcher.close(timeout_s=5)

    assert [echoed(task.result()) for task in pending] == [[i] for i in range(5)]


async def test_batcher_close_then_refuses_with_shutting_down(
    make_batcher: BatcherFactory,
) -> None:
    """After close() a new request gets 503 shutting_down."""
    batcher = make_batcher(EchoRuntime())
    await batcher.close(timeout_s=5)

    with pytest.raises(ShuttingDownError) as caught:
        await batcher.submit(rows_of(1))

    assert (caught.value.kind, caught.value.code) == (ErrorKind.UNAVAILABLE, "shutting_down")


async def test_batcher_close_past_its_timeout_fails_what_is_still_queued(
    make_batcher: BatcherFactory,
) -> None:
    """Queued requests that cannot finish within the drain timeout get shutting_down."""
    runtime = EchoRuntime(delay_s=0.3)
    batcher = make_batcher(runtime)
    running = asyncio.create_task(batcher.submit(rows_of(1)))
    await wait_for_calls(runtime, 1)
    queued = asyncio.create_task(batcher.submit(rows_of(2)))
    await asyncio.sleep(0)

    await batcher.close(timeout_s=0.05)

    with pytest.raises(ShuttingDownError):
        await queued
    assert echoed(await running) == [1]


class _ProbabilityRuntime(EchoRuntime):
    """A classifier double: each row's probabilities are [f, 1 - f] for its first feature f."""

    def predict(self, batch: FloatArray) -> RawOutput:
        super().predict(batch)
        first = batch[:, 0] / 100
        return RawOutput(probabilities=np.column_stack([first, 1 - first]))


async def test_batcher_split_request_keeps_every_rows_probabilities(
    make_batcher: BatcherFactory,
) -> None:
    """A request split over several model calls gets every row's probabilities, in order."""
    runtime = _ProbabilityRuntime()
    batcher = make_batcher(runtime, max_batch_size=4, max_request_rows_per_call=4)

    result = await batcher.submit(rows_of(*range(10)))

    assert runtime.batch_sizes == [4, 4, 2]
    assert result.probabilities is not None
    assert result.probabilities[:, 0].tolist() == [i / 100 for i in range(10)]


async def test_batcher_cancelled_queued_request_gives_its_rows_back(
    make_batcher: BatcherFactory,
) -> None:
    """Once a queued caller is gone its rows no longer count against max_queue_rows."""
    runtime = EchoRuntime(delay_s=0.2)
    batcher = make_batcher(runtime, max_queue_rows=3)
    running = asyncio.create_task(batcher.submit(rows_of(1)))
    await wait_for_calls(runtime, 1)
    abandoned = asyncio.create_task(batcher.submit(rows_of(2, 3)))
    await asyncio.sleep(0)
    queued_before = batcher.queued_rows

    abandoned.cancel()
    await asyncio.sleep(0)
    queued_after = batcher.queued_rows
    fits = asyncio.create_task(batcher.submit(rows_of(4, 5, 6)))
    await running

    assert (queued_before, queued_after) == (2, 0)
    assert echoed(await fits) == [4, 5, 6]


async def test_batcher_each_queued_request_expires_at_its_own_deadline(
    make_batcher: BatcherFactory,
) -> None:
    """Two requests queued one after the other behind a slow call both get queue_timeout,
    each naming the deadline, and neither is computed."""
    runtime = EchoRuntime(delay_s=0.5)
    batcher = make_batcher(runtime, timeout_ms=100)
    running = asyncio.create_task(batcher.submit(rows_of(1)))
    await wait_for_calls(runtime, 1)
    first = asyncio.create_task(batcher.submit(rows_of(2)))
    await asyncio.sleep(0.02)  # a later arrival, so a later deadline: not a wait on a race
    second = asyncio.create_task(batcher.submit(rows_of(3)))

    outcomes = await asyncio.gather(first, second, return_exceptions=True)

    assert [type(outcome) for outcome in outcomes] == [QueueTimeoutError] * 2
    assert all("100 ms deadline" in str(outcome) for outcome in outcomes)
    with pytest.raises(InferenceTimeoutError):
        await running
    await batcher.close(timeout_s=5)
    assert runtime.batch_sizes == [1]


async def test_batcher_reserved_rows_count_as_queued_until_submitted_or_released(
    make_batcher: BatcherFactory,
) -> None:
    """Rows admitted before their body is parsed hold their place: a later reservation over
    max_queue_rows is refused; the submitted reservation is not checked again; a released one
    frees its rows (once)."""
    runtime = EchoRuntime()
    batcher = make_batcher(runtime, max_queue_rows=4)
    first = batcher.reserve(3)
    with pytest.raises(OverloadedError):
        batcher.reserve(2)
    second = batcher.reserve(1)
    assert echoed(await batcher.submit(rows_of(1, 2, 3), first)) == [1, 2, 3]
    assert second.release()
    assert not second.release()
    batcher.reserve(4).release()  # nothing waits any more: even the whole queue is admitted
