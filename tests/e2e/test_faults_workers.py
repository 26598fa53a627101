"""Faults of a gunicorn deployment, in real processes: no writable temporary directory for the
workers' shared files, and a worker SIGKILLed while requests are in flight."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import free_port, pythonpath_env
from tests.e2e.conftest import IRIS_ONNX, MODELSERVE, RunningServer, poll_status, write_config

pytestmark = pytest.mark.e2e

ROW = {"features": [5.1, 3.5, 1.4, 0.2]}
CLIENTS = 6
MAX_REQUESTS = 4000
LOAD_DEADLINE_S = 90.0

# In a mount namespace of its own (an unprivileged user namespace: nothing outside changes),
# every directory Python's tempfile would try is read-only, as on a read-only root filesystem
# without a writable /tmp volume. The parent opened the log, so it stays writable.
_READ_ONLY_TEMP = (
    "for d in /tmp /var/tmp; do mount --bind $d $d && mount -o remount,bind,ro $d || exit 97; "
    'done; exec "$@"'
)


def test_workers_without_a_writable_temp_dir_exit_with_one_clear_line(
    tmp_path: Path, demo_models_dir: Path
) -> None:
    """No writable temporary directory for the multiprocess metrics: `serve --workers 2`
    exits 3 at once with one `temporary_directory_unwritable` line, no traceback, and never
    binds its port (so it cannot answer 500s)."""
    log_path = tmp_path / "server.log"
    port = free_port()
    command = [
        *MODELSERVE,
        "serve",
        str(demo_models_dir / IRIS_ONNX),
        "--port",
        str(port),
        "--workers",
        "2",
    ]
    env = {k: v for k, v in pythonpath_env().items() if k != "TMPDIR"}
    with log_path.open("wb") as log:
        proc = subprocess.run(
            ["unshare", "--map-root-user", "--mount", "sh", "-c", _READ_ONLY_TEMP, "sh", *command],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,  # the last fallback of tempfile, read-only too
            timeout=60,
            check=False,
        )
    text = log_path.read_text()
    assert proc.returncode == 3, text
    assert "Traceback" not in text
    lines = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    (line,) = [x for x in lines if x["event"] == "temporary_directory_unwritable"]
    assert line["level"] == "error"
    assert "TMPDIR" in str(line["reason"])
    assert "No usable temporary directory" in str(line["error"])
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)


@dataclass
class Load:
    """CLIENTS threads posting ROW, one fresh connection per request (so a request fails only
    if a dead worker had accepted it), until stopped; bounded in count and time."""

    url: str
    answers: list[tuple[float, int]] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._threads = [threading.Thread(target=self._client) for _ in range(CLIENTS)]

    def _client(self) -> None:
        deadline = time.monotonic() + LOAD_DEADLINE_S
        while not self.stopped.is_set() and time.monotonic() < deadline:
            if len(self.answers) + len(self.failures) >= MAX_REQUESTS:
                return
            sent_at = time.monotonic()
            try:
                status = httpx.post(self.url, json=ROW, timeout=30).status_code
            except httpx.TransportError as exc:
                self.failures.append((sent_at, type(exc).__name__))
            else:
                self.answers.append((sent_at, status))

    def wait_for(self, count: int, after: float = 0.0) -> None:
        """Until ``count`` answers to requests sent after ``after`` have come back."""
        deadline = time.monotonic() + LOAD_DEADLINE_S
        while sum(sent >= after for sent, _ in self.answers) < count:
            assert time.monotonic() < deadline, "the load stalled"
            time.sleep(0.02)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        for thread in self._threads:
            thread.join(timeout=60)


def _poll(url: str, status: int, timeout_s: float = 60) -> httpx.Response:
    return poll_status(url, status, timeout_s, interval_s=0.02)


def _dead(pid: int) -> bool:
    """Gone, or a zombie its master has not reaped yet: it runs no code either way."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_worker_sigkilled_under_load_only_its_own_requests_fail(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path, demo_models_dir: Path
) -> None:
    """gunicorn, 2 workers, continuous load: a worker SIGKILLed mid-load loses at most the
    requests it had accepted (one per client, all sent before it died); every answer is a
    200, readiness drops to "1 of 2" and returns once the master's replacement has loaded,
    and the replacement serves."""
    probe_port = free_port()
    config = {
        # scikit-learn: a replacement loading in a few ms would leave no "1 of 2" to observe
        "models": [{"name": "iris", "path": str(demo_models_dir / "iris.joblib")}],
        "server": {"probe_port": probe_port},
        "cache": {"backend": "none"},  # every request reaches a worker's model
    }
    server = serve_modelserve(write_config(tmp_path, config), "--workers", "2")
    probes = f"http://127.0.0.1:{probe_port}"
    assert _poll(probes + "/ready", 200).json()["workers"] == 2
    (victim, survivor) = sorted(
        int(pid) for pid in _poll(probes + "/health", 200).json()["workers"]
    )
    with Load(server.base_url + "/predict") as load:
        load.wait_for(60)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not _dead(victim):
            assert time.monotonic() < deadline
            time.sleep(0.005)
        died_at = time.monotonic()
        refused = _poll(probes + "/ready", 503, timeout_s=30).json()
        assert "1 of 2 workers ready" in refused["detail"]
        assert _poll(probes + "/ready", 200).json()["workers"] == 2
        back_at = time.monotonic()
        load.wait_for(60, after=back_at)
    workers = {int(pid) for pid in httpx.get(probes + "/health", timeout=5).json()["workers"]}
    assert victim not in workers
    assert survivor in workers
    assert len(workers) == 2
    assert {status for _, status in load.answers} == {200}
    assert len(load.failures) <= CLIENTS
    assert all(sent_at < died_at for sent_at, _ in load.failures), load.failures
    assert {kind for _, kind in load.failures} <= {"RemoteProtocolError", "ReadError"}
    assert sum(sent > died_at for sent, _ in load.answers) >= 60
    assert server.proc.poll() is None
