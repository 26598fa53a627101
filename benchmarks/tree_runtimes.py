"""Which faster runtime should ``modelserve optimize`` produce? ONNX Runtime against treelite.

``python -m benchmarks.tree_runtimes`` fits three iris classifiers like the benchmark's
(RandomForest 100 trees depth 8; XGBoost and LightGBM 100 rounds), then times one model call
in this process at batch 1 and 64 through each runtime, single-threaded as the server runs
them: the original (as modelserve's own runtime serves it), ONNX Runtime on the model
``modelserve optimize`` converts, treelite's GTIL interpreter, and a shared library compiled
by TL2cgen (treelite's C code generator) with gcc. The worst probability difference from the
original is printed beside each time. treelite and tl2cgen are not modelserve dependencies:
install them with ``pip install -e '.[treelite]'`` to run this (and gcc for TL2cgen).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from benchmarks.models import SEED, request_rows
from modelserve.inference.artifact import Artifact
from modelserve.inference.loader import load_runtime
from modelserve.inference.runtimes.onnx import OnnxRuntime
from modelserve.optimize.convert import convert_to_onnx
from modelserve.settings import ModelConfig

Rows = npt.NDArray[np.float64]
Predict = Callable[[Rows], npt.NDArray[np.float64]]
BATCH_SIZES = (1, 64)
ROUNDS = 100


def _save_models(out: Path) -> dict[str, Path]:
    import lightgbm
    import xgboost

    x, y = load_iris(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=SEED).fit(x, y)
    joblib.dump(forest, out / "forest.joblib")
    xgb = xgboost.XGBClassifier(n_estimators=ROUNDS, random_state=SEED).fit(x, y)
    xgb.save_model(out / "xgboost.json")
    lgb = lightgbm.LGBMClassifier(n_estimators=ROUNDS, random_state=SEED, verbose=-1).fit(x, y)
    lgb.booster_.save_model(out / "lightgbm.txt")
    return {
        "forest": out / "forest.joblib",
        "xgboost": out / "xgboost.json",
        "lightgbm": out / "lightgbm.txt",
    }


def _treelite_model(name: str, path: Path) -> Any:
    import treelite

    if name == "forest":
        return treelite.sklearn.import_model(joblib.load(path))
    if name == "xgboost":
        return treelite.frontend.load_xgboost_model(str(path))
    return treelite.frontend.load_lightgbm_model(str(path))


def _probabilities(out: Any, rows: int) -> npt.NDArray[np.float64]:
    """treelite answers ``[rows, targets, classes]``: one target here."""
    return np.asarray(out, dtype=np.float64).reshape(rows, -1)


def candidates(name: str, path: Path, work: Path) -> dict[str, Predict]:
    """Every runtime that could serve ``path``, as a probabilities function of rows."""
    original = load_runtime(ModelConfig(name=name, path=path), require_sha256=False).runtime

    def with_probabilities(runtime: Any) -> Predict:
        def predict(rows: Rows) -> npt.NDArray[np.float64]:
            return np.asarray(runtime.predict(rows).probabilities, np.float64)

        return predict

    onnx = convert_to_onnx(path, 4).onnx
    artifact = Artifact(work / f"{name}.onnx", onnx, hashlib.sha256(onnx).hexdigest())
    found: dict[str, Predict] = {
        "original": with_probabilities(original),
        "onnxruntime": with_probabilities(OnnxRuntime(artifact, classifier_hint=True)),
    }
    try:
        import treelite.gtil
    except ImportError as exc:
        print(f"  treelite: not installed ({exc})")
        return found
    model = _treelite_model(name, path)
    # scikit-learn and XGBoost compare features in float32: so must treelite, to agree.
    dtype = np.float64 if name == "lightgbm" else np.float32
    found["treelite-gtil"] = lambda rows: _probabilities(
        treelite.gtil.predict(model, rows.astype(dtype), nthread=1), len(rows)
    )
    try:
        import tl2cgen
    except ImportError as exc:
        print(f"  tl2cgen: not installed ({exc})")
        return found
    library = work / f"{name}.so"
    tl2cgen.export_lib(model, toolchain="gcc", libpath=str(library), params={"parallel_comp": 4})
    predictor = tl2cgen.Predictor(str(library), nthread=1)
    found["tl2cgen-compiled"] = lambda rows: _probabilities(
        predictor.predict(tl2cgen.DMatrix(rows.astype(dtype))), len(rows)
    )
    return found


def per_call_us(predict: Predict, rows: Rows, repeats: int, min_s: float) -> float:
    """Median over ``repeats`` of the mean call time, each repeat at least ``min_s`` long."""
    predict(rows)
    times = []
    for _ in range(repeats):
        calls, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < min_s and calls < 1_000_000:
            predict(rows)
            calls += 1
        times.append(elapsed / calls * 1e6)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tree_runtimes", description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-seconds", type=float, default=0.2, help="per repeat")
    args = parser.parse_args(argv)
    sample = request_rows(2000)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = _save_models(work)
        print(
            "| model | runtime | batch 1 us | batch 64 us | speed-up 1 | speed-up 64 | worst diff |"
        )
        print("|---|---|---:|---:|---:|---:|---:|")
        for name, path in paths.items():
            runtimes = candidates(name, path, work)
            reference = runtimes["original"](sample)
            base: dict[int, float] = {}
            for runtime, predict in runtimes.items():
                worst = float(np.max(np.abs(predict(sample) - reference)))
                timed = {
                    batch: per_call_us(
                        predict,
                        np.ascontiguousarray(sample[:batch]),
                        args.repeats,
                        args.min_seconds,
                    )
                    for batch in BATCH_SIZES
                }
                base = base or timed
                print(
                    f"| {name} | {runtime} | {timed[1]:,.1f} | {timed[64]:,.1f} "
                    f"| {base[1] / timed[1]:.1f}x | {base[64] / timed[64]:.1f}x | {worst:.2g} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
