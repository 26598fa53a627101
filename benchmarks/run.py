"""Run the benchmark: real servers on 127.0.0.1, wrk as the load, results in benchmarks/results.

``python -m benchmarks.run [--quick] [--single-row] [--duration S] [--peers]`` (``make bench
[PEERS=1]``, ``make bench-quick``). Every scenario is measured ``--repeats`` times (3) and the
median run is what the ratios and targets use. Servers, in order: modelserve with batching on,
then off; modelserve serving the forest beside its ``modelserve optimize`` output and an
XGBoost model; modelserve over the Open Inference Protocol; the naive FastAPI baseline; the
no-op HTTP ceiling (answering a body the size of modelserve's real response); with
``--peers``, LitServe and MLServer. Each is started, measured and stopped before the next,
so no two servers share the cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn

from benchmarks import formats, models, report, servers, v2
from benchmarks.loadgen import LoadgenError, ensure_wrk, wrk_version
from benchmarks.peers import PeerUnavailableError
from benchmarks.peers import launch as peers
from benchmarks.processes import ServerStartError, free_port
from benchmarks.scenarios import Runner

ROOT = Path(__file__).resolve().parent
WORK_DIR = ROOT / ".work"
RESULTS_DIR = ROOT / "results"
BATCH_ROWS = 1000
_FALLBACK_BODY = (
    b'{"prediction":"setosa","confidence":0.97,"probabilities":{"setosa":0.97,'
    b'"versicolor":0.03,"virginica":0.0},"model":"logreg","model_version":"1",'
    b'"latency_ms":0.5,"timestamp":"2026-01-01T00:00:00.000000+00:00",'
    b'"request_id":"00000000000000000000000000000000"}'
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument(
        "--duration", type=float, default=5.0, help="seconds per measured run of a scenario"
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up load")
    parser.add_argument("--quick", action="store_true", help="2 s runs, 1 s warm-up")
    parser.add_argument(
        "--single-row",
        action="store_true",
        help="single-row scenarios only: modelserve with batching on, no batch or /health runs",
    )
    parser.add_argument("--peers", action="store_true", help="also LitServe and MLServer")
    parser.add_argument(
        "--repeats", type=int, default=3, help="measure each scenario N times, keep the median"
    )
    parser.add_argument("--connections", type=int, default=64, help="the saturating load")
    parser.add_argument("--health-connections", type=int, default=2)
    parser.add_argument(
        "--batch-connections",
        type=int,
        default=2,
        help="for /predict-batch: 2 x 1000 rows fit modelserve's default 2048-row queue",
    )
    parser.add_argument("--workers", type=int, default=1, help="modelserve --workers")
    parser.add_argument(
        "--forest-isolation",
        choices=("thread", "process"),
        default=servers.MODEL_ISOLATION["forest"],
        help="the forest's models[].isolation in modelserve's config",
    )
    parser.add_argument(
        "--no-access-log", action="store_true", help="run modelserve without its access log"
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated subset: modelserve,formats,v2,naive,noop,litserve,mlserver",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 2.0, 1.0
    if not 1 <= args.duration <= 600 or not 0 <= args.warmup <= 60 or not 1 <= args.repeats <= 9:
        parser.error("--duration must be 1..600 s, --warmup 0..60 s, --repeats 1..9")
    return args


def measure_in_process(
    files: dict[str, models.ModelFile],
    rows: np.ndarray[Any, Any],
    quick: bool,
    sizes: tuple[int, ...] = (1, 64, BATCH_ROWS),
) -> dict[str, dict[str, float]]:
    """Rows/s of ``predict_proba`` in this process for calls of each of ``sizes`` rows."""
    repeats, budget = (3, 0.2) if quick else (5, 0.5)
    out: dict[str, dict[str, float]] = {}
    for name, f in files.items():
        model = joblib.load(f.path)
        out[name] = {
            str(size): round(models.in_process_rows_per_s(model, rows, size, repeats, budget), 1)
            for size in sizes
        }
        rates = ", ".join(f"{k}-row {v:,.0f} rows/s" for k, v in out[name].items())
        print(f"  in-process {name}: {rates}")
    return out


def _phase(runner: Runner, what: str, body: Callable[[], None]) -> None:
    """Run one server's scenarios; a server or peer that fails is recorded, not fatal."""
    try:
        body()
    except (ServerStartError, PeerUnavailableError, LoadgenError, OSError) as exc:
        runner.skip(what, str(exc).strip().replace("\n", " | ")[:1500])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}

    def wanted(name: str) -> bool:
        return not only or name in only

    started = time.monotonic()
    load_at_start = [round(v, 2) for v in os.getloadavg()]
    print(f"machine: {machine()}; load average at start: {_load_average()}")
    print(f"modelserve forest isolation: {args.forest_isolation}")
    print(
        f"{args.repeats} measured run(s) of {args.duration:g} s per scenario after "
        f"{args.warmup:g} s warm-up; the median run counts"
    )
    wrk = ensure_wrk()
    files = models.build_models(WORK_DIR)
    rows = models.request_rows()
    rows_csv = models.write_rows_csv(rows, WORK_DIR / "rows.csv")
    in_process = measure_in_process(files, rows, args.quick)
    runner = Runner(
        wrk=wrk,
        rows_csv=rows_csv,
        log_dir=WORK_DIR / "logs",
        duration_s=args.duration,
        warmup_s=args.warmup,
        repeats=args.repeats,
    )
    conns = args.connections
    single = (1, conns)

    if wanted("modelserve"):
        for batching in (True,) if args.single_row else (True, False):
            config = servers.modelserve_config(
                files,
                batching,
                WORK_DIR / f"modelserve-{'batched' if batching else 'unbatched'}.yaml",
                access_log=not args.no_access_log,
                isolation={**servers.MODEL_ISOLATION, "forest": args.forest_isolation},
            )
            spec = servers.modelserve_spec(
                config, free_port(), batching, args.workers, probe_port=free_port()
            )

            def run_modelserve(spec: servers.ServerSpec = spec, batching: bool = batching) -> None:
                with runner.serve(spec):
                    for model in spec.models:
                        for c in single:
                            runner.predict(spec, model, c)
                    if batching and not args.single_row:
                        for model in spec.models:
                            # The ceiling is timed right before and after the run and averaged,
                            # so the ratio compares moments of the same noise on this machine.
                            only_this = {model: files[model]}
                            before = measure_in_process(only_this, rows, args.quick, (64,))
                            result = runner.predict_batch(
                                spec, model, args.batch_connections, BATCH_ROWS
                            )
                            after = measure_in_process(only_this, rows, args.quick, (64,))
                            result.in_process_rows_per_s = {
                                "64": round((before[model]["64"] + after[model]["64"]) / 2, 1)
                            }
                        for model in spec.models:
                            for on_probe_port in (True, False):
                                runner.health_under_load(
                                    spec, model, conns, args.health_connections, on_probe_port
                                )

            _phase(runner, spec.label, run_modelserve)

    optimized: list[str] = []
    if wanted("formats") and not args.single_row:

        def run_formats() -> None:
            try:
                format_files, summary = formats.build_format_models(files["forest"], WORK_DIR)
            except (ImportError, RuntimeError) as exc:
                runner.skip("modelserve formats", str(exc))
                return
            optimized.append(summary)
            print(f"  modelserve optimize forest: {summary}")
            spec = formats.formats_spec(format_files, WORK_DIR, free_port())
            with runner.serve(spec):
                for model in spec.models:
                    for c in single:
                        runner.predict(spec, model, c)

        _phase(runner, "modelserve formats", run_formats)

    open_inference: dict[str, Any] = {}
    if wanted("v2"):

        def run_open_inference() -> None:
            measured = v2.run_v2(
                wrk,
                files,
                rows,
                WORK_DIR,
                duration_s=args.duration,
                warmup_s=args.warmup,
                connections=conns,
                batch_connections=args.batch_connections,
                repeats=args.repeats,
                single_row_only=args.single_row,
            )
            open_inference.update(measured)
            print(v2.markdown(measured))

        _phase(runner, "modelserve Open Inference Protocol", run_open_inference)

    if wanted("naive"):
        naive = servers.naive_spec(files, free_port())

        def run_naive() -> None:
            with runner.serve(naive):
                for model in naive.models:
                    for c in single:
                        runner.predict(naive, model, c)
                if not args.single_row:
                    runner.health_under_load(naive, "forest", conns, args.health_connections)

        _phase(runner, naive.label, run_naive)

    if wanted("noop"):
        body, source = _noop_body(runner.response_samples)
        body_file = WORK_DIR / "noop-body.json"
        body_file.write_bytes(body)
        noop = servers.noop_spec(body_file, free_port())

        def run_noop() -> None:
            with runner.serve(noop):
                for c in single:
                    runner.predict(noop, "logreg", c)

        _phase(runner, noop.label, run_noop)
    else:
        source = "not run"

    if args.peers:
        _run_peers(runner, files, single, wanted)

    elapsed = time.monotonic() - started
    meta = _meta(args, wrk, elapsed, source, runner, load_at_start)
    meta["optimize_forest"] = optimized[0] if optimized else "not run"
    md_path, json_path = report.write_results(
        args.out,
        meta,
        in_process,
        runner.results,
        runner.skipped,
        BATCH_ROWS,
        args.peers,
        open_inference or None,
    )
    print(f"\nwrote {md_path} and {json_path} after {elapsed:.0f} s")
    print(md_path.read_text(encoding="utf-8").split("## Ratios")[0])
    return 0


def _run_peers(
    runner: Runner,
    files: dict[str, models.ModelFile],
    single: tuple[int, int],
    wanted: Callable[[str], bool],
) -> None:
    if wanted("litserve"):

        def run_litserve() -> None:
            venv = peers.litserve_venv()
            for f in files.values():
                spec = peers.litserve_spec(venv, f)
                with runner.serve(spec):
                    for c in single:
                        runner.predict(spec, f.name, c)

        _phase(runner, "LitServe", run_litserve)
    if wanted("mlserver"):

        def run_mlserver() -> None:
            spec = peers.mlserver_spec(peers.mlserver_venv(), files, WORK_DIR)
            with runner.serve(spec):
                for model in spec.models:
                    for c in single:
                        runner.predict(spec, model, c)

        _phase(runner, "MLServer", run_mlserver)


def _noop_body(samples: dict[str, bytes]) -> tuple[bytes, str]:
    """modelserve's real logreg /predict answer, else the naive one, else a stand-in."""
    for key in ("modelserve-batched/logreg", "modelserve-unbatched/logreg", "naive/logreg"):
        if key in samples:
            return samples[key], f"{key} response ({len(samples[key])} bytes)"
    return _FALLBACK_BODY, f"stand-in body ({len(_FALLBACK_BODY)} bytes): no server answered"


def machine() -> str:
    """Architecture, core count, CPU model and OS of this machine, on one line."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    cpu = f", {model}" if model else ""
    return f"{platform.machine()}, {os.cpu_count()} cores{cpu}, {platform.system()}"


def _load_average() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg()) + " (1 / 5 / 15 min)"


def _git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=ROOT,
        )
    except OSError:
        return "unknown"
    return done.stdout.strip() or "unknown"


def _meta(
    args: argparse.Namespace,
    wrk: str,
    elapsed: float,
    noop_source: str,
    runner: Runner,
    load_at_start: list[float],
) -> dict[str, Any]:
    sizes = {k: len(v) for k, v in runner.response_samples.items()}
    return {
        "started_at": (datetime.now(UTC) - timedelta(seconds=elapsed)).isoformat(
            timespec="seconds"
        ),
        "command": shlex.join(["python", "-m", "benchmarks.run", *(sys.argv[1:])]),
        "machine": machine(),
        "python": platform.python_version(),
        "scikit_learn": sklearn.__version__,
        "wrk_version": wrk_version(wrk),
        "git_commit": _git_commit(),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "repeats": args.repeats,
        "connections": args.connections,
        "batch_connections": args.batch_connections,
        "health_connections": args.health_connections,
        "modelserve_workers": args.workers,
        "modelserve_access_log": not args.no_access_log,
        "peers": args.peers,
        "elapsed_s": round(elapsed, 1),
        "load_average_at_start": load_at_start,
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "noop_body": noop_source,
        "response_bytes": sizes,
        "server_exit_codes": runner.exit_codes,
        "method": [
            "Each server runs alone: started, checked with one real request, warmed up, "
            "measured, stopped with SIGTERM.",
            "Single-row bodies cycle through 10,000 distinct jittered iris rows; "
            "modelserve's prediction cache is off (`cache.backend: none`).",
            f"modelserve batching on: max_batch_size 64, max_delay_ms 2; off: one call per "
            f"request. Access log {'on' if not args.no_access_log else 'off'}; "
            f"{args.workers} worker(s).",
            "naive: FastAPI `@app.post` with a Pydantic body, `predict` + `predict_proba` in "
            "the async handler; no-op: bare Starlette route, `json.loads`, constant body of "
            "modelserve's response size; both under uvicorn (uvloop, httptools), 1 process, "
            "no access log.",
            "req/s counts 2xx answers only; errors = non-2xx + socket errors + timeouts "
            "(wrk --timeout 5s).",
            f"Each scenario measured {args.repeats} time(s) after one warm-up; the median run "
            "is shown, every run's figure is in the *runs* column and latest.json (`repeats`), "
            "and ratios and targets use the medians: a target is met only when the median "
            "meets it.",
            "Other CPU: busy time of the whole machine minus the server's process group, wrk "
            "and the harness, in cores, while measuring.",
            f"Batch targets compare modelserve's {BATCH_ROWS}-row /predict-batch rows/s with "
            "in-process predict_proba on 64-row batches, timed right before and after that "
            "batch run (mean of the two).",
            "Formats: one more modelserve (batching on, cache off) serves `forest`, "
            "`forest-onnx` (`forest` through `modelserve optimize`, ONNX Runtime) and `xgboost` "
            f"(an XGBoost Booster .json, {formats.ROUNDS} rounds, depth 6, fitted on iris).",
            "Peers (with --peers) get scikit-learn pinned to the harness's version and "
            "batching 64 / 5 ms; MLServer is asked for `predict_proba` only.",
        ],
        "rows_csv": str(runner.rows_csv),
    }


if __name__ == "__main__":
    sys.exit(main())
