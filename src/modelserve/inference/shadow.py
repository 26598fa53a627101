"""Shadow mode: mirror live requests to a model's shadow version and compare the answers.

After a live request has its answer, :meth:`ShadowRunner.mirror` schedules an asyncio task
that sends the same validated batch through the shadow version's own pipeline stages
(:meth:`~modelserve.inference.version.LoadedVersion.compute`: batch → predict → unbatch →
postprocess) and compares row by row: classifiers agree when the labels are equal, regressors
when ``|live - shadow| <= routing.shadow_tolerance`` (the largest |Δ| is logged either way).
When both versions name their features in different orders, the columns are reordered by
name; a shadow that takes other features is counted as ``error``.

The live request never waits for, and never sees, the shadow: ``mirror`` only creates a task.
Work is bounded by ``routing.shadow_max_pending`` tasks per model; beyond it the copy is
dropped. Every mirrored row is counted once in ``modelserve_shadow_comparisons_total`` as
``agree``, ``disagree``, ``error`` (the shadow raised, timed out or is not loaded) or
``dropped`` (too many pending, or the shadow version's queue is full).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from modelserve.errors import InvalidInputError, OverloadedError
from modelserve.inference.registry import ModelRegistry
from modelserve.inference.types import Batch, Outputs
from modelserve.inference.version import LoadedVersion
from modelserve.observability import metrics

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Comparison:
    """How a shadow's answers for one request compare with the live ones."""

    agreed: int
    disagreed: int
    max_abs_delta: float | None
    """Largest |live - shadow| over numeric rows; None when every row is a label."""
    example: tuple[object, object] | None
    """(live, shadow) answers of the first row that disagrees."""


def compare(live: Outputs, shadow: Outputs, tolerance: float) -> Comparison:
    """Compare outputs row by row: equal labels, or numbers within ``tolerance``."""
    if len(live) != len(shadow):
        raise ValueError(f"shadow answered {len(shadow)} rows for {len(live)}")
    mine, theirs = _answers(live), _answers(shadow)
    agreed = 0
    max_delta: float | None = None
    example: tuple[object, object] | None = None
    for ours, other in zip(mine, theirs, strict=True):
        delta = _abs_delta(ours, other)
        if delta is None:
            same = str(ours) == str(other)
        else:
            same = delta <= tolerance
            max_delta = delta if max_delta is None else max(max_delta, delta)
        if same:
            agreed += 1
        elif example is None:
            example = (ours, other)
    return Comparison(agreed, len(live) - agreed, max_delta, example)


def _answers(outputs: Outputs) -> list[object]:
    """Each row's answer: its label, or its value(s)."""
    if outputs.labels is not None:
        return list(outputs.labels)
    return [] if outputs.values is None else list(outputs.values.tolist())


def _abs_delta(live: object, shadow: object) -> float | None:
    """|live - shadow| for numbers (the largest for multi-output rows); None for labels."""
    if isinstance(live, float) and isinstance(shadow, float):
        return abs(live - shadow)
    if (
        isinstance(live, list)
        and isinstance(shadow, list)
        and len(live) == len(shadow)
        and all(isinstance(v, float) for v in [*live, *shadow])
    ):
        return max((abs(a - b) for a, b in zip(live, shadow, strict=True)), default=0.0)
    return None  # labels, or answers of different kinds: compared as text


def _columns_for(shadow: LoadedVersion, live: LoadedVersion, batch: Batch) -> Batch:
    """``batch`` (in the live version's feature order) in the shadow version's order."""
    ours, theirs = live.schema.feature_names, shadow.schema.feature_names
    if ours is None or theirs is None or ours == theirs:
        return batch
    if sorted(ours) != sorted(theirs):
        raise InvalidInputError("the shadow version takes other features than the live one")
    return batch[:, [ours.index(name) for name in theirs]]


class ShadowRunner:
    """Mirrors live traffic to shadow versions off the request path. One per process."""

    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry
        self._pending: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def pending(self, model: str) -> int:
        """Shadow requests of ``model`` in progress."""
        return self._pending.get(model, 0)

    def mirror(self, live: LoadedVersion, batch: Batch, outputs: Outputs) -> None:
        """Schedule the shadow copy of a finished live request. Never raises, never waits."""
        router = self._registry.routers.get(live.name)
        shadow = router.shadow if router is not None else None
        if router is None or shadow is None or shadow == live.version:
            return
        try:
            if self.pending(live.name) >= router.config.shadow_max_pending:
                metrics.record_shadow(live.name, live.version, shadow, "dropped", len(outputs))
                return
            tolerance = router.config.shadow_tolerance
            task = asyncio.get_running_loop().create_task(
                self._run(live, shadow, tolerance, batch, outputs),
                name=f"shadow-{live.name}-{shadow}",
            )
        except Exception as exc:  # the live answer must go out whatever happens here
            log.error("shadow_mirror_failed", model=live.name, exc_info=exc)
            return
        self._pending[live.name] = self.pending(live.name) + 1
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._finished(live.name, done))

    async def close(self) -> None:
        """Cancel every pending shadow request (at shutdown: shadows never delay a drain)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _finished(self, model: str, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._pending[model] -= 1

    async def _run(
        self,
        live: LoadedVersion,
        shadow_version: str,
        tolerance: float,
        batch: Batch,
        live_outputs: Outputs,
    ) -> None:
        model, live_version, rows = live.name, live.version, len(live_outputs)

        def count(result: str, n: int) -> None:
            if n:
                metrics.record_shadow(model, live_version, shadow_version, result, n)

        try:
            outputs = await self._compute(live, shadow_version, batch)
            result = compare(live_outputs, outputs, tolerance)
        except OverloadedError:
            count("dropped", rows)
            return
        except Exception as exc:
            count("error", rows)
            log.warning(
                "shadow_failed",
                model=model,
                live_version=live_version,
                shadow_version=shadow_version,
                code=getattr(exc, "code", type(exc).__name__),
                detail=str(exc),
            )
            return
        count("agree", result.agreed)
        count("disagree", result.disagreed)
        log.info(
            "shadow_compared",
            model=model,
            live_version=live_version,
            shadow_version=shadow_version,
            rows=rows,
            agreed=result.agreed,
            disagreed=result.disagreed,
            max_abs_delta=result.max_abs_delta,
            live_prediction=result.example[0] if result.example else None,
            shadow_prediction=result.example[1] if result.example else None,
        )

    async def _compute(self, live: LoadedVersion, version: str, batch: Batch) -> Outputs:
        with self._registry.route(live.name, version, None) as shadow:
            return await shadow.compute(shadow.schema.check(_columns_for(shadow, live, batch)))
