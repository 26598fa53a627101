"""Per-model-version dynamic batcher with a bounded queue.

The algorithm, in rows (not requests):

* A request's rows join a FIFO queue, or are refused at once (``OverloadedError``) when the
  queued rows would exceed ``max_queue_rows`` (rows already in a model call do not count), or
  (``QueueTooSlowError``) when the model calls that compute the rows in calls, those queued
  and its own would take, at the time recent calls took, more than ``ADMISSION_SHARE`` of
  ``timeout_ms``: under overload the excess is shed on arrival with ``Retry-After`` instead
  of waiting to be answered 504. A request that finds the queue empty is always admitted.
* When model calls slow down after rows were admitted (a busy machine), queued requests that
  the new rate cannot compute before their deadline are answered ``QueueTooSlowError`` at
  once (checked at most every ``SHED_CHECK_INTERVAL_S``), not 504 when the deadline passes.
* Whenever a model thread is free, a batch of up to ``max_batch_size`` rows is formed from
  the head of the queue. A request of more rows than that is never coalesced: it goes alone,
  in calls of up to ``max_request_rows_per_call`` rows (one call for a typical large request:
  splitting it into small calls would only multiply the per-call overhead it waits for).
* A request that finds a thread free and the queue empty goes at once, alone: an idle model
  adds no latency, and the next batch forms while this one runs. When a thread frees up, the
  queued rows go at once if they fill a batch or the head has waited ``max_delay_ms``;
  otherwise the batch waits for companions until one of the two happens.
* Rows past their deadline (``timeout_ms`` from enqueue) are dropped before computing and
  answered ``QueueTimeoutError``; a model call still running at the deadline answers
  ``InferenceTimeoutError`` (the thread cannot be killed; its result is discarded).
* A failing model call fails only the requests with rows in that batch.

Everything but the model call runs on the event loop, driven by callbacks (no dispatcher task):
a submit, a finished model call and the max-delay timer each call :meth:`_pump`. Every request
of a batcher has the same timeout, so deadlines come in enqueue order and one timer, armed for
the oldest unanswered request, enforces them all (a timer per request cost more than the rest
of the batcher on the hot path).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import structlog

from modelserve.errors import (
    EmptyBatchError,
    InferenceTimeoutError,
    ModelserveError,
    OverloadedError,
    PredictionFailedError,
    QueueTimeoutError,
    QueueTooSlowError,
    ShuttingDownError,
)
from modelserve.inference.types import Batch, RawOutput
from modelserve.observability import metrics, tracing
from modelserve.observability.throttle import LogThrottle
from modelserve.settings import BatchingConfig

FAILURE_LOG_INTERVAL_S = 10.0
"""Per version, at most one ``batch_failed`` line this often (the metrics count every one)."""

PredictFn = Callable[[Batch], RawOutput]
INFERENCE_THREAD_PREFIX = "infer-"
"""Names of the threads that run model calls start with this."""
ADMISSION_SHARE = 0.3
"""Rows are admitted while they are predicted to be computed within this share of the
deadline; the rest is margin for the event loop (parsing, answering) and a rate that moves
(on a busy machine the same call can take several times longer a second later). Under
sustained overload a short queue computes as much as a long one: only latency grows."""
SHED_CHECK_INTERVAL_S = 0.05
"""How often, at most, a finished model call re-checks the queue against its deadlines."""
_RATE_SMOOTHING = 0.2
"""Weight of the latest model call in the moving average of seconds per call."""

_T = TypeVar("_T")
Job = Callable[[PredictFn], _T]
"""A large request's whole pipeline, run in an inference thread; it calls the model through
the function it is given (:meth:`DynamicBatcher.run_job`)."""


class _AbandonedError(Exception):
    """A job's request was answered already (deadline, client gone): nothing more to compute."""


@dataclass(eq=False, slots=True)
class _Request:
    rows: Batch
    future: asyncio.Future[Any]  # RawOutput, or a job's result
    enqueued_at: float
    deadline: float
    arrived_idle: bool  # found a thread free and the queue empty: goes at once
    taken: int = 0  # rows already placed in a batch
    parts: list[tuple[int, RawOutput]] = field(default_factory=list)
    done_rows: int = 0
    started_at: float = 0.0  # when its first rows went into a model call
    job: Job[Any] | None = None  # a large request's pipeline; rows only count its size
    context: contextvars.Context | None = None  # the job's request context (log fields)

    @property
    def remaining(self) -> int:
        return len(self.rows) - self.taken


class Reservation:
    """Rows admitted into one batcher's queue before they exist (:meth:`DynamicBatcher.reserve`):
    submitted with them, or released; :meth:`release` is idempotent."""

    __slots__ = ("batcher", "rows")

    def __init__(self, batcher: DynamicBatcher, rows: int) -> None:
        self.batcher = batcher
        self.rows = rows

    def release(self) -> bool:
        """Give the reserved rows back; True only the first time."""
        if not self.rows:
            return False
        self.batcher._unreserve(self.rows)
        self.rows = 0
        return True


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
        self._max_call = max(config.max_batch_size, config.max_request_rows_per_call)
        self._max_delay_s = config.max_delay_ms / 1000 if config.enabled else 0.0
        self._timeout_s = config.timeout_ms / 1000
        self._threads = config.inference_threads
        self._executor = ThreadPoolExecutor(
            max_workers=self._threads,
            thread_name_prefix=f"{INFERENCE_THREAD_PREFIX}{model}-{version}",
        )
        self._queue: deque[_Request] = deque()
        self._queued_rows = 0
        self._reserved_rows = 0  # admitted by declared rows, bodies not parsed yet
        self._reserved_requests = 0
        self._computing_rows = 0  # rows in model calls under way
        self._busy = 0
        self._unanswered: deque[_Request] = deque()  # queued or computing, in deadline order
        self._deadline_timer: asyncio.Handle | None = None
        self._delay_timer: asyncio.Handle | None = None
        self._delay_until = 0.0
        self._metrics = metrics.batcher_recorder(model, version)
        self._drained = asyncio.Event()
        self._drained.set()
        self._closing = False
        self._failure_log = LogThrottle(FAILURE_LOG_INTERVAL_S)
        self._log = structlog.get_logger(__name__, model=model, model_version=version)
        self._admission_budget_s = self._timeout_s * ADMISSION_SHARE
        self._seconds_per_call = 0.0  # moving average over successful model calls
        self._latest_call_s = 0.0
        self._next_shed_check = 0.0

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    @property
    def busy_threads(self) -> int:
        return self._busy

    def start(self) -> None:
        """Kept for symmetry with close(): the batcher needs no task of its own."""

    async def submit(self, rows: Batch, reservation: Reservation | None = None) -> RawOutput:
        """Queue ``rows`` and wait for their outputs, in order.

        With a :class:`Reservation` of this batcher the request was admitted when it was
        reserved: only the queue's row bound is checked again (the estimate may have been low).
        """
        if self._closing:
            raise ShuttingDownError()
        n = len(rows)
        if n == 0:
            raise EmptyBatchError()  # zero rows never fill a batch
        admitted = reservation is not None and reservation.batcher is self and reservation.release()
        refusal = self._over_queue_bound(n) if admitted else self._refusal(n)
        if refusal is not None:
            raise refusal
        loop = asyncio.get_running_loop()
        now = loop.time()
        idle = not self._queue and self._busy < self._threads
        request = _Request(rows, loop.create_future(), now, now + self._timeout_s, idle)
        self._queue.append(request)
        self._queued_rows += n
        self._track_deadline(loop, request)
        self._drained.clear()
        self._pump(loop)
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
        admitted = reservation is not None and reservation.batcher is self and reservation.release()
        refusal = self._over_queue_bound(n) if admitted else self._refusal(n)
        if refusal is not None:
            raise refusal
        loop = asyncio.get_running_loop()
        now = loop.time()
        idle = not self._queue and self._busy < self._threads
        # An (n, 0) placeholder: the queue counts the job's rows by len() like any request's.
        placeholder = np.empty((n, 0))
        request = _Request(placeholder, loop.create_future(), now, now + self._timeout_s, idle)
        request.job, request.context = job, contextvars.copy_context()
        self._queue.append(request)
        self._queued_rows += n
        self._track_deadline(loop, request)
        self._drained.clear()
        self._pump(loop)
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
        would raise now. Reserved rows count as queued for every later admission until the
        reservation is submitted or released, so the requests admitted while their bodies
        are parsed are those the model can compute in time, and the rest are refused before
        their bodies cost anything."""
        refusal = self._refusal(n)
        if refusal is not None:
            raise refusal
        self._reserved_rows += n
        self._reserved_requests += 1
        return Reservation(self, n)

    def _unreserve(self, n: int) -> None:
        self._reserved_rows -= n
        self._reserved_requests -= 1

    def _refusal(self, n: int) -> ModelserveError | None:
        """The error ``n`` more rows are refused with now, or None when they are admitted."""
        waiting = self._queued_rows + self._reserved_rows
        # A request bigger than the whole queue is still served when nothing waits.
        if not waiting:
            return None
        if (over := self._over_queue_bound(n)) is not None:
            return over
        ahead = self._computing_rows + waiting + n
        requests = len(self._queue) + self._reserved_requests + 1
        done_in_s = self._calls_for(ahead, requests) * self._seconds_per_call_now()
        if done_in_s > self._admission_budget_s:
            return QueueTooSlowError(self.model, waiting, done_in_s, self._admission_budget_s)
        return None

    def _over_queue_bound(self, n: int) -> ModelserveError | None:
        waiting = self._queued_rows + self._reserved_rows
        limit = self._config.max_queue_rows
        if waiting and waiting + n > limit:
            return OverloadedError(self.model, waiting, limit)
        return None

    def _calls_for(self, rows: int, requests: int) -> int:
        """Model calls until ``rows`` (in calls, then queued) are computed, the last of them
        in the ``requests``-th queued request: batches of ``max_batch_size``, or one call per
        request with batching off."""
        if self._max_batch:
            return math.ceil(rows / self._max_batch)
        return self._busy + requests

    def _seconds_per_call_now(self) -> float:
        """Wall seconds per model call per thread, the slower of the moving average and the
        latest (0 before a call has finished). Calls, not rows: under load they are full
        batches, and a small model's call costs about the same for 1 row or 64."""
        return max(self._seconds_per_call, self._latest_call_s) / self._threads

    def _shed_the_late(self, now: float) -> None:
        """Answer 503 now to queued requests the current rate cannot compute before their
        deadline (they would get a 504 then); the ones after them move up."""
        per_call = self._seconds_per_call_now()
        rows_ahead, requests = self._computing_rows, 0
        for request in self._queue:
            if request.taken or request.future.done():
                rows_ahead += request.remaining
                requests += 1
                continue
            finish = now + self._calls_for(rows_ahead + request.remaining, requests + 1) * per_call
            if finish <= request.deadline:
                rows_ahead += request.remaining
                requests += 1
                continue
            request.future.set_exception(
                QueueTooSlowError(
                    self.model, self._queued_rows, finish - now, request.deadline - now
                )
            )
            self._queued_rows -= request.remaining
            request.taken = len(request.rows)  # skipped when the queue reaches it

    def _timed_predict(self, rows: Batch) -> RawOutput:
        """The model call, timed in its thread: the admission estimate counts the model's
        time, not the event loop's delay in collecting the answer (a busy loop parsing
        requests that are then refused would otherwise inflate it and refuse everything)."""
        started = time.perf_counter()
        output = self._predict(rows)
        seconds = time.perf_counter() - started
        if self._max_batch and len(rows) > self._max_batch:
            # A large request's call counts as the max_batch_size-row calls _calls_for expects.
            seconds *= self._max_batch / len(rows)
        self._record_call(seconds)
        return output

    def _record_call(self, seconds: float) -> None:
        self._latest_call_s = seconds
        if self._seconds_per_call <= 0:
            self._seconds_per_call = seconds
        else:
            self._seconds_per_call += _RATE_SMOOTHING * (seconds - self._seconds_per_call)

    async def close(self, timeout_s: float) -> None:
        """Refuse new work, finish what is queued (within ``timeout_s``), stop the threads."""
        self._closing = True
        try:
            await asyncio.wait_for(self._drained.wait(), timeout_s)
        except TimeoutError:
            self._log.warning("batcher_drain_timed_out", queued_rows=self._queued_rows)
        if self._delay_timer is not None:
            self._delay_timer.cancel()
        for request in self._queue:
            if not request.future.done():
                request.future.set_exception(ShuttingDownError())
        self._queue.clear()
        self._queued_rows = 0
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
        self._metrics.queue_rows(self._queued_rows)
        if not self._queue and self._busy == 0:
            self._drained.set()

    def _track_deadline(self, loop: asyncio.AbstractEventLoop, request: _Request) -> None:
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
        while self._queue and self._busy < self._threads:
            now = loop.time()
            due_at = self._due_at()
            if now < due_at:
                if self._delay_timer is None or self._delay_until > due_at:
                    if self._delay_timer is not None:
                        self._delay_timer.cancel()
                    self._delay_until = due_at
                    self._delay_timer = loop.call_at(due_at, self._on_delay_over, loop)
                break
            batch = self._take_batch(now)
            if batch:
                self._start(loop, batch)
        self._after_change()

    def _due_at(self) -> float:
        """When the head's batch should go: at once if it arrived idle or the batch is full."""
        head = self._queue[0]
        if head.arrived_idle or self._max_delay_s <= 0 or self._queued_rows >= self._max_batch:
            return 0.0
        return head.enqueued_at + self._max_delay_s

    def _on_delay_over(self, loop: asyncio.AbstractEventLoop) -> None:
        self._delay_timer = None
        self._pump(loop)

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
            if request.job is not None or capacity is None:  # a job, or batching off: alone
                alone, take = True, request.remaining
            elif len(request.rows) > capacity:  # a large request: alone, in calls of its own
                alone, take = True, min(request.remaining, self._max_call)
            else:
                alone, take = False, min(request.remaining, capacity - rows)
                if take <= 0:
                    break
            if alone and batch:
                break
            if not request.taken:
                request.started_at = now
                self._metrics.queue_wait_seconds(now - request.enqueued_at)
            batch.append(_Slice(request, request.taken, request.taken + take))
            request.taken += take
            self._queued_rows -= take
            rows += take
            if request.remaining == 0:
                self._queue.popleft()
            if alone:
                break
        return batch

    def _start(self, loop: asyncio.AbstractEventLoop, batch: list[_Slice]) -> None:
        first = batch[0]
        if first.request.job is not None:
            self._start_job(loop, first.request)
            return
        if len(batch) == 1:
            rows = first.request.rows[first.start : first.stop]  # one request's rows: a view
        else:
            rows = np.concatenate([s.request.rows[s.start : s.stop] for s in batch])
        self._busy += 1
        self._computing_rows += len(rows)
        call = self._executor.submit(self._timed_predict, rows)
        finish = functools.partial(self._finish, loop, batch, len(rows), time.perf_counter())
        call.add_done_callback(functools.partial(_finish_on_loop, loop, finish))

    def _start_job(self, loop: asyncio.AbstractEventLoop, request: _Request) -> None:
        size = len(request.rows)
        self._busy += 1
        self._computing_rows += size
        context = request.context or contextvars.copy_context()
        predict = functools.partial(self._job_predict, request)
        call = self._executor.submit(context.run, request.job, predict)  # type: ignore[arg-type]  # job is set
        finish = functools.partial(self._finish_job, loop, request, size)
        call.add_done_callback(functools.partial(_finish_on_loop, loop, finish))

    def _job_predict(self, request: _Request, rows: Batch) -> RawOutput:
        """A job's model call, in its inference thread: in calls of up to
        ``max_request_rows_per_call`` rows, timed, checked and counted as :meth:`_finish`
        does for a queued request's calls."""
        if request.future.done():  # answered meanwhile: never compute rows nobody will read
            raise _AbandonedError()
        n = len(rows)
        if n == 0:
            raise EmptyBatchError()
        parts = []
        for start in range(0, n, self._max_call):
            part = rows[start : start + self._max_call]
            started = time.perf_counter()
            try:
                output = self._timed_predict(part)
            except ModelserveError as exc:
                self._log_failure(len(part), exc_info=exc)
                raise
            except Exception as exc:
                self._log_failure(len(part), exc_info=exc)
                raise PredictionFailedError() from None
            if (wrong := _wrong_shape(output, len(part))) is not None:
                self._log_failure(len(part), reason=wrong)
                raise PredictionFailedError()
            self._metrics.batch_rows(len(part))
            self._metrics.inference_seconds(time.perf_counter() - started)
            parts.append(output)
        if request.future.done():
            raise _AbandonedError()
        return parts[0] if len(parts) == 1 else _concat(parts)

    def _finish_job(
        self,
        loop: asyncio.AbstractEventLoop,
        request: _Request,
        size: int,
        call: Future[object],
    ) -> None:
        self._busy -= 1
        self._computing_rows -= size
        if not request.future.done():
            if call.cancelled():  # the executor was shut down before the job began
                request.future.set_exception(ShuttingDownError())
            elif (exc := call.exception()) is not None:
                request.future.set_exception(exc)
            else:
                request.future.set_result(call.result())
        if self._queue and loop.time() >= self._next_shed_check:
            self._next_shed_check = loop.time() + SHED_CHECK_INTERVAL_S
            self._shed_the_late(loop.time())
        self._pump(loop)

    def _finish(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[_Slice],
        size: int,
        started: float,
        call: Future[RawOutput],
    ) -> None:
        self._busy -= 1
        self._computing_rows -= size
        if call.cancelled():  # the executor was shut down before the call began
            self._fail(batch, ShuttingDownError)
        elif (exc := call.exception()) is not None:
            self._log_failure(size, exc_info=exc)
            if isinstance(exc, ModelserveError):
                self._fail(batch, lambda: exc)
            else:
                self._fail(batch, PredictionFailedError)
        elif (wrong := _wrong_shape(call.result(), size)) is not None:
            self._log_failure(size, reason=wrong)
            self._fail(batch, PredictionFailedError)
        else:
            seconds = time.perf_counter() - started
            if self._queue and loop.time() >= self._next_shed_check:
                self._next_shed_check = loop.time() + SHED_CHECK_INTERVAL_S
                self._shed_the_late(loop.time())
            self._metrics.batch_rows(size)
            self._metrics.inference_seconds(seconds)
            _scatter(batch, call.result())
        self._pump(loop)

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
    def _fail(batch: list[_Slice], error: Callable[[], BaseException]) -> None:
        for piece in batch:
            if not piece.request.future.done():
                piece.request.future.set_exception(error())


def _finish_on_loop(
    loop: asyncio.AbstractEventLoop,
    finish: Callable[[Future[Any]], None],
    call: Future[Any],
) -> None:
    """Hand a finished model call to the loop in one ``call_soon_threadsafe``.

    ``loop.run_in_executor`` wraps the call in an asyncio future that the thread completes
    through the loop, whose done callbacks then run one loop iteration later: an asyncio
    future and an extra iteration per model call, on the single-row latency path."""
    # A closed loop: the server stopped, and nobody waits for the answer.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(finish, call)


def _wrong_shape(output: RawOutput, size: int) -> str | None:
    """Why ``output`` cannot be the answer for ``size`` rows, or None when it can."""
    if output.probabilities is None and output.values is None:
        return "the model returned no output"
    for name, array in (("probabilities", output.probabilities), ("values", output.values)):
        if array is None:
            continue
        if array.ndim == 0 or len(array) != size or (name == "probabilities" and array.ndim != 2):
            return f"the model returned {name} of shape {array.shape} for a batch of {size} rows"
    return None


def _scatter(batch: list[_Slice], output: RawOutput) -> None:
    """Hand each request its rows of ``output``; split requests get theirs when complete."""
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
