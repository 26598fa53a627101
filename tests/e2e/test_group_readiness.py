"""gunicorn: /ready on the main port answers for every worker, whichever worker answers."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import RunningServer, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

POLL_S = 0.05
STALL_S = 1.0


def poll_ready(server: RunningServer, status: int, timeout_s: float = 30) -> httpx.Response:
    """GET /ready on the main port until it answers ``status``; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(server.base_url + "/ready", timeout=2)
        except httpx.HTTPError as exc:  # a connection the stopped worker had taken
            last = exc
        else:
            if response.status_code == status:
                return response
            last = (response.status_code, response.text)
        time.sleep(POLL_S)
    raise AssertionError(f"/ready never answered {status}; last: {last!r}")


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
        "models": [{"name": "iris", "path": str(demo_models_dir / "iris.joblib")}],
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
