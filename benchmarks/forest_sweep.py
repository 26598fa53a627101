"""The forest's batching settings chosen by measurement: a sweep, printed as a table.

``python -m benchmarks.forest_sweep [--duration S] [--repeats N]``: for each combination of
``max_batch_size``, ``max_delay_ms`` and ``inference_threads`` in the grid, one modelserve
serving only ``forest`` (cache off, access log on), single-row ``/predict`` at 1 and 64
connections, the median of ``--repeats`` runs, with the server's CPU time per request. Before
the sweep it measures whether the model's ``predict_proba`` lets other Python threads run
(releases the GIL): how much of its pace a pure-Python loop keeps while a thread predicts.

Each cell also has an ``isolation`` (``thread``: the serving process's inference threads;
``process``: a model process per inference thread, printed as the first column); ``--isolation
process`` runs only those cells. ``--ab`` instead runs the two isolations at the shipped
batching defaults side by side, their runs alternating, medians of ``--repeats``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from benchmarks import models, servers
from benchmarks.cpu import group_cpu_s
from benchmarks.loadgen import WrkResult, ensure_wrk, run_wrk
from benchmarks.processes import ServerProcess, free_port, start_server
from benchmarks.run import WORK_DIR, machine

GRID: list[dict[str, object]] = [
    *(
        dict[str, object](
            max_batch_size=size, max_delay_ms=delay, inference_threads=1, isolation="thread"
        )
        for size in (16, 64, 256)
        for delay in (0, 2, 5)
    ),
    {"max_batch_size": 64, "max_delay_ms": 2, "inference_threads": 2, "isolation": "thread"},
    {"max_batch_size": 256, "max_delay_ms": 2, "inference_threads": 2, "isolation": "thread"},
    *(
        dict[str, object](
            max_batch_size=size, max_delay_ms=delay, inference_threads=1, isolation="process"
        )
        for size, delay in ((16, 2), (32, 20), (64, 0), (64, 2), (64, 5), (64, 20), (256, 2))
    ),
    {"max_batch_size": 64, "max_delay_ms": 2, "inference_threads": 2, "isolation": "process"},
]
AB_OPTIONS: dict[str, object] = {"max_batch_size": 64, "max_delay_ms": 2, "inference_threads": 1}
"""The A/B pair (``--ab``): the shipped batching defaults, in a thread and in a process."""


PATH = "/predict?model=forest"
MODEL_PROCESS = b"modelserve.inference.process_child"


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


@dataclass
class _Server:
    server: ServerProcess
    url: str


@contextlib.contextmanager
def _forest_server(
    forest: models.ModelFile, options: dict[str, object], name: str
) -> Iterator[_Server]:
    """modelserve serving only the forest with ``options`` (batching keys and isolation)."""
    batching = {k: v for k, v in options.items() if k != "isolation"}
    config = servers.modelserve_config(
        {"forest": forest},
        True,
        WORK_DIR / f"{name}.yaml",
        batching_options=batching,
        isolation={"forest": str(options["isolation"])},
    )
    port = free_port()
    spec = servers.modelserve_spec(config, port, True)
    server = start_server(name, spec.argv, port, WORK_DIR / "logs")
    try:
        server.wait_ready("/ready", 240)
        yield _Server(server, f"http://127.0.0.1:{port}{PATH}")
    finally:
        server.stop()


def _model_process_cpu_s(server_pid: int) -> float:
    """CPU seconds used so far by the server's live model processes (``isolation: process``)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if MODEL_PROCESS not in (entry / "cmdline").read_bytes():
                continue
            rest = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(rest[1]) == server_pid:
            total += (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _measure(
    wrk: str, target: _Server, script_args: list[str], connections: int, seconds: float
) -> tuple[WrkResult, float, float]:
    """One wrk run, the server's CPU seconds during it (its model process included: it is in
    the server's process group) and the model process's share of them."""
    pid = target.server.proc.pid
    before, model_before = group_cpu_s(pid), _model_process_cpu_s(pid)
    result = run_wrk(wrk, target.url, "predict.lua", script_args, connections, seconds)
    return result, group_cpu_s(pid) - before, _model_process_cpu_s(pid) - model_before


def _sweep(
    wrk: str, forest: models.ModelFile, script_args: list[str], args: argparse.Namespace
) -> None:
    print(
        "| isolation | max_batch_size | max_delay_ms | inference_threads | req/s @64 (median) "
        "| runs | p50 ms @64 | p50 ms @1 | server CPU us/req @64 | errors |"
    )
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for options in GRID:
        if options["isolation"] not in args.isolation:
            continue
        with _forest_server(forest, options, "forest-sweep") as target:
            single, _, _ = _measure(wrk, target, script_args, 1, args.duration)
            _measure(wrk, target, script_args, 64, args.warmup)
            measured = [
                _measure(wrk, target, script_args, 64, args.duration) for _ in range(args.repeats)
            ]
        runs = [r for r, _, _ in measured]
        median = sorted(runs, key=lambda r: r.rps)[(len(runs) - 1) // 2]
        answered = sum(r.ok_requests for r in runs)
        cpu_s = sum(c for _, c, _ in measured)
        figures = " / ".join(f"{r.rps:,.0f}" for r in runs)
        print(
            f"| {options['isolation']} | {options['max_batch_size']} | {options['max_delay_ms']} "
            f"| {options['inference_threads']} | {median.rps:,.0f} | {figures} "
            f"| {median.latency_ms['p50']:.2f} | {single.latency_ms['p50']:.2f} "
            f"| {cpu_s / answered * 1e6 if answered else float('nan'):,.0f} "
            f"| {sum(r.error_total for r in runs) + single.error_total} |",
            flush=True,
        )


def _ab(
    wrk: str, forest: models.ModelFile, script_args: list[str], args: argparse.Namespace
) -> None:
    """Thread and process isolation, both servers up, runs alternating (thread, process,
    thread, ...) so both see the same minute of the machine; medians of ``--repeats``."""
    names = ("thread", "process")
    size, delay = (int(n) for n in args.process_batching.split("/"))
    options = {
        "thread": {**AB_OPTIONS, "isolation": "thread"},
        "process": {**AB_OPTIONS, "max_batch_size": size, "max_delay_ms": delay},
    }
    options["process"]["isolation"] = "process"
    print(f"A/B: thread {options['thread']}, process {options['process']}")
    with contextlib.ExitStack() as stack:
        targets = {
            name: stack.enter_context(_forest_server(forest, options[name], f"forest-ab-{name}"))
            for name in names
        }
        for target in targets.values():
            _measure(wrk, target, script_args, 64, args.warmup)
        measured: dict[str, list[tuple[WrkResult, float, float]]] = {name: [] for name in names}
        for _ in range(args.repeats):
            for name in names:
                measured[name].append(_measure(wrk, targets[name], script_args, 64, args.duration))
    print(
        "| isolation | req/s @64 (median) | runs | server CPU us/req (median run) "
        "| of which the model process | errors |"
    )
    print("|---|---:|---|---:|---:|---:|")
    medians = {}
    for name in names:
        runs = sorted(measured[name], key=lambda m: m[0].rps)
        result, cpu_s, model_cpu_s = runs[(len(runs) - 1) // 2]
        medians[name] = result.rps
        figures = " / ".join(f"{r.rps:,.0f}" for r, _, _ in measured[name])
        answered = max(result.ok_requests, 1)
        errors = sum(r.error_total for r, _, _ in measured[name])
        print(
            f"| {name} | {result.rps:,.0f} | {figures} | {cpu_s / answered * 1e6:,.0f} "
            f"| {model_cpu_s / answered * 1e6:,.0f} | {errors} |"
        )
    if medians["thread"]:
        print(f"process / thread: {medians['process'] / medians['thread']:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.forest_sweep", description=__doc__)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--isolation",
        type=lambda text: text.split(","),
        default=["thread", "process"],
        help="comma-separated isolations of the grid to run (thread,process)",
    )
    parser.add_argument(
        "--ab", action="store_true", help="only the thread vs process A/B at the defaults"
    )
    parser.add_argument(
        "--process-batching",
        default="64/2",
        help="max_batch_size/max_delay_ms of the process side of --ab (default: the shipped 64/2)",
    )
    args = parser.parse_args(argv)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}")
    wrk = ensure_wrk()
    files = models.build_models(WORK_DIR)
    rows = models.request_rows()
    rows_csv = models.write_rows_csv(rows, WORK_DIR / "rows.csv")
    script_args = [str(rows_csv), PATH]
    if args.ab:
        _ab(wrk, files["forest"], script_args, args)
    else:
        forest = joblib.load(files["forest"].path)
        for batch in (1, 64, 256):
            share = statistics.median(gil_share(forest, rows, batch) for _ in range(3))
            print(
                f"GIL: a Python loop keeps {share:.2f} of its pace beside {batch}-row predict_proba"
            )
        _sweep(wrk, files["forest"], script_args, args)
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
