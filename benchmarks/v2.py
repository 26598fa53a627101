"""Open Inference Protocol scenarios: the same model through ``/predict`` and V2.

One modelserve process (batching on, cache off) serving HTTP and gRPC. Measured, in order:
single-row ``/predict`` and single-row V2 JSON infer at 1 and N connections, the two
alternating run by run (``/predict``, V2, ``/predict``, V2, ...) so that both see the same
moments of a shared machine, the median of ``repeats`` runs each, with the server's CPU time
per request beside the req/s (a figure the other processes on the machine move much less);
then 1000-row requests as V2 JSON, V2 binary tensors and gRPC ``raw_input_contents``
(tritonclient), the three in turn round by round, the median of ``repeats`` runs each, in
rows/s beside the model's own in-process rows/s for 1000-row calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import orjson

from benchmarks import models, servers
from benchmarks.cpu import group_cpu_s
from benchmarks.loadgen import WrkResult, run_wrk
from benchmarks.processes import free_ports, start_server

BATCH_ROWS = 1000
MODEL = "logreg"
BATCH_SCENARIOS = ("v2-json-batch", "v2-binary-batch", "grpc-raw-batch")


@dataclass(frozen=True)
class V2Result:
    scenario: str
    connections: int
    rows_per_request: int
    rps: float
    rows_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    runs: tuple[float, ...] = ()
    """req/s of every measured run, in order (the row shows the median run)."""
    cpu_us_per_request: float | None = None
    """Server CPU time (user + system, all threads) per answered request over every run."""

    def to_json(self) -> dict[str, Any]:
        out = self.__dict__.copy()
        out["runs"] = list(self.runs)
        return out


def _bodies(rows: np.ndarray[Any, Any], out: Path) -> dict[str, tuple[Path, int | None]]:
    """Request bodies as files: name → (file, JSON header length for binary bodies)."""
    out.mkdir(parents=True, exist_ok=True)
    one = rows[0].tolist()
    batch = rows[:BATCH_ROWS]
    v2_one = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": one}]}
    v2_batch = {
        "inputs": [
            {"name": "input", "shape": list(batch.shape), "datatype": "FP64",
             "data": batch.ravel().tolist()}
        ]
    }  # fmt: skip
    raw = batch.astype("<f8").tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "input", "shape": list(batch.shape), "datatype": "FP64",
                 "parameters": {"binary_data_size": len(raw)}}
            ],
            "parameters": {"binary_data_output": True},
        }
    )  # fmt: skip
    files = {
        "predict": (orjson.dumps({"features": one}), None),
        "v2-json": (orjson.dumps(v2_one), None),
        "v2-json-batch": (orjson.dumps(v2_batch), None),
        "v2-binary-batch": (header + raw, len(header)),
    }
    paths = {}
    for name, (body, header_length) in files.items():
        path = out / f"{name}.body"
        path.write_bytes(body)
        paths[name] = (path, header_length)
    return paths


def _wrk(
    wrk: str, port: int, path: str, body: tuple[Path, int | None], connections: int,
    duration_s: float, rows: int,
) -> WrkResult:  # fmt: skip
    args = [str(body[0]), path] + ([str(body[1])] if body[1] is not None else [])
    url = f"http://127.0.0.1:{port}{path}"
    return run_wrk(wrk, url, "body.lua", args, connections, duration_s, rows)


def _grpc_rows_per_s(
    port: int, rows: np.ndarray[Any, Any], connections: int, duration_s: float
) -> tuple[V2Result, int]:
    """tritonclient.grpc infer with raw contents from ``connections`` threads, each its own
    channel, for ``duration_s``; the result and the number of calls answered."""
    import tritonclient.grpc as grpcclient

    batch = rows[:BATCH_ROWS]
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + duration_s

    def worker() -> None:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
        tensor = grpcclient.InferInput("input", list(batch.shape), "FP64")
        tensor.set_data_from_numpy(batch)
        try:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    client.infer(MODEL, [tensor], client_timeout=30)
                except Exception:  # a failed call is counted, not fatal to the run
                    with lock:
                        errors[0] += 1
                    continue
                with lock:
                    latencies.append(time.perf_counter() - started)
        finally:
            client.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=duration_s + 60)
    elapsed = time.monotonic() - started
    ms = np.array(latencies) * 1000 if latencies else np.array([float("nan")])
    rps = len(latencies) / elapsed
    result = V2Result(
        "grpc-raw-batch", connections, BATCH_ROWS, round(rps, 1), round(rps * BATCH_ROWS, 1),
        round(float(np.percentile(ms, 50)), 3), round(float(np.percentile(ms, 99)), 3), errors[0],
    )  # fmt: skip
    return result, len(latencies)


def run_v2(
    wrk: str,
    files: dict[str, models.ModelFile],
    rows: np.ndarray[Any, Any],
    work_dir: Path,
    *,
    duration_s: float,
    warmup_s: float,
    connections: int,
    batch_connections: int,
    repeats: int = 3,
    single_row_only: bool = False,
) -> dict[str, Any]:
    """Measure every V2 scenario against one server; the results as a JSON-ready dict."""
    config = servers.modelserve_config(files, True, work_dir / "modelserve-v2.yaml")
    port, grpc_port = free_ports(2)
    argv = [
        str(servers.VENV_BIN / "modelserve"), "serve", "--config", str(config),
        "--host", "127.0.0.1", "--port", str(port), "--grpc-port", str(grpc_port),
    ]  # fmt: skip
    bodies = _bodies(rows, work_dir / "v2-bodies")
    single = [("predict", f"/predict?model={MODEL}"), ("v2-json", f"/v2/models/{MODEL}/infer")]
    results: list[V2Result] = []
    server = start_server("modelserve-v2", argv, port, work_dir / "logs")
    try:
        server.wait_ready("/ready", 120)
        for conns in (1, connections):
            pair = _alternating(
                wrk, port, single, bodies, conns, duration_s, warmup_s, repeats, server.proc.pid
            )
            results += pair
            predict, v2 = pair
            print(
                f"  c{conns}: /predict {predict.rps:,.0f} req/s ({_runs(predict)}; "
                f"{predict.cpu_us_per_request:.0f} us CPU/req), V2 JSON {v2.rps:,.0f} req/s "
                f"({_runs(v2)}; {v2.cpu_us_per_request:.0f} us CPU/req): "
                f"{v2.rps / predict.rps if predict.rps else float('nan'):.2f} x"
            )
        if single_row_only:
            return {"model": MODEL, "in_process_rows_per_s_1000": None, "results": [
                r.to_json() for r in results
            ]}  # fmt: skip
        results += _run_batches(
            wrk, (port, grpc_port), rows, bodies, batch_connections, duration_s, warmup_s,
            repeats, server.proc.pid,
        )  # fmt: skip
    finally:
        server.stop()
    model = joblib.load(files[MODEL].path)
    in_process = models.in_process_rows_per_s(model, rows, BATCH_ROWS, 5, 0.5)
    return {
        "model": MODEL,
        "in_process_rows_per_s_1000": round(in_process, 1),
        "results": [r.to_json() for r in results],
    }


Measure = Callable[[str, float], tuple[V2Result, int]]
"""One run of a scenario for some seconds: its result and the number of requests answered."""


def _alternating(
    wrk: str,
    port: int,
    scenarios: list[tuple[str, str]],
    bodies: dict[str, tuple[Path, int | None]],
    connections: int,
    duration_s: float,
    warmup_s: float,
    repeats: int,
    pgid: int,
) -> list[V2Result]:
    """Single-row ``scenarios`` (name, path), measured in turn run by run (see ``_rounds``)."""
    paths = dict(scenarios)

    def measure(name: str, seconds: float) -> tuple[V2Result, int]:
        measured = _wrk(wrk, port, paths[name], bodies[name], connections, seconds, 1)
        return _result(name, connections, 1, measured), measured.ok_requests

    return _rounds(list(paths), measure, duration_s, warmup_s, repeats, pgid)


def _run_batches(
    wrk: str,
    ports: tuple[int, int],
    rows: np.ndarray[Any, Any],
    bodies: dict[str, tuple[Path, int | None]],
    connections: int,
    duration_s: float,
    warmup_s: float,
    repeats: int,
    pgid: int,
) -> list[V2Result]:
    """The 1000-row scenarios, measured in turn round by round (see ``_rounds``), each printed.
    ``ports``: HTTP, gRPC."""
    http_port, grpc_port = ports
    path = f"/v2/models/{MODEL}/infer"

    def measure(name: str, seconds: float) -> tuple[V2Result, int]:
        if name == "grpc-raw-batch":
            return _grpc_rows_per_s(grpc_port, rows, connections, seconds)
        measured = _wrk(wrk, http_port, path, bodies[name], connections, seconds, BATCH_ROWS)
        return _result(name, connections, BATCH_ROWS, measured), measured.ok_requests

    out = _rounds(list(BATCH_SCENARIOS), measure, duration_s, warmup_s, repeats, pgid)
    for result in out:
        cpu = result.cpu_us_per_request
        print(
            f"  {result.scenario} c{connections}: {result.rows_per_s:,.0f} rows/s "
            f"({_runs(result)} req/s; {float('nan') if cpu is None else cpu:.0f} us CPU/req)"
        )
    return out


def _rounds(
    names: list[str],
    measure: Measure,
    duration_s: float,
    warmup_s: float,
    repeats: int,
    pgid: int,
) -> list[V2Result]:
    """Each scenario warmed up, then ``repeats`` rounds measuring each in turn (so all of them
    see the same moments of a shared machine); the median run of each, with every run's
    req/s and the server's CPU time per answered request over all of its runs."""
    runs: dict[str, list[V2Result]] = {name: [] for name in names}
    cpu_s = dict.fromkeys(names, 0.0)
    answered = dict.fromkeys(names, 0)
    for name in names:
        measure(name, warmup_s)
    for _ in range(repeats):
        for name in names:
            before = group_cpu_s(pgid)
            result, ok = measure(name, duration_s)
            cpu_s[name] += group_cpu_s(pgid) - before
            runs[name].append(result)
            answered[name] += ok
    out = []
    for name, measured in runs.items():
        median = sorted(measured, key=lambda r: r.rps)[(len(measured) - 1) // 2]
        cpu_us = round(cpu_s[name] / answered[name] * 1e6, 1) if answered[name] else None
        out.append(replace(median, runs=tuple(r.rps for r in measured), cpu_us_per_request=cpu_us))
    return out


def _runs(result: V2Result) -> str:
    return " / ".join(f"{v:,.0f}" for v in result.runs)


def _result(name: str, connections: int, rows: int, measured: WrkResult) -> V2Result:
    latency = measured.latency_ms
    return V2Result(
        name, connections, rows, round(measured.rps, 1), round(measured.rows_per_s, 1),
        round(latency["p50"], 3), round(latency["p99"], 3), measured.error_total,
    )  # fmt: skip


def markdown(v2: dict[str, Any]) -> str:
    """The V2 section of the results report."""
    by_name = {(r["scenario"], r["connections"]): r for r in v2["results"]}
    in_process = v2["in_process_rows_per_s_1000"]
    lines = [
        "## Open Inference Protocol",
        "",
        f"Model `{v2['model']}`; in-process 1000-row calls: "
        + (f"{in_process:,.0f} rows/s." if in_process else "not measured."),
        "Every row: the median of the runs listed (single rows: `/predict` and V2 alternating "
        "run by run; 1000-row requests: JSON, binary and gRPC in turn round by round); CPU is "
        "the server's CPU time per answered request over all the runs.",
        "",
        "| scenario | conns | rows/req | req/s | rows/s | p50 ms | p99 ms | errors | vs "
        "| runs (req/s) | server CPU us/req |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in v2["results"]:
        if r["rows_per_request"] == 1:
            base = by_name.get(("predict", r["connections"]))
            ratio = f"{r['rps'] / base['rps']:.2f} x /predict" if base and base["rps"] else ""
        else:
            ratio = f"{r['rows_per_s'] / in_process:.2f} x in-process" if in_process else ""
        runs = " / ".join(f"{v:,.0f}" for v in r.get("runs", [])) or "1 run"
        cpu = r.get("cpu_us_per_request")
        lines.append(
            f"| {r['scenario']} | {r['connections']} | {r['rows_per_request']} | "
            f"{r['rps']:,.1f} | {r['rows_per_s']:,.0f} | {r['p50_ms']} | {r['p99_ms']} | "
            f"{r['errors']} | {ratio} | {runs} | {'n/a' if cpu is None else f'{cpu:,.0f}'} |"
        )
    return "\n".join(lines) + "\n"
