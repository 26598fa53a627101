"""Per-version inference statistics (the statistics extension), read from the Prometheus
metrics so that under several workers they cover every worker, as ``/stats`` does."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.metrics_core import Metric

_NS = 1e9


@dataclass(frozen=True, slots=True)
class Duration:
    count: int = 0
    ns: int = 0


@dataclass(frozen=True, slots=True)
class VersionStatistics:
    name: str
    version: str
    inference_count: int
    """Rows predicted (Triton counts inferences per batch element)."""
    execution_count: int
    """Model calls (batches)."""
    success: Duration
    fail: Duration
    queue: Duration
    compute_infer: Duration


def version_statistics(
    families: Iterable[Metric], versions: Iterable[tuple[str, str]]
) -> list[VersionStatistics]:
    """Statistics of each (model, version), from one collection of the metric families."""
    samples: dict[tuple[str, str, str], float] = {}
    for family in families:
        for sample in family.samples:
            key = (
                sample.name,
                sample.labels.get("model", ""),
                sample.labels.get("model_version", ""),
            )
            samples[key] = samples.get(key, 0.0) + sample.value

    def value(name: str, model: str, version: str) -> float:
        return samples.get((name, model, version), 0.0)

    def duration(metric: str, model: str, version: str) -> Duration:
        return Duration(
            int(value(f"{metric}_count", model, version)),
            round(value(f"{metric}_sum", model, version) * _NS),
        )

    return [
        VersionStatistics(
            name=model,
            version=version,
            inference_count=int(value("modelserve_rows_predicted_total", model, version)),
            execution_count=int(
                value("modelserve_inference_duration_seconds_count", model, version)
            ),
            success=duration("modelserve_prediction_duration_seconds", model, version),
            fail=Duration(int(value("modelserve_inference_errors_total", model, version))),
            queue=duration("modelserve_queue_wait_seconds", model, version),
            compute_infer=duration("modelserve_inference_duration_seconds", model, version),
        )
        for model, version in versions
    ]
