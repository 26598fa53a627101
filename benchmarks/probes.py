"""Probe and scrape latency while modelserve is saturated: ``python -m benchmarks.probes``.

For each load (wrk, 127.0.0.1 only) a prober opens a fresh connection per request, the way
the kubelet does, and asks in turn ``/health`` and ``/ready`` on the main port and ``/health``,
``/ready`` and ``/metrics`` on the probe port, every ``--interval-ms``. It prints median, p99
and max latency per endpoint and load, and any probe that failed or timed out.

Loads: 64 connections of 1000-row ``/predict-batch``, 256 connections of single rows,
``--big-connections`` connections sending the largest body ``server.max_body_bytes`` accepts,
and ``slow-model-x8``: eight predictions always inside a model that sleeps 1 s per call (every
inference thread busy, no core used), the case ``tests/e2e/test_probes.py`` checks for
behaviour only.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import yaml

from benchmarks.loadgen import ensure_wrk, start_wrk
from benchmarks.models import SleepingClassifier, build_models, request_rows, write_rows_csv
from benchmarks.processes import free_ports, start_server
from benchmarks.servers import VENV_BIN
from modelserve.settings import load_settings

WORK = Path(__file__).resolve().parent / ".work"
REPO = Path(__file__).resolve().parent.parent
SLOW_IN_FLIGHT = 8
SLOW_CALL_S = 1.0
PROBE_TIMEOUT_S = 5.0
ENDPOINTS = (
    ("main", "/health"),
    ("main", "/ready"),
    ("probe", "/health"),
    ("probe", "/ready"),
    ("probe", "/metrics"),
)


@dataclass
class Samples:
    """Latencies (ms) of one endpoint under one load, and failed probes."""

    latencies_ms: list[float] = field(default_factory=list)
    failures: int = 0

    def summary(self) -> str:
        if not self.latencies_ms:
            return f"no answers, {self.failures} failed"
        ordered = sorted(self.latencies_ms)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        return (
            f"median {statistics.median(ordered):7.1f}  p99 {p99:7.1f}  max {ordered[-1]:7.1f}"
            f"  (n={len(ordered)}, failed {self.failures})"
        )


def probe_once(port: int, path: str) -> float | None:
    """Latency of one GET on a fresh connection, in ms; None when it failed or timed out."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT_S)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        ok = response.status == 200
    except OSError:
        ok = False
    finally:
        conn.close()
    return (time.perf_counter() - started) * 1000 if ok else None


def run_prober(port: int, path: str, stop: threading.Event, interval_s: float) -> Samples:
    """Probe ``path`` every ``interval_s`` until ``stop`` (one thread per endpoint, so a slow
    endpoint never delays another's probes)."""
    samples = Samples()
    while not stop.is_set():
        latency = probe_once(port, path)
        if latency is None:
            samples.failures += 1
        else:
            samples.latencies_ms.append(latency)
        stop.wait(interval_s)
    return samples


def probe_all(ports: dict[str, int], duration_s: float, interval_s: float) -> dict[str, Samples]:
    stop = threading.Event()
    results: dict[str, Samples] = {}

    def one(which: str, path: str) -> None:
        results[f"{which:5} {path:9}"] = run_prober(ports[which], path, stop, interval_s)

    threads = [threading.Thread(target=one, args=endpoint) for endpoint in ENDPOINTS]
    for thread in threads:
        thread.start()
    stop.wait(duration_s)
    stop.set()
    for thread in threads:
        thread.join(PROBE_TIMEOUT_S + 5)
    return dict(sorted(results.items()))


@dataclass
class SlowCalls:
    """Predictions kept in flight against the sleeping model, and how they were answered."""

    stop: threading.Event = field(default_factory=threading.Event)
    statuses: list[int] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def finish(self) -> str:
        self.stop.set()
        for thread in self.threads:
            thread.join(SLOW_CALL_S + PROBE_TIMEOUT_S + 5)
        ok = self.statuses.count(200)
        return f"{len(self.statuses)} slow predictions, {ok} answered 200"


def keep_slow_calls_in_flight(port: int) -> SlowCalls:
    """SLOW_IN_FLIGHT threads, each sending the next prediction as soon as one is answered."""
    calls = SlowCalls()
    body = b'{"features": [5.1, 3.5, 1.4, 0.2]}'

    def loop() -> None:
        while not calls.stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=SLOW_CALL_S + 30)
            try:
                conn.request(
                    "POST", "/predict?model=slow", body, {"Content-Type": "application/json"}
                )
                response = conn.getresponse()
                response.read()
                calls.statuses.append(response.status)
            except OSError:
                calls.statuses.append(0)
            finally:
                conn.close()

    calls.threads = [threading.Thread(target=loop) for _ in range(SLOW_IN_FLIGHT)]
    for thread in calls.threads:
        thread.start()
    return calls


def write_config(
    path: Path,
    model: Path,
    slow_model: Path,
    probe_port: int,
    max_body_bytes: int | None,
    max_batch_rows: int,
) -> Path:
    slow = {
        "name": "slow",
        "path": str(slow_model),
        "batching": {"enabled": False, "inference_threads": SLOW_IN_FLIGHT},
    }
    config = {
        # A queue deep enough that the batch load is computed, not shed: the worst case.
        "models": [
            {"name": "logreg", "path": str(model), "batching": {"max_queue_rows": 100_000}},
            slow,
        ],
        "default_model": "logreg",
        "server": {"probe_port": probe_port, "max_batch_rows": max_batch_rows}
        | ({"max_body_bytes": max_body_bytes} if max_body_bytes is not None else {}),
        "cache": {"backend": "none"},
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per load")
    parser.add_argument("--interval-ms", type=float, default=50.0, help="per endpoint")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--big-connections", type=int, default=4)
    parser.add_argument(
        "--max-body-bytes", type=int, default=None, help="default: derived from the rows"
    )
    parser.add_argument("--max-batch-rows", type=int, default=1000)
    parser.add_argument("--only", default="", help="comma-separated load names")
    args = parser.parse_args(argv)

    wrk = ensure_wrk()
    files = build_models(WORK)
    rows_csv = write_rows_csv(request_rows(), WORK / "rows.csv")
    slow_model = WORK / "models" / "sleeping.joblib"
    joblib.dump(SleepingClassifier(SLOW_CALL_S).fit(None, None), slow_model)
    port, probe_port = free_ports(2)
    config = write_config(
        WORK / "probes.yaml",
        files["logreg"].path,
        slow_model,
        probe_port,
        args.max_body_bytes,
        args.max_batch_rows,
    )
    # The largest body accepted: as many rows as allowed, padded to the body limit.
    largest_body = load_settings(config).body_limit_bytes() - 64
    command = [str(VENV_BIN / "modelserve"), "serve", "--config", str(config)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers)]
    # The server unpickles benchmarks.models.SleepingClassifier, so it imports this package.
    server = start_server("probes", command, port, WORK / "logs", env={"PYTHONPATH": str(REPO)})
    loads: dict[str, tuple[str, list[str], int] | None] = {
        "idle": None,
        "batch-1000x64": ("batch.lua", [str(rows_csv), "/predict-batch", "1000"], 64),
        "single-row-x256": ("predict.lua", [str(rows_csv), "/predict"], 256),
        "largest-body": (
            "big.lua",
            [str(largest_body), "/predict-batch", str(args.max_batch_rows)],
            args.big_connections,
        ),
        "slow-model-x8": None,  # not wrk: see keep_slow_calls_in_flight
    }
    wanted = set(args.only.split(",")) if args.only else set(loads)
    try:
        server.wait_ready("/ready", 120)
        print(
            f"modelserve on {port}, probe port {probe_port}, workers {args.workers}; largest "
            f"accepted body {largest_body} bytes ({args.max_batch_rows} rows)"
        )
        for name, load in loads.items():
            if name not in wanted:
                continue
            job, slow_calls = None, None
            if name == "slow-model-x8":
                slow_calls = keep_slow_calls_in_flight(port)
                time.sleep(SLOW_CALL_S)  # every inference thread busy before probing
            elif load is not None:
                script, script_args, connections = load
                job = start_wrk(
                    wrk,
                    f"http://127.0.0.1:{port}/",
                    script,
                    script_args,
                    connections,
                    args.duration + 1,
                    timeout_s=30,
                )
                time.sleep(1.0)  # let the load reach its steady state before probing
            ports = {"main": port, "probe": probe_port}
            results = probe_all(ports, args.duration, args.interval_ms / 1000)
            print(f"\n== {name}")
            if slow_calls is not None:
                print(f"  load: {slow_calls.finish()}")
            if job is not None:
                done = job.result()
                print(
                    f"  load: {done.requests} requests, {done.rps:.1f}/s ok, "
                    f"p50 {done.latency_ms['p50']:.1f} ms, errors {done.errors}"
                )
            for endpoint, samples in results.items():
                print(f"  {endpoint} {samples.summary()}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
