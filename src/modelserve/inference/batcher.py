"""Per-model-version dynamic batcher with a bounded queue.

The algorithm, in rows (not requests):

* A request's rows join a FIFO queue, or are refused at once: admission, queue bounds and
  shedding the requests a slower model can no longer compute in time are :mod:`.row_queue`'s.
* Whenever a model thread is free, a batch of up to ``max_batch_size`` rows is formed from
  the head of the queue (:mod:`.batch_assembly`); a request of more rows than that goes alone.
* A request that finds a thread free and the queue empty goes at once, alone: an idle model
  adds no latency, and the next batch forms while this one runs. When a thread frees up, the
  queued rows go at once if they fill a batch or the head has waited ``max_delay_ms``;
  otherwise the batch waits for companions until one of the two happens.
* Rows past their deadline (``timeout_ms`` from enqueue) are dropped before computing and
  answered ``QueueTimeoutError``; a model call still running at the deadline answers
  ``InferenceTimeoutError`` (the thread cannot be killed; its result is discarded).
* A failing model call fails only the requests with rows in that batch.
* A large request's whole pipeline is queued as one job (:mod:`.large_job`), never coalesced.

Everything but the model call runs on the event loop, driven by callbacks (no dispatcher task):
a submit, a finished model call and the max-delay timer each call :meth:`_pump`. Every request
of a batcher has the same timeout, so deadlines come in enqueue order and one timer, armed for
the oldest unanswered request, enforces them all (a timer per request cost more than the rest
of the batcher on the hot path).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import structlog

from modelserve.errors import (
    EmptyBatchError,
    InferenceTimeoutError,
    ModelserveError,
    PredictionFailedError,
    QueueTimeoutError,
    ShuttingDownError,
)
from modelserve.inference.batch_assembly import (
    batch_rows,
    finish_on_loop,
    scatter,
    take_batch,
    wrong_shape,
)
from modelserve.inference.large_job import LargeJobs
from modelserve.inference.row_queue import Job, QueuedRequest, Reservation, RowQueue, Slice
from modelserve.inference.types import Batch, PredictFn, RawOutput
from modelserve.observability import metrics, tracing
from modelserve.observability.throttle import LogThrottle
from modelserve.settings import BatchingConfig

FAILURE_LOG_INTERVAL_S = 10.0
"""Per version, at most one ``batch_failed`` line this often (the metrics count every one)."""

INFERENCE_THREAD_PREFIX = "infer-"
"""Names of the threads that run model calls start with this."""
SHED_CHECK_INTERVAL_S = 0.05
"""How often, at most, a finished model call re-checks the queue against its deadlines."""

_T = TypeVar("_T")


class DynamicBatcher:
    """Coalesces concurrent requests for one model version into bounded model calls."""

    def __init__(self, model: str, version: str, predict: PredictFn, config: BatchingConfig):
        self.model, self.version = model, version
        self._predict = predict
        self._config = config
        self._max_batch = config.max_batch_size if config.enabled else 0
        self._max_call = max(config.max_batch_size, config.max_request_rows_per_call)
        self._max_delay_s = config.max_delay_ms / 1000 if config.enabled else 0.0
        self._timeout_s = config.timeout_ms / 1000
        self._threads = config.inference_threads
        self._executor = ThreadPoolExecutor(
            max_workers=self._threads,
            thread_name_prefix=f"{INFERENCE_THREAD_PREFIX}{model}-{version}",
        )
        self._queue = RowQueue(model, config)
        self._unanswered: deque[QueuedRequest] = deque()  # queued or computing, in deadline order
        self._deadline_timer: asyncio.Handle | None = None
        self._delay_timer: asyncio.Handle | None = None
        self._delay_until = 0.0
        self._metrics = metrics.batcher_recorder(model, version)
        self._drained = asyncio.Event()
        self._drained.set()
        self._closing = False
        self._failure_log = LogThrottle(FAILURE_LOG_INTERVAL_S)
        self._log = structlog.get_logger(__name__, model=model, model_version=version)
        self._next_shed_check = 0.0
        self._jobs = LargeJobs(
            self._queue,
            self._executor,
            self._timed_predict,
            self._log_failure,
            self._metrics,
            self._max_call,
            self._after_job,
        )

    @property
    def queued_rows(self) -> int:
        return self._queue.queued_rows

    @property
    def busy_threads(self) -> int:
        return self._queue.busy

    def start(self) -> None:
        """Kept for symmetry with close(): the batcher needs no task of its own."""

    async def submit(self, rows: Batch, reservation: Reservation | None = None) -> RawOutput:
        """Queue ``rows`` and wait for their outputs, in order.

        With a :class:`~.row_queue.Reservation` of this batcher the request was admitted when
        it was reserved: only the queue's row bound is checked again (the estimate may have
        been low).
        """
        if self._closing:
            raise ShuttingDownError()
        n = len(rows)
        if n == 0:
            raise EmptyBatchError()  # zero rows never fill a batch
        self._queue.admit(n, reservation)
        loop = asyncio.get_running_loop()
        now = loop.time()
        idle = self._queue.arrival_is_idle
        request = QueuedRequest(rows, loop.create_future(), now, now + self._timeout_s, idle)
        self._enqueue(loop, request)
        try:
            output: RawOutput = await request.future
        except asyncio.CancelledError:
            # The client went away: never compute rows nobody will read.
            if request.remaining:
                metrics.record_cancelled(self.model, self.version, request.remaining)
            self._abandon(request)
            raise
        if tracing.active_tracer() is not None:
            tracing.record_batch_stages(
                self.model, self.version, n, now, request.started_at, loop.time()
            )
        return output

    async def run_job(self, job: Job[_T], rows: int, reservation: Reservation | None = None) -> _T:
        """Run ``job`` (a large request's whole pipeline) in this batcher's inference thread.

        It is admitted, queued, timed out and shed as a request of ``rows`` rows (an estimate:
        its body is not parsed yet), never coalesced, and computes in one thread job: the
        model call it makes through its argument keeps the model's timing, failure handling
        and metrics. Its own exceptions (bad input) are raised here unchanged.
        """
        if self._closing:
            raise ShuttingDownError()
        n = max(rows, 1)
        self._queue.admit(n, reservation)
        loop = asyncio.get_running_loop()
        now = loop.time()
        idle = self._queue.arrival_is_idle
        # An (n, 0) placeholder: the queue counts the job's rows by len() like any request's.
        placeholder = np.empty((n, 0))
        request = QueuedRequest(placeholder, loop.create_future(), now, now + self._timeout_s, idle)
        request.job, request.context = job, contextvars.copy_context()
        self._enqueue(loop, request)
        try:
            result: _T = await request.future
        except asyncio.CancelledError:
            if request.remaining:
                metrics.record_cancelled(self.model, self.version, request.remaining)
            self._abandon(request)
            raise
        return result

    def reserve(self, n: int) -> Reservation:
        """Admit about ``n`` rows that are not parsed yet, or raise the refusal :meth:`submit`
        would raise now (see :meth:`~.row_queue.RowQueue.reserve`)."""
        return self._queue.reserve(n)

    def _enqueue(self, loop: asyncio.AbstractEventLoop, request: QueuedRequest) -> None:
        self._queue.append(request)
        self._track_deadline(loop, request)
        self._drained.clear()
        self._pump(loop)

    def _timed_predict(self, rows: Batch) -> RawOutput:
        """The model call, timed in its thread: the admission estimate counts the model's
        time, not the event loop's delay in collecting the answer (a busy loop parsing
        requests that are then refused would otherwise inflate it and refuse everything)."""
        started = time.perf_counter()
        output = self._predict(rows)
        seconds = time.perf_counter() - started
        if self._max_batch and len(rows) > self._max_batch:
            # A large request's call counts as the max_batch_size-row calls admission expects.
            seconds *= self._max_batch / len(rows)
        self._queue.record_call(seconds)
        return output

    async def close(self, timeout_s: float) -> None:
        """Refuse new work, finish what is queued (within ``timeout_s``), stop the threads."""
        self._closing = True
        try:
            await asyncio.wait_for(self._drained.wait(), timeout_s)
        except TimeoutError:
            self._log.warning("batcher_drain_timed_out", queued_rows=self._queue.queued_rows)
        if self._delay_timer is not None:
            self._delay_timer.cancel()
        for request in self._queue.requests:
            if not request.future.done():
                request.future.set_exception(ShuttingDownError())
        self._queue.requests.clear()
        self._queue.queued_rows = 0
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _abandon(self, request: QueuedRequest) -> None:
        if not request.future.done():
            request.future.cancel()
        if request.remaining and request in self._queue.requests:
            self._queue.remove(request)
            self._after_change()

    def _after_change(self) -> None:
        self._metrics.queue_rows(self._queue.queued_rows)
        if not self._queue.requests and self._queue.busy == 0:
            self._drained.set()

    def _track_deadline(self, loop: asyncio.AbstractEventLoop, request: QueuedRequest) -> None:
        unanswered = self._unanswered
        while unanswered and unanswered[0].future.done():
            unanswered.popleft()  # answers come back roughly in order: the head stays fresh
        unanswered.append(request)
        if self._deadline_timer is None:
            self._deadline_timer = loop.call_at(unanswered[0].deadline, self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Answer 504 to every request past its deadline; re-arm for the next one."""
        self._deadline_timer = None
        now = loop.time()
        unanswered = self._unanswered
        while unanswered and (unanswered[0].future.done() or unanswered[0].deadline <= now):
            request = unanswered.popleft()
            if request.future.done():
                continue
            timeout_ms = self._config.timeout_ms
            started = request.taken > 0
            error = InferenceTimeoutError(timeout_ms) if started else QueueTimeoutError(timeout_ms)
            request.future.set_exception(error)
            self._abandon(request)
        if unanswered:
            self._deadline_timer = loop.call_at(unanswered[0].deadline, self._expire, loop)

    def _pump(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start model calls while a thread is free and a batch is due."""
        queue = self._queue
        while queue.requests and queue.busy < self._threads:
            now = loop.time()
            due_at = self._due_at()
            if now < due_at:
                if self._delay_timer is None or self._delay_until > due_at:
                    if self._delay_timer is not None:
                        self._delay_timer.cancel()
                    self._delay_until = due_at
                    self._delay_timer = loop.call_at(due_at, self._on_delay_over, loop)
                break
            batch = take_batch(
                queue,
                now,
                self._max_batch or None,  # batching off: exactly one request per call
                self._max_call,
                self._config.timeout_ms,
                self._metrics.queue_wait_seconds,
            )
            if batch:
                self._start(loop, batch)
        self._after_change()

    def _due_at(self) -> float:
        """When the head's batch should go: at once if it arrived idle or the batch is full."""
        head = self._queue.requests[0]
        if (
            head.arrived_idle
            or self._max_delay_s <= 0
            or self._queue.queued_rows >= self._max_batch
        ):
            return 0.0
        return head.enqueued_at + self._max_delay_s

    def _on_delay_over(self, loop: asyncio.AbstractEventLoop) -> None:
        self._delay_timer = None
        self._pump(loop)

    def _start(self, loop: asyncio.AbstractEventLoop, batch: list[Slice]) -> None:
        first = batch[0]
        if first.request.job is not None:
            self._jobs.start(loop, first.request)
            return
        rows = batch_rows(batch)
        self._queue.busy += 1
        self._queue.computing_rows += len(rows)
        call = self._executor.submit(self._timed_predict, rows)
        finish = functools.partial(self._finish, loop, batch, len(rows), time.perf_counter())
        call.add_done_callback(functools.partial(finish_on_loop, loop, finish))

    def _finish(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[Slice],
        size: int,
        started: float,
        call: Future[RawOutput],
    ) -> None:
        self._queue.busy -= 1
        self._queue.computing_rows -= size
        if call.cancelled():  # the executor was shut down before the call began
            self._fail(batch, ShuttingDownError)
        elif (exc := call.exception()) is not None:
            self._log_failure(size, exc_info=exc)
            if isinstance(exc, ModelserveError):
                self._fail(batch, lambda: exc)
            else:
                self._fail(batch, PredictionFailedError)
        elif (wrong := wrong_shape(call.result(), size)) is not None:
            self._log_failure(size, reason=wrong)
            self._fail(batch, PredictionFailedError)
        else:
            seconds = time.perf_counter() - started
            self._shed_if_due(loop)
            self._metrics.batch_rows(size)
            self._metrics.inference_seconds(seconds)
            scatter(batch, call.result())
        self._pump(loop)

    def _after_job(self, loop: asyncio.AbstractEventLoop) -> None:
        self._shed_if_due(loop)
        self._pump(loop)

    def _shed_if_due(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._queue.requests and loop.time() >= self._next_shed_check:
            self._next_shed_check = loop.time() + SHED_CHECK_INTERVAL_S
            self._queue.shed_the_late(loop.time())

    def _log_failure(self, size: int, **details: object) -> None:
        """One ``batch_failed`` line (with the traceback) per interval, not one per batch: a
        model failing on every request must not turn the log into a copy of the traffic."""
        held_back = self._failure_log.allow()
        if held_back is not None:
            self._log.error(
                "batch_failed",
                batch_size=size,
                failures_not_logged=held_back,
                **details,
            )

    @staticmethod
    def _fail(batch: list[Slice], error: Callable[[], BaseException]) -> None:
        for piece in batch:
            if not piece.request.future.done():
                piece.request.future.set_exception(error())
