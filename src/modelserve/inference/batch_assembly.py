"""A batch's way through one model call: taken from the head of the queue, its rows joined,
the call's outcome handed back to the event loop, checked, and scattered to its requests.

Up to ``max_batch_size`` rows are taken from the head of the queue. A request of more rows
than that is never coalesced: it goes alone, in calls of up to ``max_request_rows_per_call``
rows (one call for a typical large request: splitting it into small calls would only multiply
the per-call overhead it waits for). Rows past their deadline are dropped before computing and
answered ``QueueTimeoutError``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import numpy as np

from modelserve.errors import QueueTimeoutError
from modelserve.inference.row_queue import RowQueue, Slice
from modelserve.inference.types import Batch, RawOutput


def take_batch(
    queue: RowQueue,
    now: float,
    capacity: int | None,
    max_call: int,
    timeout_ms: float,
    record_queue_wait: Callable[[float], None],
) -> list[Slice]:
    """The next batch from the head of ``queue``: up to ``capacity`` rows (None: batching
    off, exactly one request per call), a job or a larger request alone."""
    batch: list[Slice] = []
    rows = 0
    requests = queue.requests
    while requests:
        request = requests[0]
        if request.future.done() or now > request.deadline:
            requests.popleft()
            queue.queued_rows -= request.remaining
            if not request.future.done():
                request.future.set_exception(QueueTimeoutError(timeout_ms))
            request.taken = len(request.rows)
            continue
        if request.job is not None or capacity is None:  # a job, or batching off: alone
            alone, take = True, request.remaining
        elif len(request.rows) > capacity:  # a large request: alone, in calls of its own
            alone, take = True, min(request.remaining, max_call)
        else:
            alone, take = False, min(request.remaining, capacity - rows)
            if take <= 0:
                break
        if alone and batch:
            break
        if not request.taken:
            request.started_at = now
            record_queue_wait(now - request.enqueued_at)
        batch.append(Slice(request, request.taken, request.taken + take))
        request.taken += take
        queue.queued_rows -= take
        rows += take
        if request.remaining == 0:
            requests.popleft()
        if alone:
            break
    return batch


def batch_rows(batch: list[Slice]) -> Batch:
    """The rows of ``batch`` as one array: a view of one request's rows, or a copy."""
    first = batch[0]
    if len(batch) == 1:
        return first.request.rows[first.start : first.stop]
    return np.concatenate([s.request.rows[s.start : s.stop] for s in batch])


def finish_on_loop(
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


def wrong_shape(output: RawOutput, size: int) -> str | None:
    """Why ``output`` cannot be the answer for ``size`` rows, or None when it can."""
    if output.probabilities is None and output.values is None:
        return "the model returned no output"
    for name, array in (("probabilities", output.probabilities), ("values", output.values)):
        if array is None:
            continue
        if array.ndim == 0 or len(array) != size or (name == "probabilities" and array.ndim != 2):
            return f"the model returned {name} of shape {array.shape} for a batch of {size} rows"
    return None


def scatter(batch: list[Slice], output: RawOutput) -> None:
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
            request.future.set_result(concat_outputs([p for _, p in request.parts]))


def concat_outputs(parts: list[RawOutput]) -> RawOutput:
    """The outputs of consecutive row ranges, as one."""
    probabilities = [p.probabilities for p in parts if p.probabilities is not None]
    values = [p.values for p in parts if p.values is not None]
    return RawOutput(
        probabilities=np.concatenate(probabilities) if probabilities else None,
        values=np.concatenate(values) if values else None,
    )
