"""InferenceResult: what the core answers for one request, whichever transport asked."""

from __future__ import annotations

from dataclasses import dataclass

from modelserve.inference.types import Outputs, OutputSpec


@dataclass(frozen=True, slots=True)
class InferenceResult:
    """The outputs of one request's rows, and which version computed them."""

    model: str
    model_version: str
    outputs: Outputs
    spec: OutputSpec
    """What the version answers (probability column names, default top_k) for formatting."""
    latency_ms: float
    cache_status: str | None = None
    """HIT, MISS or PARTIAL when a prediction cache is configured."""
