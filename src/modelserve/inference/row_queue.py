"""A batcher's FIFO queue, counted in rows, and its admission control.

* A request's rows join the queue, or are refused at once (``OverloadedError``) when the
  queued rows would exceed ``max_queue_rows`` (rows already in a model call do not count), or
  (``QueueTooSlowError``) when the model calls that compute the rows in calls, those queued
  and its own would take, at the time recent calls took, more than ``ADMISSION_SHARE`` of
  ``timeout_ms``: under overload the excess is shed on arrival with ``Retry-After`` instead
  of waiting to be answered 504. A request that finds the queue empty is always admitted.
* When model calls slow down after rows were admitted (a busy machine), queued requests that
  the new rate cannot compute before their deadline are answered ``QueueTooSlowError`` at
  once (:meth:`RowQueue.shed_the_late`), not 504 when the deadline passes.
* Rows whose bodies are not parsed yet are admitted by their declared count
  (:meth:`RowQueue.reserve`) and count as queued until they are submitted or released.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from modelserve.errors import ModelserveError, OverloadedError, QueueTooSlowError
from modelserve.inference.types import Batch, PredictFn, RawOutput
from modelserve.settings import BatchingConfig

ADMISSION_SHARE = 0.3
"""Rows are admitted while they are predicted to be computed within this share of the
deadline; the rest is margin for the event loop (parsing, answering) and a rate that moves
(on a busy machine the same call can take several times longer a second later). Under
sustained overload a short queue computes as much as a long one: only latency grows."""
_RATE_SMOOTHING = 0.2
"""Weight of the latest model call in the moving average of seconds per call."""

_T = TypeVar("_T")
Job = Callable[[PredictFn], _T]
"""A large request's whole pipeline, run in an inference thread; it calls the model through
the function it is given (:meth:`~modelserve.inference.batcher.DynamicBatcher.run_job`)."""


@dataclass(eq=False, slots=True)
class QueuedRequest:
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


@dataclass(slots=True)
class Slice:
    """Rows [start, stop) of one request, in one batch."""

    request: QueuedRequest
    start: int
    stop: int


class Reservation:
    """Rows admitted into one batcher's queue before they exist (:meth:`RowQueue.reserve`):
    submitted with them, or released; :meth:`release` is idempotent."""

    __slots__ = ("queue", "rows")

    def __init__(self, queue: RowQueue, rows: int) -> None:
        self.queue = queue
        self.rows = rows

    def release(self) -> bool:
        """Give the reserved rows back; True only the first time."""
        if not self.rows:
            return False
        self.queue.unreserve(self.rows)
        self.rows = 0
        return True


class RowQueue:
    """The queued requests of one model version, the rows they and the model calls under way
    hold, and the measured time per call that admission and shedding predict from."""

    def __init__(self, model: str, config: BatchingConfig) -> None:
        self.model = model
        self.requests: deque[QueuedRequest] = deque()
        self.queued_rows = 0
        self.computing_rows = 0  # rows in model calls under way
        self.busy = 0  # threads in a model call
        self._threads = config.inference_threads
        self._max_batch = config.max_batch_size if config.enabled else 0
        self._max_queue_rows = config.max_queue_rows
        self._admission_budget_s = config.timeout_ms / 1000 * ADMISSION_SHARE
        self._reserved_rows = 0  # admitted by declared rows, bodies not parsed yet
        self._reserved_requests = 0
        self._seconds_per_call = 0.0  # moving average over successful model calls
        self._latest_call_s = 0.0

    @property
    def arrival_is_idle(self) -> bool:
        """A request arriving now finds a thread free and the queue empty."""
        return not self.requests and self.busy < self._threads

    def admit(self, n: int, reservation: Reservation | None) -> None:
        """Raise the refusal for ``n`` more rows, or return when they are admitted.

        With a :class:`Reservation` of this queue the rows were admitted when they were
        reserved: only the row bound is checked again (the estimate may have been low).
        """
        admitted = reservation is not None and reservation.queue is self and reservation.release()
        refusal = self._over_queue_bound(n) if admitted else self._refusal(n)
        if refusal is not None:
            raise refusal

    def append(self, request: QueuedRequest) -> None:
        self.requests.append(request)
        self.queued_rows += len(request.rows)

    def remove(self, request: QueuedRequest) -> None:
        """Take an unanswered request's remaining rows out of the queue."""
        self.requests.remove(request)
        self.queued_rows -= request.remaining
        request.taken = len(request.rows)

    def reserve(self, n: int) -> Reservation:
        """Admit about ``n`` rows that are not parsed yet, or raise the refusal they would
        meet now. Reserved rows count as queued for every later admission until the
        reservation is submitted or released, so the requests admitted while their bodies
        are parsed are those the model can compute in time, and the rest are refused before
        their bodies cost anything."""
        refusal = self._refusal(n)
        if refusal is not None:
            raise refusal
        self._reserved_rows += n
        self._reserved_requests += 1
        return Reservation(self, n)

    def unreserve(self, n: int) -> None:
        self._reserved_rows -= n
        self._reserved_requests -= 1

    def _refusal(self, n: int) -> ModelserveError | None:
        """The error ``n`` more rows are refused with now, or None when they are admitted."""
        waiting = self.queued_rows + self._reserved_rows
        # A request bigger than the whole queue is still served when nothing waits.
        if not waiting:
            return None
        if (over := self._over_queue_bound(n)) is not None:
            return over
        ahead = self.computing_rows + waiting + n
        requests = len(self.requests) + self._reserved_requests + 1
        done_in_s = self._calls_for(ahead, requests) * self._seconds_per_call_now()
        if done_in_s > self._admission_budget_s:
            return QueueTooSlowError(self.model, waiting, done_in_s, self._admission_budget_s)
        return None

    def _over_queue_bound(self, n: int) -> ModelserveError | None:
        waiting = self.queued_rows + self._reserved_rows
        limit = self._max_queue_rows
        if waiting and waiting + n > limit:
            return OverloadedError(self.model, waiting, limit)
        return None

    def _calls_for(self, rows: int, requests: int) -> int:
        """Model calls until ``rows`` (in calls, then queued) are computed, the last of them
        in the ``requests``-th queued request: batches of ``max_batch_size``, or one call per
        request with batching off."""
        if self._max_batch:
            return math.ceil(rows / self._max_batch)
        return self.busy + requests

    def _seconds_per_call_now(self) -> float:
        """Wall seconds per model call per thread, the slower of the moving average and the
        latest (0 before a call has finished). Calls, not rows: under load they are full
        batches, and a small model's call costs about the same for 1 row or 64."""
        return max(self._seconds_per_call, self._latest_call_s) / self._threads

    def shed_the_late(self, now: float) -> None:
        """Answer 503 now to queued requests the current rate cannot compute before their
        deadline (they would get a 504 then); the ones after them move up."""
        per_call = self._seconds_per_call_now()
        rows_ahead, requests = self.computing_rows, 0
        for request in self.requests:
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
                    self.model, self.queued_rows, finish - now, request.deadline - now
                )
            )
            self.queued_rows -= request.remaining
            request.taken = len(request.rows)  # skipped when the queue reaches it

    def record_call(self, seconds: float) -> None:
        """One model call's time (called from its inference thread)."""
        self._latest_call_s = seconds
        if self._seconds_per_call <= 0:
            self._seconds_per_call = seconds
        else:
            self._seconds_per_call += _RATE_SMOOTHING * (seconds - self._seconds_per_call)
