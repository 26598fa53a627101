"""A batcher's large-request jobs (:mod:`.large`): each runs alone in an inference thread,
makes its model calls there, and is answered on the event loop.

A job is queued, admitted, timed out and shed like any request; when the queue reaches it,
:meth:`LargeJobs.start` hands it to a thread. Its model call is timed, checked and counted as
a batch's is, in calls of up to ``max_request_rows_per_call`` rows.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from modelserve.errors import (
    EmptyBatchError,
    ModelserveError,
    PredictionFailedError,
    ShuttingDownError,
)
from modelserve.inference.batch_assembly import concat_outputs, finish_on_loop, wrong_shape
from modelserve.inference.row_queue import QueuedRequest, RowQueue
from modelserve.inference.types import Batch, PredictFn, RawOutput
from modelserve.observability.metrics import BatcherRecorder


class _AbandonedError(Exception):
    """A job's request was answered already (deadline, client gone): nothing more to compute."""


class LargeJobs:
    """Starts one batcher's jobs in its threads and answers them when they finish."""

    def __init__(
        self,
        queue: RowQueue,
        executor: ThreadPoolExecutor,
        timed_predict: PredictFn,
        log_failure: Callable[..., None],
        recorder: BatcherRecorder,
        max_call: int,
        after_job: Callable[[asyncio.AbstractEventLoop], None],
    ) -> None:
        self._queue = queue
        self._executor = executor
        self._timed_predict = timed_predict
        self._log_failure = log_failure
        self._metrics = recorder
        self._max_call = max_call
        self._after_job = after_job

    def start(self, loop: asyncio.AbstractEventLoop, request: QueuedRequest) -> None:
        size = len(request.rows)
        self._queue.busy += 1
        self._queue.computing_rows += size
        context = request.context or contextvars.copy_context()
        predict = functools.partial(self._predict, request)
        call = self._executor.submit(context.run, request.job, predict)  # type: ignore[arg-type]  # job is set
        finish = functools.partial(self._finish, loop, request, size)
        call.add_done_callback(functools.partial(finish_on_loop, loop, finish))

    def _predict(self, request: QueuedRequest, rows: Batch) -> RawOutput:
        """A job's model call, in its inference thread: in calls of up to
        ``max_request_rows_per_call`` rows, timed, checked and counted as a batch's calls."""
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
            if (wrong := wrong_shape(output, len(part))) is not None:
                self._log_failure(len(part), reason=wrong)
                raise PredictionFailedError()
            self._metrics.batch_rows(len(part))
            self._metrics.inference_seconds(time.perf_counter() - started)
            parts.append(output)
        if request.future.done():
            raise _AbandonedError()
        return parts[0] if len(parts) == 1 else concat_outputs(parts)

    def _finish(
        self,
        loop: asyncio.AbstractEventLoop,
        request: QueuedRequest,
        size: int,
        call: Future[object],
    ) -> None:
        self._queue.busy -= 1
        self._queue.computing_rows -= size
        if not request.future.done():
            if call.cancelled():  # the executor was shut down before the job began
                request.future.set_exception(ShuttingDownError())
            elif (exc := call.exception()) is not None:
                request.future.set_exception(exc)
            else:
                request.future.set_result(call.result())
        self._after_job(loop)
