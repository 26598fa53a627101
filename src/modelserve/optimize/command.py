"""The whole ``modelserve optimize`` run: convert, verify, time, and write only if verified."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from modelserve.inference.artifact import Artifact
from modelserve.inference.loader import load_runtime
from modelserve.inference.profiler import read_table
from modelserve.inference.runtimes.onnx import OnnxRuntime
from modelserve.optimize.convert import Conversion, convert_to_onnx
from modelserve.optimize.speed import Timing, compare
from modelserve.optimize.verify import Verification, draw_sample, verify
from modelserve.settings import ModelConfig

DEFAULT_TOLERANCE = 1e-5
"""Probabilities may differ this much: ONNX Runtime sums the trees in float32."""
DEFAULT_ROWS = 2000


@dataclass(frozen=True, slots=True)
class OptimizeReport:
    """What one run found; ``written`` is False when verification failed."""

    conversion: Conversion
    verification: Verification
    timings: list[Timing]
    sample_source: str
    written: bool


def optimize_model(
    model: Path,
    out: Path,
    *,
    data: Path | None = None,
    rows: int = DEFAULT_ROWS,
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 0,
    sha256: str | None = None,
    timed: bool = True,
) -> OptimizeReport:
    """Convert ``model`` to ONNX, verify it on a sample, time both (unless ``timed`` is
    False), write ``out`` if verified."""
    config = ModelConfig(name="original", path=model, sha256=sha256)
    original = load_runtime(config, require_sha256=False).runtime
    meta = original.metadata
    if meta.n_features is None:
        raise ValueError(f"{model.name} does not declare its input width")
    conversion = convert_to_onnx(model, meta.n_features, sha256)
    converted = Artifact(out, conversion.onnx, hashlib.sha256(conversion.onnx).hexdigest())
    candidate = OnnxRuntime(converted, classifier_hint=meta.is_classifier)
    if data is not None:
        sample = read_table(data, meta.feature_names, meta.n_features)[:rows]
        source = f"{len(sample)} rows of {data.name}"
    else:
        sample = draw_sample(
            conversion.onnx, meta.n_features, rows, seed, on_thresholds=conversion.float32_splits
        )
        source = f"{rows} rows drawn from the trees' split ranges (seed {seed})"
    verification = verify(original, candidate, sample, tolerance)
    timings = compare(original, candidate, sample) if verification.passed and timed else []
    if verification.passed:
        out.write_bytes(conversion.onnx)
    return OptimizeReport(conversion, verification, timings, source, verification.passed)
