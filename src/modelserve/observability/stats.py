"""The numbers behind GET /stats and the dashboard, read from the Prometheus metrics.

Reading the metrics (rather than per-process state) keeps the figures right under gunicorn:
in multiprocess mode they are aggregated over every worker, whichever worker answers. Rates,
percentiles, class mix and the confidence histogram cover a recent window: the difference
between now and the newest snapshot at least ``window_s`` old, as Prometheus' ``rate()`` and
``histogram_quantile()`` would compute them. Snapshots are taken on a timer (every
``SAMPLE_INTERVAL_S``, see :meth:`StatsSampler.run`), not only when /stats is read, so the
window is ``window_s`` to ``window_s + SAMPLE_INTERVAL_S`` long (shorter only in the first
minute after start) and the document says exactly how long in ``window_s``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.metrics_core import Metric

from modelserve.errors import ModelserveError
from modelserve.observability import metrics
from modelserve.observability.profile import ReferenceProfile

STATS_WINDOW_S = 60.0
MIN_SNAPSHOT_SPACING_S = 1.0
SAMPLE_INTERVAL_S = 5.0

Labels = dict[str, str]
Where = Callable[[Labels], bool]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every ``modelserve_`` sample at one moment: sample name → [(labels, value)]."""

    taken_at: float
    samples: dict[str, list[tuple[Labels, float]]]

    def total(self, name: str, where: Where | None = None) -> float:
        return sum(v for labels, v in self.samples.get(name, ()) if where is None or where(labels))

    def label_values(self, name: str, label: str, where: Where | None = None) -> set[str]:
        return {
            labels[label]
            for labels, _ in self.samples.get(name, ())
            if label in labels and (where is None or where(labels))
        }


def take_snapshot(families: Iterable[Metric], now: float | None = None) -> Snapshot:
    """Keep the ``modelserve_`` samples of ``families`` (``_created`` timestamps dropped)."""
    samples: dict[str, list[tuple[Labels, float]]] = {}
    for family in families:
        if not family.name.startswith("modelserve_"):
            continue
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return Snapshot(time.monotonic() if now is None else now, samples)


@dataclass(frozen=True, slots=True)
class Window:
    """The change between two snapshots."""

    base: Snapshot
    current: Snapshot

    @property
    def seconds(self) -> float:
        return max(self.current.taken_at - self.base.taken_at, 1e-9)

    def delta(self, name: str, where: Where | None = None) -> float:
        now = self.current.total(name, where)
        before = self.base.total(name, where)
        return now - before if now >= before else now  # a reset (worker restart) starts over

    def rate(self, name: str, where: Where | None = None) -> float:
        return self.delta(name, where) / self.seconds

    def by_label(self, name: str, label: str, where: Where | None = None) -> dict[str, float]:
        out = {}
        for value in sorted(self.current.label_values(name, label, where)):
            count = self.delta(name, _and(where, _is(label, value)))
            if count > 0:
                out[value] = count
        return out

    def buckets(self, histogram: str, where: Where | None = None) -> list[tuple[float, float]]:
        """Cumulative (upper bound, count) pairs of a histogram's change, ascending."""
        name = histogram + "_bucket"
        bounds = sorted(self.current.label_values(name, "le", where), key=float)
        return [(float(le), self.delta(name, _and(where, _is("le", le)))) for le in bounds]

    def quantile(
        self, histogram: str, q: float, where: Where | None = None, *, counts: bool = False
    ) -> float | None:
        return bucket_quantile(self.buckets(histogram, where), q, counts=counts)


def bucket_quantile(
    buckets: Sequence[tuple[float, float]], q: float, *, counts: bool = False
) -> float | None:
    """Quantile ``q`` from cumulative buckets, interpolated as ``histogram_quantile`` does.

    ``counts``: the observations are whole numbers of at least 1 (rows in a batch), so a bucket
    ``(lower, bound]`` holds ``lower + 1 .. bound`` and the estimate is one of those. Linear
    interpolation from 0 would put the p95 of batches that all hold 1 row at 0.95, below their
    mean of 1.
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower  # above the highest finite bucket: its bound is all we know
            if count == below:
                return bound
            fraction = (rank - below) / (count - below)
            if counts:
                return min(bound, lower + max(1, math.ceil((bound - lower) * fraction)))
            return lower + (bound - lower) * fraction
        lower, below = bound, count
    return lower


class StatsSampler:
    """Remembers recent snapshots (bounded) so each summary covers about ``window_s``."""

    def __init__(self, window_s: float = STATS_WINDOW_S, start: Snapshot | None = None) -> None:
        """``start`` (default: the metrics now) is the base until a newer snapshot is kept."""
        self.window_s = window_s
        first = take_snapshot(metrics.collect()) if start is None else start
        self._history: deque[Snapshot] = deque([first])

    @property
    def kept(self) -> int:
        """Snapshots held (bounded by ``window_s / MIN_SNAPSHOT_SPACING_S`` + 2)."""
        return len(self._history)

    def window(self, current: Snapshot) -> Window:
        """From the newest snapshot at least ``window_s`` old, else the oldest kept (the start)."""
        self._trim(current.taken_at)
        base = self._history[0]
        self.keep(current)
        return Window(base, current)

    def keep(self, snapshot: Snapshot) -> None:
        """Remember ``snapshot`` as a future window start (at most one per spacing)."""
        if snapshot.taken_at - self._history[-1].taken_at >= MIN_SNAPSHOT_SPACING_S:
            self._history.append(snapshot)

    async def run(self, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        """Take a snapshot every ``interval_s`` until cancelled (the lifespan runs this).

        Without it, a /stats read after a quiet spell would measure from the last read, however
        long ago: windows of two minutes labelled as one.
        """
        while True:
            await asyncio.sleep(interval_s)
            snapshot = take_snapshot(metrics.collect())
            self._trim(snapshot.taken_at)
            self.keep(snapshot)

    def _trim(self, now: float) -> None:
        """Drop snapshots older than the newest one at least ``window_s`` before ``now``."""
        history = self._history
        cutoff = now - self.window_s
        while len(history) >= 2 and history[1].taken_at <= cutoff:
            history.popleft()


@dataclass(frozen=True, slots=True)
class VersionFacts:
    """What the registry knows of a version, beside its metrics."""

    model: str
    version: str
    format: str
    status: str
    task: str | None
    profile: ReferenceProfile | None
    feature_types: dict[str, str] | None = None
    """Typed features: name → type (``category``, ``int``...); ``None`` for float features."""
    category_shares: dict[str, dict[str, float]] | None = None
    """This worker's live share of each category bin, per categorical feature."""


def summarize(
    window: Window,
    versions: Sequence[VersionFacts],
    psi_threshold: float,
    monitoring_routes: frozenset[str],
) -> dict[str, Any]:
    """The /stats document: server-wide traffic figures and one entry per model version.

    ``monitoring_routes`` (route labels: probes, scrapes, the dashboard's own polling) are
    left out of the traffic figures; the app passes its route table's.
    """
    traffic: Where = lambda labels: labels.get("route") not in monitoring_routes  # noqa: E731
    requests = window.delta("modelserve_http_requests_total", traffic)
    by_status = window.by_label("modelserve_http_requests_total", "status", traffic)
    server_errors = sum(n for status, n in by_status.items() if status.startswith("5"))
    client_errors = sum(n for status, n in by_status.items() if status.startswith("4"))
    shed = window.delta("modelserve_requests_shed_total")
    duration = "modelserve_http_request_duration_seconds"
    return {
        "window_s": round(window.seconds, 3),
        "workers": int(window.current.total("modelserve_workers")) or 1,
        "traffic": {
            "requests": int(requests),
            "requests_total": int(window.current.total("modelserve_http_requests_total", traffic)),
            "requests_per_s": _round(requests / window.seconds),
            "rows_per_s": _round(window.rate("modelserve_rows_predicted_total")),
            "latency_ms": _percentiles(window, duration, traffic),
            "error_rate": _ratio(server_errors, requests),
            "client_error_rate": _ratio(client_errors, requests),
            "shed_rate": _ratio(shed, requests),
            "rate_limited": int(window.delta("modelserve_rate_limited_total")),
            "status": {k: int(v) for k, v in by_status.items()},
        },
        "models": [_version(window, facts, psi_threshold) for facts in versions],
    }


def _version(window: Window, facts: VersionFacts, psi_threshold: float) -> dict[str, Any]:
    mine: Where = lambda labels: (  # noqa: E731
        labels.get("model") == facts.model and labels.get("model_version") == facts.version
    )
    predictions = window.delta("modelserve_predictions_total", mine)
    errors_by_code = window.by_label("modelserve_inference_errors_total", "code", mine)
    attempts = predictions + sum(errors_by_code.values())
    client_errors = sum(n for code, n in errors_by_code.items() if _is_client_error(code))
    server_errors = sum(
        n
        for code, n in errors_by_code.items()
        if not _is_client_error(code) and code != "overloaded"
    )
    hits = window.delta("modelserve_cache_requests_total", _and(mine, _is("result", "hit")))
    misses = window.delta("modelserve_cache_requests_total", _and(mine, _is("result", "miss")))
    calls = window.delta("modelserve_batch_rows_count", mine)
    classes = window.by_label("modelserve_predicted_class_total", "label", mine)
    confidences = window.buckets("modelserve_prediction_confidence", mine)
    confidence_count = window.delta("modelserve_prediction_confidence_count", mine)
    profile = facts.profile
    psi = {
        labels["feature"]: _round(value, 4)
        for labels, value in window.current.samples.get("modelserve_drift_feature_psi", ())
        if mine(labels)
    }
    return {
        "model": facts.model,
        "model_version": facts.version,
        "format": facts.format,
        "status": facts.status,
        "task": facts.task,
        "predictions": int(predictions),
        "predictions_total": int(window.current.total("modelserve_predictions_total", mine)),
        "predictions_per_s": _round(predictions / window.seconds),
        "rows_per_s": _round(window.rate("modelserve_rows_predicted_total", mine)),
        "latency_ms": _percentiles(window, "modelserve_prediction_duration_seconds", mine),
        "error_rate": _ratio(server_errors, attempts),
        "client_error_rate": _ratio(client_errors, attempts),
        "errors": {code: int(n) for code, n in errors_by_code.items()},
        "shed_rate": _ratio(window.delta("modelserve_requests_shed_total", mine), attempts),
        "timeouts": int(window.delta("modelserve_timeouts_total", mine)),
        "cache_hit_rate": _ratio(hits, hits + misses),
        "queue_rows": int(window.current.total("modelserve_queue_rows", mine)),
        "batch_rows": {
            "mean": _round(window.delta("modelserve_batch_rows_sum", mine) / calls)
            if calls
            else None,
            "p95": _round(window.quantile("modelserve_batch_rows", 0.95, mine, counts=True)),
            "calls": int(calls),
        },
        "class_mix": _shares(classes),
        "confidence": {
            "mean": _round(
                window.delta("modelserve_prediction_confidence_sum", mine) / confidence_count, 4
            )
            if confidence_count
            else None,
            "histogram": _histogram(confidences),
        },
        "drift": {
            "has_profile": profile is not None,
            "psi": psi,
            "features": _features(facts, psi),
            "psi_threshold": psi_threshold,
            "class_mix_shift": _gauge(window, "modelserve_drift_class_mix_shift", mine),
            "mean_confidence": _gauge(window, "modelserve_drift_mean_confidence", mine),
            "window_rows": int(window.current.total("modelserve_drift_window_rows", mine)),
            "reference_class_mix": profile.class_mix if profile else None,
            "reference_mean_confidence": profile.mean_confidence if profile else None,
        },
    }


def _features(facts: VersionFacts, psi: dict[str, float | None]) -> list[dict[str, Any]]:
    """Per feature: its type, kind, PSI and, for a categorical one, reference and live shares.

    Listed for typed versions and for versions with a profile (their profiled features).
    """
    profiled = {f.name: f for f in facts.profile.features} if facts.profile else {}
    types = facts.feature_types or dict.fromkeys(profiled, "float")
    live = facts.category_shares or {}
    out: list[dict[str, Any]] = []
    for name, kind in types.items():
        feature = profiled.get(name)
        entry: dict[str, Any] = {
            "name": name,
            "type": kind,
            "kind": feature.kind if feature else None,
            "psi": psi.get(name),
            "reference_missing_share": feature.missing if feature else None,
        }
        if feature is not None and feature.kind == "categorical":
            entry["reference_shares"] = feature.shares()
            entry["live_shares"] = live.get(name)
        out.append(entry)
    return out


def _client_error_codes() -> frozenset[str]:
    def subclasses(cls: type[ModelserveError]) -> list[type[ModelserveError]]:
        return [cls, *(sub for child in cls.__subclasses__() for sub in subclasses(child))]

    return frozenset(c.code for c in subclasses(ModelserveError) if c.kind.is_client_error)


_CLIENT_ERROR_CODES = _client_error_codes()


def _is_client_error(code: str) -> bool:
    """The request's fault (4xx: bad input, too large...), not the server's."""
    return code in _CLIENT_ERROR_CODES


def _percentiles(window: Window, histogram: str, where: Where) -> dict[str, float | None]:
    return {
        name: _round(None if (v := window.quantile(histogram, q, where)) is None else v * 1000)
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
    }


def _histogram(cumulative: list[tuple[float, float]]) -> list[dict[str, float | int | None]]:
    out: list[dict[str, float | int | None]] = []
    below = 0.0
    for bound, count in cumulative:
        out.append({"le": None if math.isinf(bound) else bound, "count": int(count - below)})
        below = count
    return out


def _shares(counts: dict[str, float]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: round(v / total, 4) for k, v in counts.items()} if total else {}


def _gauge(window: Window, name: str, where: Where) -> float | None:
    values = [v for labels, v in window.current.samples.get(name, ()) if where(labels)]
    return _round(max(values)) if values else None


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


def _is(label: str, value: str) -> Where:
    return lambda labels: labels.get(label) == value


def _and(first: Where | None, second: Where) -> Where:
    if first is None:
        return second
    return lambda labels: first(labels) and second(labels)
