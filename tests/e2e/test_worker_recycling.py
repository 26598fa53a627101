"""gunicorn workers recycled by server.max_requests leave the others (and metrics) serving."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import RunningServer, write_config
from tests.e2e.test_metrics import scrape
from tests.prometheus import value

pytestmark = pytest.mark.e2e

REQUESTS = 60
MAX_REQUESTS = 10
EXITS = 2
MAX_SENT = 600
DEADLINE_S = 60
PACE_S = 0.02


def test_recycled_workers_leave_the_server_and_its_metrics_serving(
    serve_modelserve: Callable[..., RunningServer], fake_models_dir: Path, tmp_path: Path
) -> None:
    """Workers exit and are replaced every few requests; every request still succeeds, the
    master stays up, and /metrics still counts every request (a worker's exit must not take
    the shared multiprocess directory with it)."""
    config = {
        "models": [{"name": "sum", "path": str(fake_models_dir / "sum.joblib")}],
        "server": {"max_requests": MAX_REQUESTS},
        "cache": {"backend": "none"},
    }
    server = serve_modelserve(write_config(tmp_path, config), "--workers", "2")
    row = {"features": [5.1, 3.5, 1.4, 0.2]}
    statuses: list[int] = []
    deadline = time.monotonic() + DEADLINE_S
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        # Paced, and continued until workers were seen exiting: a worker checks its request
        # count on a timer, so an unpaced burst can finish before any worker recycles.
        while len(statuses) < MAX_SENT and time.monotonic() < deadline:
            if len(statuses) >= REQUESTS and len(worker_exits(server)) >= EXITS:
                break
            # An exiting worker can reset a connection it accepted but never read (a known
            # gunicorn/uvicorn recycling edge); a client retries that, and so does this one.
            for _attempt in range(3):
                try:
                    statuses.append(client.post("/predict", json=row).status_code)
                    break
                except httpx.TransportError:
                    continue
            time.sleep(PACE_S)
    assert len(worker_exits(server)) >= EXITS, "workers were not recycled: nothing was tested"
    assert statuses == [200] * len(statuses)
    assert server.proc.poll() is None
    counted = value(
        scrape(server.base_url),
        "modelserve_http_requests_total",
        route="/predict",
        method="POST",
        status="200",
    )
    assert counted == len(statuses)


def worker_exits(server: RunningServer) -> list[bytes]:
    """Log lines of exiting workers (read raw: a line may be half-written while serving)."""
    return [line for line in server.log_path.read_bytes().splitlines() if b"Worker exiting" in line]
