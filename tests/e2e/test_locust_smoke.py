"""The Locust load test in benchmarks/ runs cleanly against a real modelserve process."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import IRIS_ONNX, RunningServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LOCUSTFILE = Path(__file__).resolve().parents[2] / "benchmarks" / "locustfile.py"


def _stats(prefix: Path) -> dict[str, dict[str, str]]:
    with Path(f"{prefix}_stats.csv").open(newline="", encoding="utf-8") as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


def test_locustfile_smoke_run_has_no_failures(
    serve_modelserve: Callable[..., RunningServer], demo_models_dir: Path, tmp_path: Path
) -> None:
    """A 5 s headless run (8 users) sends single, batch and health requests, none failing."""
    server = serve_modelserve(demo_models_dir / IRIS_ONNX)
    prefix = tmp_path / "locust"
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",
        "8",
        "-r",
        "8",
        "-t",
        "5s",
        "--stop-timeout",
        "5",
        "--host",
        server.base_url,
        "--csv",
        str(prefix),
        "--only-summary",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=90, cwd=tmp_path, check=False
    )

    assert done.returncode == 0, done.stderr[-3000:]
    stats = _stats(prefix)
    assert int(stats["Aggregated"]["Request Count"]) > 0
    assert int(stats["Aggregated"]["Failure Count"]) == 0
    for name in ("/health", "/predict", "/predict-batch"):
        assert int(stats[name]["Request Count"]) > 0, f"no {name} requests"
    assert server.stop() == 0
