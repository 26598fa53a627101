"""The short soak: mixed Locust load, then descriptors and threads are back.

It checks what leaks show first: a file descriptor or a thread left behind per connection or
per request. ``make test`` runs 15 s of load (the smoke), ``make soak`` the minute (marker
``soak``) and then the 10-minute benchmark (RSS growth too).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from modelserve.demo import FEATURES
from tests.e2e.conftest import IRIS_ONNX, RunningServer, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

LOCUSTFILE = Path(__file__).resolve().parents[2] / "benchmarks" / "locustfile.py"
SETTLE_S = 30.0
"""Longest wait for the counts to come back (idle pool threads end after a few seconds)."""


def _descriptors_and_threads(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    threads = next(int(line.split()[1]) for line in status if line.startswith("Threads:"))
    return len(os.listdir(f"/proc/{pid}/fd")), threads


@pytest.mark.parametrize(
    "load_s", [15, pytest.param(60, marks=pytest.mark.soak)], ids=["smoke-15s", "minute"]
)
def test_soak_descriptors_and_threads_return_to_their_level_after_load(
    serve_modelserve: Callable[..., RunningServer],
    demo_models_dir: Path,
    tmp_path: Path,
    load_s: int,
) -> None:
    """After ``load_s`` seconds of single-row and batch load from 16 users, none failing, the
    server holds no more file descriptors or threads than it did before the load."""
    model: dict[str, object] = {
        "name": "iris",
        "path": str(demo_models_dir / IRIS_ONNX),
        "feature_names": FEATURES,
    }
    config = {"models": [model], "cache": {"backend": "none"}, "server": {"access_log": False}}
    server = serve_modelserve(write_config(tmp_path, config))
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        for _ in range(10):  # every lazily made thread exists before the baseline
            client.post("/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}).raise_for_status()
            client.post("/predict-batch", json={"batch": [[5.1, 3.5, 1.4, 0.2]] * 100})
    before = _descriptors_and_threads(server.proc.pid)
    prefix = tmp_path / "locust"
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"]
    command += ["-u", "16", "-r", "8", "-t", f"{load_s}s", "--stop-timeout", "5"]
    command += ["--host", server.base_url, "--csv", str(prefix), "--only-summary"]

    done = subprocess.run(
        command, capture_output=True, text=True, timeout=load_s + 90, cwd=tmp_path, check=False
    )

    assert done.returncode == 0, done.stderr[-3000:]
    with Path(f"{prefix}_stats.csv").open(newline="", encoding="utf-8") as f:
        totals = next(row for row in csv.DictReader(f) if row["Name"] == "Aggregated")
    assert int(totals["Request Count"]) > 0
    assert int(totals["Failure Count"]) == 0
    deadline = time.monotonic() + SETTLE_S
    after = _descriptors_and_threads(server.proc.pid)
    while (after[0] > before[0] or after[1] > before[1]) and time.monotonic() < deadline:
        time.sleep(0.5)
        after = _descriptors_and_threads(server.proc.pid)
    assert after[0] <= before[0], f"descriptors {before[0]} before the load, {after[0]} after"
    assert after[1] <= before[1], f"threads {before[1]} before the load, {after[1]} after"
