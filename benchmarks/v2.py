"""Open Inference Protocol scenarios: the same model through ``/predict`` and V2.

One modelserve process (batching on, cache off) serving HTTP and gRPC. Measured, in order:
single-row ``/predict`` and single-row V2 JSON infer at 1 and N connections; then 1000-row
requests as V2 JSON, V2 binary tensors and gRPC ``raw_input_contents`` (tritonclient), in
rows/s beside the model's own in-process rows/s for 1000-row calls.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import orjson

from benchmarks import models, servers
from benchmarks.loadgen import run_wrk
from benchmarks.processes import free_ports, start_server

BATCH_ROWS = 1000
MODEL = "logreg"


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

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


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
) -> Any:  # fmt: skip
    args = [str(body[0]), path] + ([str(body[1])] if body[1] is not None else [])
    url = f"http://127.0.0.1:{port}{path}"
    return run_wrk(wrk, url, "body.lua", args, connections, duration_s, rows)


def _grpc_rows_per_s(
    port: int, rows: np.ndarray[Any, Any], connections: int, duration_s: float
) -> V2Result:
    """tritonclient.grpc infer with raw contents from ``connections`` threads, each its own
    channel, for ``duration_s``."""
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
    return V2Result(
        "grpc-raw-batch", connections, BATCH_ROWS, round(rps, 1), round(rps * BATCH_ROWS, 1),
        round(float(np.percentile(ms, 50)), 3), round(float(np.percentile(ms, 99)), 3), errors[0],
    )  # fmt: skip


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
) -> dict[str, Any]:
    """Measure every V2 scenario against one server; the results as a JSON-ready dict."""
    config = servers.modelserve_config(files, True, work_dir / "modelserve-v2.yaml")
    port, grpc_port = free_ports(2)
    argv = [
        str(servers.VENV_BIN / "modelserve"), "serve", "--config", str(config),
        "--host", "127.0.0.1", "--port", str(port), "--grpc-port", str(grpc_port),
    ]  # fmt: skip
    bodies = _bodies(rows, work_dir / "v2-bodies")
    infer = f"/v2/models/{MODEL}/infer"
    single = [("predict", f"/predict?model={MODEL}", c) for c in (1, connections)] + [
        ("v2-json", infer, c) for c in (1, connections)
    ]
    batched = [("v2-json-batch", infer), ("v2-binary-batch", infer)]
    results: list[V2Result] = []
    server = start_server("modelserve-v2", argv, port, work_dir / "logs")
    try:
        server.wait_ready("/ready", 120)
        for name, path, conns in single:
            _wrk(wrk, port, path, bodies[name], conns, warmup_s, 1)
            measured = _wrk(wrk, port, path, bodies[name], conns, duration_s, 1)
            results.append(_result(name, conns, 1, measured))
            print(f"  {name} c{conns}: {measured.rps:,.0f} req/s")
        for name, path in batched:
            _wrk(wrk, port, path, bodies[name], batch_connections, warmup_s, BATCH_ROWS)
            measured = _wrk(
                wrk, port, path, bodies[name], batch_connections, duration_s, BATCH_ROWS
            )
            results.append(_result(name, batch_connections, BATCH_ROWS, measured))
            print(f"  {name} c{batch_connections}: {measured.rows_per_s:,.0f} rows/s")
        _grpc_rows_per_s(grpc_port, rows, batch_connections, warmup_s)
        grpc = _grpc_rows_per_s(grpc_port, rows, batch_connections, duration_s)
        results.append(grpc)
        print(f"  grpc-raw-batch c{batch_connections}: {grpc.rows_per_s:,.0f} rows/s")
    finally:
        server.stop()
    model = joblib.load(files[MODEL].path)
    in_process = models.in_process_rows_per_s(model, rows, BATCH_ROWS, 5, 0.5)
    return {
        "model": MODEL,
        "in_process_rows_per_s_1000": round(in_process, 1),
        "results": [r.to_json() for r in results],
    }


def _result(name: str, connections: int, rows: int, measured: Any) -> V2Result:
    latency = measured.latency_ms
    return V2Result(
        name, connections, rows, round(measured.rps, 1), round(measured.rows_per_s, 1),
        round(latency["p50"], 3), round(latency["p99"], 3), measured.error_total,
    )  # fmt: skip


def markdown(v2: dict[str, Any]) -> str:
    """The V2 section of the results report."""
    by_name = {(r["scenario"], r["connections"]): r for r in v2["results"]}
    lines = [
        "## Open Inference Protocol",
        "",
        f"Model `{v2['model']}`; in-process 1000-row calls: "
        f"{v2['in_process_rows_per_s_1000']:,.0f} rows/s.",
        "",
        "| scenario | conns | rows/req | req/s | rows/s | p50 ms | p99 ms | errors | vs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in v2["results"]:
        if r["rows_per_request"] == 1:
            base = by_name.get(("predict", r["connections"]))
            ratio = f"{r['rps'] / base['rps']:.2f} x /predict" if base and base["rps"] else ""
        else:
            ratio = f"{r['rows_per_s'] / v2['in_process_rows_per_s_1000']:.2f} x in-process"
        lines.append(
            f"| {r['scenario']} | {r['connections']} | {r['rows_per_request']} | "
            f"{r['rps']:,.1f} | {r['rows_per_s']:,.0f} | {r['p50_ms']} | {r['p99_ms']} | "
            f"{r['errors']} | {ratio} |"
        )
    return "\n".join(lines) + "\n"


def write(v2: dict[str, Any], out: Path, stamp: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"v2-{stamp}.md"
    path.write_text(markdown(v2), encoding="utf-8")
    (out / f"v2-{stamp}.json").write_text(json.dumps(v2, indent=2), encoding="utf-8")
    return path
