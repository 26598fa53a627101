"""Typed features: the float path against an earlier revision, and the typed path's cost per row.

``python -m benchmarks.typed [--before REF] [--duration S] [--repeats N]``

Two ``modelserve serve`` processes with the same config: one from the source tree of git
revision ``REF`` (extracted with ``git archive`` and run with the same venv), one from this
checkout. Rounds alternate between them (single-row ``/predict`` of a float logistic
regression over 1 connection, wrk), so load from other work on the machine hits both alike;
the figure that matters is the after/before ratio of each round's median. Then, on this
checkout only: a scikit-learn ``Pipeline(ColumnTransformer(OneHotEncoder, SimpleImputer +
StandardScaler), LogisticRegression)`` on typed rows (single-row ``/predict``, 1000-row
``/predict-batch``) beside the float model's 1000-row batch, and in process the typed stages
per row: checking values (``rows_to_array``), building the DataFrame (``to_frame``) and the
pipeline's own ``predict_proba`` on that DataFrame.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import orjson
import pandas as pd
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from benchmarks.loadgen import WrkResult, ensure_wrk, run_wrk
from benchmarks.processes import ServerProcess, free_ports, start_server

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "benchmarks" / ".work" / "typed"
BATCH_ROWS = 1000
CITIES = ["Bergen", "Oslo", "Trondheim"]


def _customers(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "city": rng.choice(CITIES, n),
            "age": rng.integers(18, 80, n).astype(np.float64),
            "income": rng.normal(50.0, 10.0, n).round(2),
        }
    )
    frame.loc[::7, "age"] = np.nan
    return frame


def _models(out: Path) -> tuple[Pipeline, pd.DataFrame]:
    """float.joblib (iris logistic regression), typed.joblib (the city pipeline)."""
    iris = load_iris()
    joblib.dump(LogisticRegression(max_iter=500).fit(iris.data, iris.target), out / "float.joblib")
    frame = _customers(400, seed=0)
    target = (frame["city"] == "Oslo") * 1.5 + (frame["income"] - 50) / 8 > 0.5
    columns = ColumnTransformer(
        [
            ("city", OneHotEncoder(handle_unknown="ignore"), ["city"]),
            ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), ["age", "income"]),
        ]
    )
    pipeline = Pipeline([("columns", columns), ("model", LogisticRegression())]).fit(frame, target)
    joblib.dump(pipeline, out / "typed.joblib")
    return pipeline, frame


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: None if isinstance(v, float) and np.isnan(v) else v for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


def _bodies(out: Path, frame: pd.DataFrame) -> dict[str, Path]:
    iris = load_iris().data
    typed = _rows(_customers(BATCH_ROWS, seed=1))
    bodies = {
        "float-one": {"features": iris[0].tolist()},
        "float-batch": {"batch": iris[np.arange(BATCH_ROWS) % len(iris)].tolist()},
        "typed-one": {"features": typed[0]},
        "typed-batch": {"batch": typed},
    }
    paths = {}
    for name, body in bodies.items():
        paths[name] = out / f"{name}.json"
        paths[name].write_bytes(orjson.dumps(body))
    return paths


def _source_of(ref: str, out: Path) -> Path:
    """The ``src`` tree of revision ``ref``."""
    target = out / f"before-{ref.replace('/', '_')}"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "src"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "src"


def _serve(name: str, config: Path, port: int, source: Path | None) -> ServerProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    argv = [sys.executable, "-m", "modelserve", "serve", "--config", str(config)]
    server = start_server(name, [*argv, "--port", str(port)], port, WORK / "logs", env=env)
    server.wait_ready("/ready", timeout_s=180)
    return server


def _wrk(wrk: str, server: ServerProcess, path: str, body: Path, seconds: float) -> WrkResult:
    url = server.base_url + path
    rows = BATCH_ROWS if "batch" in body.name else 1
    return run_wrk(wrk, url, "body.lua", [str(body), path], 1, seconds, rows)


def _per_row_us(stage: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        stage()
        times.append(time.perf_counter() - started)
    return statistics.median(times) / BATCH_ROWS * 1e6


def _in_process(pipeline: Pipeline, repeats: int) -> dict[str, float]:
    from modelserve.inference.runtimes.sklearn_features import sklearn_features
    from modelserve.inference.typed import TypedFeatureSchema

    features = sklearn_features(pipeline)
    if features is None:
        raise SystemExit("the typed pipeline gave no typed features")
    schema = TypedFeatureSchema(features)
    rows = _rows(_customers(BATCH_ROWS, seed=1))
    batch = schema.rows_to_array(rows)
    frame = schema.to_frame(batch)
    return {
        "check_us_per_row": _per_row_us(lambda: schema.rows_to_array(rows), repeats),
        "frame_us_per_row": _per_row_us(lambda: schema.to_frame(batch), repeats),
        "pipeline_us_per_row": _per_row_us(lambda: pipeline.predict_proba(frame), repeats),
    }


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="HEAD~1", help="git revision to compare with")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--repeats", type=int, default=5, help="alternating rounds")
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    pipeline, _frame = _models(WORK)
    bodies = _bodies(WORK, _frame)
    config = WORK / "modelserve.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "server": {"access_log": False},
                "default_model": "float",
                "models": [
                    {"name": "float", "path": str(WORK / "float.joblib")},
                    {"name": "typed", "path": str(WORK / "typed.joblib")},
                ],
            }
        )
    )
    wrk = ensure_wrk()
    load_before = _load()
    before_port, after_port = free_ports(2)
    before = _serve("before", config, before_port, _source_of(args.before, WORK))
    after = _serve("after", config, after_port, None)
    rounds: list[dict[str, float]] = []
    typed: dict[str, WrkResult] = {}
    try:
        for _ in range(args.repeats):
            figures = {}
            for name, server in (("before", before), ("after", after)):
                result = _wrk(
                    wrk, server, "/predict?model=float", bodies["float-one"], args.duration
                )
                figures[name] = result.latency_ms["p50"]
            rounds.append(figures)
        for name, path in (
            ("float-batch", "/predict-batch?model=float"),
            ("typed-one", "/predict?model=typed"),
            ("typed-batch", "/predict-batch?model=typed"),
        ):
            typed[name] = _wrk(wrk, after, path, bodies[name], args.duration)
    finally:
        before.stop()
        after.stop()
    in_process = _in_process(pipeline, repeats=max(5, args.repeats))
    ratios = [r["after"] / r["before"] for r in rounds]
    print(f"load average at start: {load_before}; at end: {_load()}")
    print(f"float /predict p50 ms per round (before {args.before} / after):")
    for r, ratio in zip(rounds, ratios, strict=True):
        print(f"  {r['before']:.3f} / {r['after']:.3f}  ratio {ratio:.3f}")
    print(f"  median ratio after/before: {statistics.median(ratios):.3f}")
    for name, result in typed.items():
        per_row = result.latency_ms["p50"] * 1000 / result.rows_per_request
        print(
            f"{name}: p50 {result.latency_ms['p50']:.3f} ms, {per_row:.1f} us per row,"
            f" {result.error_total} errors"
        )
    for name, value in in_process.items():
        print(f"in process, {name}: {value:.2f}")
    body = {
        "load_average": [load_before, _load()],
        "rounds": rounds,
        "ratio_median": statistics.median(ratios),
        "typed": {
            k: {"p50_ms": v.latency_ms["p50"], "rows": v.rows_per_request} for k, v in typed.items()
        },
        "in_process": in_process,
    }
    (WORK / "typed.json").write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
