"""A large request as one off-loop job: parse → check → cache → predict → postprocess →
count → serialise, all in the model's inference thread.

A request body of :data:`LARGE_BODY_BYTES` or more is handed, once its bytes are read, to
:meth:`~modelserve.inference.core.InferenceCore.infer_large` with a :class:`Pipeline` of the
transport's three functions: ``parse`` (body → the transport's request), ``decode`` (that
request → the batch for the routed version's schema) and ``encode`` (the result → the answer
bytes). The batcher queues the request as a job of about :attr:`Pipeline.estimate_rows` rows,
with the same admission control, deadlines and overload refusals as any request, and never
coalesces it with small ones; when a thread is free the job runs :func:`run_job` there, which
calls the model through the batcher (timed, checked and counted as usual). The event loop only
routes the request, and afterwards feeds the drift and latency windows (shared with the small
requests the loop computes), schedules a shadow copy and writes the bytes.

Each hop between the loop and a thread costs a context switch or two (on a busy machine
they dominated a 1000-row request's loop time), and a stage on the loop holds every other
request for its whole duration: one job avoids both. While a job runs the interpreter switches
threads more often (:data:`SWITCH_INTERVAL_S`) and the job hands the GIL over between its
stages, so the loop keeps answering.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from modelserve.inference.cache import PredictionCache
from modelserve.inference.formatting import check_top_k
from modelserve.inference.preprocess import FeatureSchema, RangeReport
from modelserve.inference.result import InferenceResult
from modelserve.inference.types import Batch, Outputs, PredictFn
from modelserve.inference.version import LoadedVersion
from modelserve.observability import metrics

LARGE_BODY_BYTES: Final = 16 * 1024
"""A request body of this many bytes or more is computed as one job. Its rows are not known
before it is parsed, but they are bounded by its bytes: a 128-row batch of four numbers is
about 4 KB in binary and 3-10 KB in JSON, so what crosses this line is a batch whose per-row
stages cost more than the job's single thread hop."""

SWITCH_INTERVAL_S: Final = 0.0005
"""The interpreter's switch interval while a large job runs (default 5 ms, restored after the
last one): a job is a few milliseconds of mostly Python holding the GIL, and the event loop,
asking for it to answer a probe or a small request, would otherwise wait up to 5 ms each time.
Split into separate thread jobs, the stages left the loop gaps between them; one job leaves
none."""

_Parsed = TypeVar("_Parsed")
_Answer = TypeVar("_Answer")


@dataclass(frozen=True, slots=True)
class Pipeline(Generic[_Parsed, _Answer]):
    """A transport's part of a large request: its body in, its answer's bytes out."""

    parse: Callable[[], _Parsed]
    """Read the body (its errors are the request's own: raised as they are, and not counted
    as a failure of the model)."""
    decode: Callable[[_Parsed, FeatureSchema], Batch]
    """The batch for the routed version's schema (raise ``InvalidInputError``)."""
    encode: Callable[[_Parsed, InferenceResult], _Answer]
    """The answer, serialised."""
    estimate_rows: Callable[[FeatureSchema], int]
    """About how many rows the body holds, before it is parsed (for admission)."""


@dataclass(slots=True)
class Progress:
    """Whether the job failed on parsing the body: the request's fault, not the version's."""

    parse_failed: bool = False


@dataclass(frozen=True, slots=True)
class JobOutcome(Generic[_Answer]):
    result: InferenceResult
    batch: Batch
    answer: _Answer
    seconds: float
    range_report: RangeReport | None
    cache_counts: tuple[int, int] | None
    """(hits, misses) when a cache is configured."""


class _ShortSwitchInterval(contextlib.ContextDecorator):
    """:data:`SWITCH_INTERVAL_S` while any job runs; the setting is process-wide, so the first
    job to start sets it and the last to end restores what was there."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._previous = 0.0

    def __enter__(self) -> None:
        with self._lock:
            if self._running == 0:
                self._previous = sys.getswitchinterval()
                sys.setswitchinterval(SWITCH_INTERVAL_S)
            self._running += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._running -= 1
            if self._running == 0:
                sys.setswitchinterval(self._previous)


_short_switch_interval = _ShortSwitchInterval()


@_short_switch_interval
def run_job(
    pipeline: Pipeline[_Parsed, _Answer],
    entry: LoadedVersion,
    cache: PredictionCache | None,
    top_k: int | None,
    started: float,
    progress: Progress,
    predict: PredictFn,
) -> JobOutcome[_Answer]:
    """Every stage of one large request, in the inference thread (see the module docstring);
    ``cache`` is None or has a local back-end."""
    try:
        parsed = pipeline.parse()
    except Exception:
        progress.parse_failed = True
        raise
    _let_the_loop_run()
    check_top_k(entry.spec, top_k)
    batch = entry.schema.check(pipeline.decode(parsed, entry.schema))
    report = entry.schema.out_of_range(batch)
    _let_the_loop_run()
    postprocess = entry.prepared.postprocessor.apply
    status, counts = None, None
    if cache is None:
        outputs = postprocess(predict(batch))
    else:
        lookup = cache.lookup_local(entry.name, entry.version, entry.fingerprint, entry.spec, batch)
        computed = Outputs()
        if lookup.missing:
            computed = postprocess(predict(batch if not lookup.hits else batch[lookup.missing]))
        outputs = cache.complete_local(lookup, computed)
        status, counts = lookup.status.value, (lookup.hits, len(lookup.missing))
        metrics.record_cache(entry.name, entry.version, *counts)
    seconds = time.perf_counter() - started
    _let_the_loop_run()
    record_outputs(entry, outputs)
    result = InferenceResult(entry.name, entry.version, outputs, entry.spec, seconds * 1000, status)
    return JobOutcome(result, batch, pipeline.encode(parsed, result), seconds, report, counts)


def _let_the_loop_run() -> None:
    """Hand the GIL over between stages: the event loop, waiting for it to answer a probe or
    a small request, gets it now instead of at the next switch interval (5 ms) or after a C
    call that never releases it (orjson on a large body)."""
    time.sleep(0)


def record_outputs(entry: LoadedVersion, outputs: Outputs) -> None:
    """Count one answered request's predictions (thread-safe: Prometheus metrics only)."""
    labels = outputs.labels
    if labels is not None:
        confidences = outputs.confidence_values()
        metrics.record_predictions(
            entry.name, entry.version, labels, () if confidences is None else confidences,
            outputs.label_ids, outputs.label_names,
        )  # fmt: skip
    elif outputs.values is not None:
        values = outputs.values
        metrics.record_regression(
            entry.name, entry.version, values.tolist() if values.ndim == 1 else []
        )
