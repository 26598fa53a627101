"""The benchmark's other formats: an XGBoost model, and the forest as ``modelserve optimize``
writes it, served beside the original forest by one modelserve process.

``xgboost`` is an XGBoost Booster file (.json) fitted on the same iris data (100 rounds, depth
6); ``forest-onnx`` is the benchmark's ``forest`` converted and verified by ``modelserve
optimize`` (ONNX Runtime). Both need the ``xgboost`` and ``optimize`` extras (in ``dev``).
"""

from __future__ import annotations

from pathlib import Path

from sklearn.datasets import load_iris

from benchmarks.models import SEED, ModelFile
from benchmarks.servers import ServerSpec, modelserve_config, modelserve_spec

MODELS = ("forest", "forest-onnx", "xgboost")
ROUNDS = 100


def build_format_models(forest: ModelFile, work_dir: Path) -> tuple[dict[str, ModelFile], str]:
    """``forest``, ``forest-onnx`` and ``xgboost``, and what ``optimize`` reported."""
    import xgboost

    from modelserve.optimize.command import optimize_model

    out = work_dir / "models"
    x, y = load_iris(return_X_y=True)
    booster = out / "xgboost.json"
    xgboost.XGBClassifier(n_estimators=ROUNDS, random_state=SEED).fit(x, y).save_model(booster)
    onnx = out / "forest-onnx.onnx"
    report = optimize_model(forest.path, onnx)
    if not report.written:
        raise RuntimeError(f"optimize refused the forest: {report.verification.describe()}")
    timings = "; ".join(t.describe().replace("  ", " ") for t in report.timings)
    summary = f"{report.verification.describe()}; in-process {timings}"
    files = {
        "forest": forest,
        "forest-onnx": ModelFile(
            "forest-onnx", onnx.resolve(), "the forest through modelserve optimize (ONNX Runtime)"
        ),
        "xgboost": ModelFile(
            "xgboost", booster.resolve(), f"XGBoost Booster (.json), {ROUNDS} rounds, depth 6"
        ),
    }
    return files, summary


def formats_spec(files: dict[str, ModelFile], work_dir: Path, port: int) -> ServerSpec:
    """modelserve, batching on, cache off, serving the three models of :data:`MODELS`."""
    config = modelserve_config(files, True, work_dir / "modelserve-formats.yaml")
    spec = modelserve_spec(config, port, batching=True)
    return ServerSpec(
        key="modelserve-formats",
        label="modelserve, batching on (formats)",
        argv=spec.argv,
        port=port,
        ready_path=spec.ready_path,
        models=MODELS,
        batch_path=spec.batch_path,
    )
