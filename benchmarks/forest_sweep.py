"""The forest's batching settings chosen by measurement: a sweep, printed as a table.

``python -m benchmarks.forest_sweep [--duration S] [--repeats N]``: for each combination of
``max_batch_size``, ``max_delay_ms`` and ``inference_threads`` in the grid, one modelserve
serving only ``forest`` (cache off, access log on), single-row ``/predict`` at 1 and 64
connections, the median of ``--repeats`` runs, with the server's CPU time per request. Before
the sweep it measures whether the model's ``predict_proba`` lets other Python threads run
(releases the GIL): how much of its pace a pure-Python loop keeps while a thread predicts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from typing import Any

import joblib
import numpy as np

from benchmarks import models, servers
from benchmarks.cpu import group_cpu_s
from benchmarks.loadgen import ensure_wrk, run_wrk
from benchmarks.processes import free_port, start_server
from benchmarks.run import WORK_DIR, machine

GRID: list[dict[str, object]] = [
    *(
        dict[str, object](max_batch_size=size, max_delay_ms=delay, inference_threads=1)
        for size in (16, 64, 256)
        for delay in (0, 2, 5)
    ),
    {"max_batch_size": 64, "max_delay_ms": 2, "inference_threads": 2},
    {"max_batch_size": 256, "max_delay_ms": 2, "inference_threads": 2},
]


def _python_pace(seconds: float) -> float:
    """Iterations per second of a pure-Python loop in this thread over ``seconds``."""
    count, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        count += 1
    return count / seconds


def gil_share(model: Any, rows: np.ndarray[Any, Any], batch: int, seconds: float = 1.0) -> float:
    """The pace a Python loop keeps while another thread calls ``predict_proba`` on
    ``batch``-row batches, as a share of its pace alone (1: the model never holds the GIL;
    0.5: the two threads take turns; the machine's other load moves both figures)."""
    alone = _python_pace(seconds)
    stop = threading.Event()
    x = rows[:batch]

    def predict() -> None:
        while not stop.is_set():
            model.predict_proba(x)

    thread = threading.Thread(target=predict)
    thread.start()
    try:
        beside = _python_pace(seconds)
    finally:
        stop.set()
        thread.join()
    return beside / alone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.forest_sweep", description=__doc__)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}")
    wrk = ensure_wrk()
    files = models.build_models(WORK_DIR)
    rows = models.request_rows()
    rows_csv = models.write_rows_csv(rows, WORK_DIR / "rows.csv")
    forest = joblib.load(files["forest"].path)
    for batch in (1, 64, 256):
        share = statistics.median(gil_share(forest, rows, batch) for _ in range(3))
        print(f"GIL: a Python loop keeps {share:.2f} of its pace beside {batch}-row predict_proba")
    only = {"forest": files["forest"]}
    path = "/predict?model=forest"
    print(
        "| max_batch_size | max_delay_ms | inference_threads | req/s @64 (median) | runs "
        "| p50 ms @64 | p50 ms @1 | server CPU us/req @64 | errors |"
    )
    print("|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for options in GRID:
        config = servers.modelserve_config(
            only, True, WORK_DIR / "forest-sweep.yaml", batching_options=options
        )
        port = free_port()
        spec = servers.modelserve_spec(config, port, True)
        server = start_server("forest-sweep", spec.argv, port, WORK_DIR / "logs")
        try:
            server.wait_ready("/ready", 120)
            url = f"http://127.0.0.1:{port}{path}"
            script_args = [str(rows_csv), path]
            single = run_wrk(wrk, url, "predict.lua", script_args, 1, args.duration)
            run_wrk(wrk, url, "predict.lua", script_args, 64, args.warmup)
            before = group_cpu_s(server.proc.pid)
            runs = [
                run_wrk(wrk, url, "predict.lua", script_args, 64, args.duration)
                for _ in range(args.repeats)
            ]
            cpu_s = group_cpu_s(server.proc.pid) - before
        finally:
            server.stop()
        median = sorted(runs, key=lambda r: r.rps)[(len(runs) - 1) // 2]
        answered = sum(r.ok_requests for r in runs)
        figures = " / ".join(f"{r.rps:,.0f}" for r in runs)
        print(
            f"| {options['max_batch_size']} | {options['max_delay_ms']} "
            f"| {options['inference_threads']} | {median.rps:,.0f} | {figures} "
            f"| {median.latency_ms['p50']:.2f} | {single.latency_ms['p50']:.2f} "
            f"| {cpu_s / answered * 1e6 if answered else float('nan'):,.0f} "
            f"| {sum(r.error_total for r in runs) + single.error_total} |",
            flush=True,
        )
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
