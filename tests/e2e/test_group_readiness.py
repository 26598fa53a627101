"""gunicorn: /ready on the main port answers for every worker, whichever worker answers."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import IRIS_ONNX, RunningServer, poll_status, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STALL_S = 1.0


def poll_ready(server: RunningServer, status: int) -> httpx.Response:
    """GET /ready on the main port until it answers ``status`` (a connection the stopped
    worker had taken fails and is polled again)."""
    return poll_status(server.base_url + "/ready", status, timeout_s=30, request_timeout_s=2)


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_main_port_ready_fails_while_a_sibling_worker_is_wedged(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path, demo_models_dir: Path
) -> None:
    """With one of two workers stopped (SIGSTOP), the other answers /ready 503 naming it once
    it has been silent for liveness_stall_s, and 200 again once it runs."""
    config = {
        "models": [{"name": "iris", "path": str(demo_models_dir / IRIS_ONNX)}],
        "server": {"liveness_stall_s": STALL_S},
    }
    server = serve_modelserve(write_config(tmp_path, config), "--workers", "2")
    assert poll_ready(server, 200).json()["workers"] == 2
    workers = _children(server.proc.pid)
    assert len(workers) == 2
    with stopped(workers[0]):
        refused = poll_ready(server, 503).json()
        assert f"worker {workers[0]} has not reported" in refused["detail"]
    assert poll_ready(server, 200).json()["workers"] == 2


def _children(parent: int) -> list[int]:
    """The pids of the gunicorn master's worker processes (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == parent:
                found.append(int(entry.name))
    return found
