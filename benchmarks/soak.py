"""Soak: mixed Locust load for ``--duration`` s (10 minutes), ``python -m benchmarks.soak``.

Starts a real server (the iris logistic regression, no prediction cache: a cache filling up to
its bound would read as growth), warms it with a few predictions, then runs
``benchmarks/locustfile.py`` headless (``--users`` users: single rows and 100-row batches,
3:1). The server's RSS, open file descriptors and threads are sampled every
``--sample-interval`` s. After the load it waits (at most ``SETTLE_S``) for the descriptors and
threads to come back to their level before the load.

Printed: requests and failures (Locust), RSS after the warm-up and at the end (growth, goal
< 5 %), descriptors and threads before / peak / after. Exit status 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from benchmarks.models import build_models
from benchmarks.processes import free_port, http_request, start_server
from benchmarks.servers import VENV_BIN

WORK = Path(__file__).resolve().parent / ".work"
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
HOST = "127.0.0.1"
SETTLE_S = 30.0
"""Longest wait after the load for descriptors and threads to return (idle pool threads end
after a few seconds)."""
RSS_GROWTH_GOAL = 0.05


@dataclass(frozen=True)
class ProcessSample:
    """One reading of the server process."""

    at_s: float
    rss_mb: float
    fds: int
    threads: int


@dataclass
class Samples:
    readings: list[ProcessSample] = field(default_factory=list)


def read_process(pid: int, at_s: float) -> ProcessSample:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status if ":" in line)
    return ProcessSample(
        at_s=at_s,
        rss_mb=int(fields["VmRSS"].split()[0]) / 1024,
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        threads=int(fields["Threads"]),
    )


def write_config(path: Path, model: Path) -> Path:
    config = {
        "models": [{"name": "iris", "path": str(model)}],
        "cache": {"backend": "none"},
        "server": {"access_log": False},
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def warm_up(port: int) -> None:
    """A few single-row and batch predictions, so every lazily made thread exists."""
    row = [5.1, 3.5, 1.4, 0.2]
    for _ in range(20):
        http_request(port, "POST", "/predict", f'{{"features": {row}}}'.encode())
        http_request(port, "POST", "/predict-batch", f'{{"batch": {[row] * 100}}}'.encode())


def run_locust(port: int, users: int, duration_s: float, prefix: Path) -> dict[str, str]:
    command = [
        str(VENV_BIN / "locust"),
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(max(1, users // 4)),
        "-t",
        f"{round(duration_s)}s",
        "--stop-timeout",
        "5",
        "--host",
        f"http://{HOST}:{port}",
        "--csv",
        str(prefix),
        "--only-summary",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration_s + 120, check=False
    )
    if done.returncode not in (0, 1):  # 1: some requests failed, which the figures show
        raise RuntimeError(f"locust exited {done.returncode}: {done.stderr[-2000:]}")
    with Path(f"{prefix}_stats.csv").open(newline="", encoding="utf-8") as f:
        return next(row for row in csv.DictReader(f) if row["Name"] == "Aggregated")


def settle(pid: int, before: ProcessSample, started: float) -> ProcessSample:
    """The first reading with descriptors and threads back to ``before`` (or the last one)."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        now = read_process(pid, time.monotonic() - started)
        if (now.fds <= before.fds and now.threads <= before.threads) or (
            time.monotonic() > deadline
        ):
            return now
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0)
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=60.0, help="s of load before RSS counts")
    parser.add_argument("--sample-interval", type=float, default=5.0)
    args = parser.parse_args(argv)

    files = build_models(WORK)
    port = free_port()
    config = write_config(WORK / "soak.yaml", files["logreg"].path)
    command = [str(VENV_BIN / "modelserve"), "serve", "--config", str(config)]
    server = start_server(
        "soak", [*command, "--host", HOST, "--port", str(port)], port, WORK / "logs"
    )
    samples = Samples()
    stop = threading.Event()
    try:
        server.wait_ready("/ready", 120)
        warm_up(port)
        started = time.monotonic()
        before = read_process(server.proc.pid, 0.0)

        def sample() -> None:
            while not stop.wait(args.sample_interval):
                samples.readings.append(read_process(server.proc.pid, time.monotonic() - started))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        totals = run_locust(port, args.users, args.duration, WORK / "soak-locust")
        stop.set()
        sampler.join(args.sample_interval + 5)
        after = settle(server.proc.pid, before, started)
    finally:
        stop.set()
        server.stop()

    warm = [s for s in samples.readings if s.at_s >= args.warmup] or samples.readings
    rss_start, rss_end = warm[0].rss_mb, warm[-1].rss_mb
    growth = (rss_end - rss_start) / rss_start
    requests, failures = int(totals["Request Count"]), int(totals["Failure Count"])
    peak_fds = max(s.fds for s in samples.readings)
    peak_threads = max(s.threads for s in samples.readings)
    print(
        f"{args.duration:g} s of Locust load, {args.users} users: {requests} requests "
        f"({float(totals['Requests/s']):.1f}/s), {failures} failed, "
        f"median {totals['50%']} ms, p99 {totals['99%']} ms"
    )
    print(
        f"RSS MB: before the load {before.rss_mb:.1f}, after {args.warmup:g} s {rss_start:.1f}, "
        f"at the end {rss_end:.1f}, peak {max(s.rss_mb for s in samples.readings):.1f}: "
        f"growth {growth * 100:+.2f} % (goal < {RSS_GROWTH_GOAL * 100:g} %)"
    )
    print(f"file descriptors: before {before.fds}, peak {peak_fds}, after {after.fds}")
    print(f"threads: before {before.threads}, peak {peak_threads}, after {after.threads}")
    verdicts = {
        "no failed requests": failures == 0 and requests > 0,
        f"RSS growth < {RSS_GROWTH_GOAL * 100:g} %": growth < RSS_GROWTH_GOAL,
        "descriptors back to their level": after.fds <= before.fds,
        "threads back to their level": after.threads <= before.threads,
    }
    for name, met in verdicts.items():
        print(f"  {'met' if met else 'NOT MET'}: {name}")
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
