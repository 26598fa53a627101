"""Per-version monitoring: what each answered request adds, and the periodic report.

The request path calls :meth:`VersionMonitor.observe` (or ``observe_failure``, and
``observe_out_of_range`` for values outside their ranges) once per request: a histogram
observation and copies into bounded ring buffers. Everything that costs more (PSI,
percentiles, most log lines) happens in :class:`MonitorLoop` or when GET /stats asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import structlog

from modelserve.observability import metrics
from modelserve.observability.drift import DriftReport, DriftWindow, FloatArray
from modelserve.observability.latency import LatencyWindow
from modelserve.observability.profile import MAX_PROFILED_FEATURES, ReferenceProfile
from modelserve.observability.throttle import LogThrottle
from modelserve.settings import DriftSettings

if TYPE_CHECKING:  # the inference layer imports this module, not the other way round
    from modelserve.inference.preprocess import RangeReport

log = structlog.get_logger(__name__)
RANGE_LOG_INTERVAL_S = 1.0
"""Per version, at most one ``feature_out_of_range`` line this often (the metric counts all)."""

PROCESS_TICK_S = 5.0
"""Longest time between refreshes of the process and drift gauges."""


class VersionMonitor:
    """Latency and drift state of one loaded model version, in this process."""

    def __init__(
        self,
        model: str,
        version: str,
        *,
        n_features: int,
        is_classifier: bool,
        profile: ReferenceProfile | None,
        settings: DriftSettings,
    ) -> None:
        self.model, self.version = model, version
        self.is_classifier = is_classifier
        self.profile = profile
        self.settings = settings
        self.drift = DriftWindow(min(n_features, MAX_PROFILED_FEATURES), settings.window)
        self.latency = LatencyWindow(settings.window)
        self._drifting: set[str] = set()
        self._record_duration = metrics.prediction_duration_recorder(model, version)
        self._log = structlog.get_logger(__name__, model=model, model_version=version)
        self._range_log = LogThrottle(RANGE_LOG_INTERVAL_S)

    def observe(
        self,
        matrix: FloatArray,
        seconds: float,
        labels: Sequence[str] | None = None,
        confidences: Sequence[float] | FloatArray | None = None,
        label_ids: npt.NDArray[np.intp] | None = None,
        label_names: Sequence[str] = (),
    ) -> None:
        """One successful request: its validated rows, server time, and (classifiers) the
        predicted label and confidence of each row (``label_ids``: see
        :meth:`DriftWindow.add`)."""
        self._record_duration(seconds)
        self.latency.add(seconds)
        if self.is_classifier:
            self.drift.add(matrix, labels, confidences, label_ids, label_names)
        else:
            self.drift.add(matrix)

    def observe_out_of_range(self, report: RangeReport) -> None:
        """A served request with values outside ``feature_ranges``: count every value; log one
        ``feature_out_of_range`` line per request, at most one per interval."""
        for feature, count in report.counts.items():
            metrics.record_out_of_range(self.model, self.version, feature, count)
        held_back = self._range_log.allow()
        if held_back is None:
            return
        example = report.example
        self._log.warning(
            "feature_out_of_range",
            rows=report.rows,
            counts=report.counts,
            row=example.row,
            feature=example.feature,
            value=example.value,
            low=example.low,
            high=example.high,
            requests_not_logged=held_back,
        )

    def observe_failure(self, code: str, *, client_fault: bool) -> None:
        """One request that failed after routing (its error code is counted by metrics);
        ``client_fault`` when the request was at fault (bad input), not the server."""
        self.latency.add_error(code, client_fault=client_fault)

    def refresh(self) -> DriftReport:
        """Compute the drift figures, publish them as gauges, warn when a PSI crosses over."""
        report = self.drift.report(self.profile, self.settings.min_rows)
        metrics.record_drift(
            self.model,
            self.version,
            report.window_rows,
            report.psi,
            report.class_mix_shift,
            report.mean_confidence,
        )
        threshold = self.settings.psi_threshold
        for feature, value in report.psi.items():
            if value > threshold and feature not in self._drifting:
                self._drifting.add(feature)
                self._log.warning(
                    "drift_detected",
                    feature=feature,
                    psi=value,
                    psi_threshold=threshold,
                    window_rows=report.window_rows,
                )
            elif value <= threshold and feature in self._drifting:
                self._drifting.discard(feature)
                self._log.info(
                    "drift_recovered",
                    feature=feature,
                    psi=value,
                    psi_threshold=threshold,
                )
        return report

    def log_period(self, period_s: float) -> None:
        """Write this period's ``latency_stats`` (when there was traffic) and ``drift_stats``."""
        summary = self.latency.take()
        if summary.count:
            self._log.info(
                "latency_stats",
                count=summary.count,
                errors=summary.errors,
                error_rate=round(summary.error_rate, 6),
                client_errors=summary.client_errors,
                client_error_rate=round(summary.client_error_rate, 6),
                shed=summary.shed,
                p50_ms=summary.p50_ms,
                p95_ms=summary.p95_ms,
                p99_ms=summary.p99_ms,
                period_s=round(period_s, 3),
                pid=os.getpid(),
            )
        report = self.refresh()
        if report.window_rows:
            self._log.info(
                "drift_stats",
                window_rows=report.window_rows,
                psi=report.psi,
                max_psi=max(report.psi.values(), default=None),
                class_mix=report.class_mix,
                class_mix_shift=report.class_mix_shift,
                mean_confidence=report.mean_confidence,
                has_profile=self.profile is not None,
                pid=os.getpid(),
            )


class MonitorLoop:
    """The periodic task: refresh gauges every few seconds, log every ``interval_s``."""

    def __init__(
        self, monitors: Callable[[], Iterable[VersionMonitor]], settings: DriftSettings
    ) -> None:
        self._monitors = monitors
        self._interval_s = settings.interval_s
        self._tick_s = min(settings.interval_s, PROCESS_TICK_S)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run on the current event loop until :meth:`stop`."""
        metrics.record_process()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="monitor-loop")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        last_log = time.monotonic()
        while True:
            await asyncio.sleep(self._tick_s)
            try:
                now = time.monotonic()
                metrics.record_process()
                due = now - last_log >= self._interval_s * 0.999
                for monitor in self._monitors():
                    if due:
                        monitor.log_period(now - last_log)
                    else:
                        monitor.refresh()
                if due:
                    last_log = now
            except Exception as exc:  # the loop must outlive a bad tick
                log.error("monitor_tick_failed", exc_info=exc)
