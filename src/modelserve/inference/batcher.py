"""Per-model-version dynamic batcher with a bounded queue.

The algorithm, in rows (not requests):

* A request's rows join a FIFO queue, or are refused at once (``OverloadedError``) when the
  queued rows would exceed ``max_queue_rows``.
* When a model thread is free, the dispatcher forms a batch of up to ``max_batch_size`` rows
  from the head of the queue, splitting a large request across batches when needed.
* If the head request arrived while the model was idle, the batch goes at once (no idle
  latency). If it arrived while the model was busy, the batch may wait until the head is
  ``max_delay_ms`` old for more rows, and goes as soon as it is full.
* Rows past their deadline (``timeout_ms`` from enqueue) are dropped before computing and
  answered ``QueueTimeoutError``; a model call still running at the deadline answers
  ``InferenceTimeoutError`` (the thread cannot be killed; its result is discarded).
* A failing model call fails only the requests with rows in that batch.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import structlog

from modelserve.errors import (
    EmptyBatchError,
    InferenceTimeoutError,
    ModelserveError,
    OverloadedError,
    PredictionFailedError,
    QueueTimeoutError,
    ShuttingDownError,
)
from modelserve.inference.types import FloatArray, RawOutput
from modelserve.observability import metrics, tracing
from modelserve.settings import BatchingConfig

log = structlog.get_logger(__name__)

PredictFn = Callable[[FloatArray], RawOutput]


@dataclass(eq=False, slots=True)
class _Request:
    rows: FloatArray
    future: asyncio.Future[RawOutput]
    enqueued_at: float
    deadline: float
    arrived_idle: bool
    taken: int = 0  # rows already placed in a batch
    parts: list[tuple[int, RawOutput]] = field(default_factory=list)
    done_rows: int = 0
    started_at: float = 0.0  # when its first rows went into a model call

    @property
    def remaining(self) -> int:
        return len(self.rows) - self.taken


@dataclass(slots=True)
class _Slice:
    request: _Request
    start: int
    stop: int


class DynamicBatcher:
    """Coalesces concurrent requests for one model version into bounded model calls."""

    def __init__(self, model: str, version: str, predict: PredictFn, config: BatchingConfig):
        self.model, self.version = model, version
        self._predict = predict
        self._config = config
        self._max_batch = config.max_batch_size if config.enabled else 0
        self._max_delay_s = config.max_delay_ms / 1000 if config.enabled else 0.0
        self._timeout_s = config.timeout_ms / 1000
        self._queue: deque[_Request] = deque()
        self._queued_rows = 0
        self._busy = 0
        self._threads = config.inference_threads
        self._executor = ThreadPoolExecutor(
            max_workers=self._threads, thread_name_prefix=f"infer-{model}-{version}"
        )
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    @property
    def busy_threads(self) -> int:
        return self._busy

    def start(self) -> None:
        """Start the dispatcher on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._dispatch_forever(), name=f"batcher-{self.model}-{self.version}"
            )

    async def submit(self, rows: FloatArray) -> RawOutput:
        """Queue ``rows`` and wait for their outputs, in order."""
        if self._closing:
            raise ShuttingDownError()
        n = len(rows)
        if n == 0:
            raise EmptyBatchError()  # zero rows never fill a batch: the dispatcher would spin
        limit = self._config.max_queue_rows
        # A request bigger than the whole queue is still served when the queue is empty.
        if self._queued_rows and self._queued_rows + n > limit:
            raise OverloadedError(self.model, self._queued_rows, limit)
        loop = asyncio.get_running_loop()
        now = loop.time()
        request = _Request(
            rows=rows,
            future=loop.create_future(),
            enqueued_at=now,
            deadline=now + self._timeout_s,
            arrived_idle=self._busy < self._threads and not self._queue,
        )
        self._queue.append(request)
        self._queued_rows += n
        self._idle.clear()
        metrics.record_queue(self.model, self.version, self._queued_rows)
        self._wakeup.set()
        try:
            async with asyncio.timeout(self._timeout_s):
                output = await request.future
            if tracing.active_tracer() is not None:
                tracing.record_batch_stages(
                    self.model, self.version, n, now, request.started_at, loop.time()
                )
            return output
        except TimeoutError:
            started = request.taken > 0
            self._abandon(request)
            error = (
                InferenceTimeoutError(self._config.timeout_ms)
                if started
                else QueueTimeoutError(self._config.timeout_ms)
            )
            raise error from None
        except asyncio.CancelledError:
            # The client went away: never compute rows nobody will read.
            if request.remaining:
                metrics.record_cancelled(self.model, self.version)
            self._abandon(request)
            raise

    async def close(self, timeout_s: float) -> None:
        """Refuse new work, finish what is queued (within ``timeout_s``), stop the threads."""
        self._closing = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            log.warning("batcher_drain_timed_out", model=self.model, queued_rows=self._queued_rows)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for request in self._queue:
            if not request.future.done():
                request.future.set_exception(ShuttingDownError())
        self._queue.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _abandon(self, request: _Request) -> None:
        if not request.future.done():
            request.future.cancel()
        if request.remaining and request in self._queue:
            self._queue.remove(request)
            self._queued_rows -= request.remaining
            request.taken = len(request.rows)
            self._after_change()

    def _after_change(self) -> None:
        metrics.record_queue(self.model, self.version, self._queued_rows)
        if not self._queue and self._busy == 0:
            self._idle.set()

    async def _dispatch_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue or self._busy >= self._threads:
                self._wakeup.clear()
                await self._wakeup.wait()
            await self._maybe_wait_for_companions(loop)
            batch = self._take_batch(loop.time())
            if batch:
                self._busy += 1
                task = loop.create_task(self._run(batch))
                self._running.add(task)  # keep a reference until it finishes
                task.add_done_callback(self._running.discard)
            else:
                self._after_change()

    async def _maybe_wait_for_companions(self, loop: asyncio.AbstractEventLoop) -> None:
        head = self._queue[0]
        if head.arrived_idle or self._max_delay_s <= 0:
            return
        until = head.enqueued_at + self._max_delay_s
        while self._queued_rows < self._max_batch and (wait := until - loop.time()) > 0:
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), wait)
            except TimeoutError:
                return
            if not self._queue:
                return

    def _take_batch(self, now: float) -> list[_Slice]:
        batch: list[_Slice] = []
        rows = 0
        capacity = self._max_batch or None  # batching off: exactly one request per call
        while self._queue:
            request = self._queue[0]
            if request.future.done() or now > request.deadline:
                self._queue.popleft()
                self._queued_rows -= request.remaining
                if not request.future.done():
                    request.future.set_exception(QueueTimeoutError(self._config.timeout_ms))
                request.taken = len(request.rows)
                continue
            if capacity is None:
                if batch:
                    break
                take = request.remaining
            else:
                take = min(request.remaining, capacity - rows)
                if take <= 0:
                    break
            if not request.taken:
                request.started_at = now
            batch.append(_Slice(request, request.taken, request.taken + take))
            request.taken += take
            self._queued_rows -= take
            rows += take
            metrics.record_queue_wait(self.model, self.version, now - request.enqueued_at)
            if request.remaining == 0:
                self._queue.popleft()
        metrics.record_queue(self.model, self.version, self._queued_rows)
        return batch

    async def _run(self, batch: list[_Slice]) -> None:
        loop = asyncio.get_running_loop()
        if len(batch) == 1 and batch[0].start == 0 and batch[0].stop == len(batch[0].request.rows):
            rows = batch[0].request.rows  # the common single-request case: no copy
        else:
            rows = np.concatenate([s.request.rows[s.start : s.stop] for s in batch])
        started = time.perf_counter()
        try:
            output = await loop.run_in_executor(self._executor, self._predict, rows)
        except Exception as exc:
            log.error(
                "batch_failed",
                model=self.model,
                model_version=self.version,
                batch_size=len(rows),
                exc_info=exc,
            )
            for piece in batch:
                if not piece.request.future.done():
                    error = exc if isinstance(exc, ModelserveError) else PredictionFailedError()
                    piece.request.future.set_exception(error)
        else:
            metrics.record_batch(self.model, self.version, len(rows), time.perf_counter() - started)
            self._scatter(batch, output)
        finally:
            self._busy -= 1
            self._after_change()
            self._wakeup.set()

    @staticmethod
    def _scatter(batch: list[_Slice], output: RawOutput) -> None:
        offset = 0
        for piece in batch:
            size = piece.stop - piece.start
            request = piece.request
            part = output.rows(offset, offset + size)
            offset += size
            if request.future.done():
                continue
            if piece.start == 0 and size == len(request.rows):
                request.future.set_result(part)
                continue
            request.parts.append((piece.start, part))
            request.done_rows += size
            if request.done_rows == len(request.rows):
                request.parts.sort(key=lambda p: p[0])
                request.future.set_result(_concat([p for _, p in request.parts]))


def _concat(parts: list[RawOutput]) -> RawOutput:
    probabilities = [p.probabilities for p in parts if p.probabilities is not None]
    values = [p.values for p in parts if p.values is not None]
    return RawOutput(
        probabilities=np.concatenate(probabilities) if probabilities else None,
        values=np.concatenate(values) if values else None,
    )
