"""The probe listener of real processes: one uvicorn process, and a gunicorn master."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.e2e.conftest import IRIS_ONNX, RunningServer, poll_status, write_config

pytestmark = pytest.mark.e2e

POLL_S = 0.02
HOLD_S = 6
GIL_HOLDER = """
import ctypes
from pathlib import Path


class GilHolder:
    \"\"\"Holds the GIL for {hold_s} s in one C call (libc sleep through PyDLL, which keeps
    it) when the first feature is 1, after touching {marker!r}.\"\"\"

    def predict(self, batch):
        if batch[0, 0] == 1:
            Path({marker!r}).touch()
            ctypes.PyDLL(None).sleep({hold_s})
        return batch[:, 0]
"""


def poll(url: str, status: int, timeout_s: float = 60) -> httpx.Response:
    """GET ``url`` until it answers ``status``; fail after ``timeout_s``."""
    return poll_status(url, status, timeout_s, interval_s=POLL_S)


def start(
    serve: Callable[..., RunningServer],
    directory: Path,
    model: Path,
    *extra: str,
    server: dict[str, object] | None = None,
) -> tuple[RunningServer, str]:
    probe_port = free_port()
    config = {
        "models": [{"name": "iris", "path": str(model)}],
        "server": {"probe_port": probe_port, **(server or {})},
    }
    running = serve(write_config(directory, config), *extra)
    return running, f"http://127.0.0.1:{probe_port}"


def test_probe_port_answers_health_ready_and_metrics(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path, demo_models_dir: Path
) -> None:
    """One process: the probe port serves /health, /ready and the Prometheus text."""
    server, probes = start(serve_modelserve, tmp_path, demo_models_dir / IRIS_ONNX)
    httpx.post(server.base_url + "/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}, timeout=5)
    health = poll(probes + "/health", 200).json()
    assert (health["status"], health["models"]) == ("ok", {"iris:1": "ready"})
    assert poll(probes + "/ready", 200).json()["ready"] is True
    metrics = httpx.get(probes + "/metrics", timeout=5)
    assert 'modelserve_http_requests_total{method="POST",route="/predict",status="200"}' in (
        metrics.text
    )


def test_probe_port_answers_while_the_serving_process_holds_the_gil(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path
) -> None:
    """One process: probes are answered by a process of their own, so a model call that holds
    the serving process's GIL (one long C call) delays neither /health nor /ready."""
    marker = tmp_path / "holding"
    (tmp_path / "gil_holder.py").write_text(GIL_HOLDER.format(hold_s=HOLD_S, marker=str(marker)))
    probe_port = free_port()
    model = {"name": "holder", "format": "python", "path": "gil_holder:GilHolder", "n_features": 1}
    server = serve_modelserve(
        write_config(tmp_path, {"models": [model], "server": {"probe_port": probe_port}})
    )
    probes = f"http://127.0.0.1:{probe_port}"
    poll(probes + "/ready", 200)
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(
            httpx.post, server.base_url + "/predict", json={"features": [1.0]}, timeout=60
        )
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(POLL_S)
        assert marker.exists(), "the model call never started"
        # A thread of the serving process would wait for the GIL until the call ends.
        assert httpx.get(probes + "/health", timeout=HOLD_S / 2).status_code == 200
        assert httpx.get(probes + "/ready", timeout=HOLD_S / 2).status_code == 200
        assert not held.done()
        assert held.result().status_code == 200


def test_probe_port_process_ends_with_the_serving_process(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path, demo_models_dir: Path
) -> None:
    """A serving process killed with SIGKILL leaves no probe process behind: the port is
    free again."""
    server, probes = start(serve_modelserve, tmp_path, demo_models_dir / IRIS_ONNX)
    poll(probes + "/health", 200)
    server.proc.kill()
    server.proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(probes + "/health", timeout=1)
        except httpx.ConnectError:
            return
        except (httpx.ReadError, httpx.RemoteProtocolError):
            pass  # a connection the exiting process had queued but not accepted is reset
        time.sleep(POLL_S)
    raise AssertionError("the probe port still answers after the serving process died")


def test_probe_port_fails_readiness_at_once_on_sigterm(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path, demo_models_dir: Path
) -> None:
    """During the pre-stop delay the probe port says not ready while liveness stays 200."""
    server, probes = start(
        serve_modelserve, tmp_path, demo_models_dir / IRIS_ONNX, server={"prestop_delay_s": 30}
    )
    poll(probes + "/ready", 200)
    server.proc.send_signal(signal.SIGTERM)
    refused = poll(probes + "/ready", 503, timeout_s=10).json()
    assert refused["detail"].startswith("shutting down")
    assert httpx.get(probes + "/health", timeout=5).json()["draining"] is True


def test_probe_port_readiness_reflects_a_killed_worker(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path, demo_models_dir: Path
) -> None:
    """gunicorn: a SIGKILLed worker fails readiness until its replacement is ready, and
    predictions sent before and after the kill all succeed on the other workers."""
    server, probes = start(
        serve_modelserve, tmp_path, demo_models_dir / IRIS_ONNX, "--workers", "2"
    )
    ready = poll(probes + "/ready", 200)
    assert ready.json()["workers"] == 2
    before = set(poll(probes + "/health", 200).json()["workers"])
    victim = int(sorted(before)[0])
    row = {"features": [5.1, 3.5, 1.4, 0.2]}

    def predict(_: int) -> int:
        return httpx.post(server.base_url + "/predict", json=row, timeout=10).status_code

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(predict, range(40))) == [200] * 40
        os.kill(victim, signal.SIGKILL)
        refused = poll(probes + "/ready", 503, timeout_s=30).json()
        assert "of 2 workers ready" in refused["detail"]
        assert list(pool.map(predict, range(40))) == [200] * 40  # the other worker serves
        assert poll(probes + "/ready", 200).json()["workers"] == 2
    after = set(httpx.get(probes + "/health", timeout=5).json()["workers"])
    assert str(victim) not in after
    assert len(after) == 2


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
@pytest.mark.parametrize("workers", [1, 2], ids=["uvicorn", "gunicorn-2-workers"])
def test_probe_port_server_removes_its_run_directories_when_stopped(
    serve_modelserve: Callable[..., RunningServer],
    tmp_path: Path,
    demo_models_dir: Path,
    workers: int,
    sig: signal.Signals,
) -> None:
    """Stopped by SIGTERM or SIGINT, a server exits 0 and removes the run directories it made
    in its temporary directory: the probe files, under gunicorn the metrics and control state."""
    server, probes = start(
        serve_modelserve, tmp_path, demo_models_dir / IRIS_ONNX, "--workers", str(workers)
    )
    poll(probes + "/ready", 200)
    made = {path.name.rsplit("-", 1)[0] for path in server.tmp_dir.glob("modelserve-*")}
    expected = {"modelserve-probes"} | (
        {"modelserve-metrics", "modelserve-control"} if workers > 1 else set()
    )
    assert made == expected

    assert server.stop(sig) == 0
    assert not list(server.tmp_dir.glob("modelserve-*"))
