"""Versions with ``isolation: process`` on a real server: same answers, lifecycle, no orphans."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.e2e.conftest import (
    IRIS_ONNX,
    RunningServer,
    poll_status,
    wait_for_log_events,
    wait_ready,
    write_config,
)
from tests.fakes import FileGate, LoadGatedClassifier
from tests.prometheus import parse, value

pytestmark = pytest.mark.e2e

KEY = "e2e-model-process-7d1f3a9c5b2e4d60"
AUTH = {"Authorization": f"Bearer {KEY}"}
ROW = [5.1, 3.5, 1.4, 0.2]
START_TIMEOUT_S = 240
"""Each model process imports its libraries afresh (scikit-learn takes seconds on a busy
2-core machine), and versions load one after the other."""


@dataclass
class Served:
    server: RunningServer
    gate: FileGate


def _config(models: list[dict[str, object]]) -> dict[str, object]:
    return {
        "models": models,
        "server": {"access_log": False},
        "cache": {"backend": "none"},
        "auth": {
            "enabled": True,
            "keys": [{"name": "ops", "key": KEY, "scopes": ["predict", "admin"]}],
        },
    }


@pytest.fixture(scope="module")
def served(
    serve_modelserve_module: Callable[..., RunningServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> Served:
    """A forest and a logreg pipeline in both isolations, and a gated model in a process."""
    directory = tmp_path_factory.mktemp("model-process")
    x, y = load_iris(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=30, max_depth=6, random_state=0).fit(x, y)
    logreg = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    joblib.dump(forest, directory / "forest.joblib")
    joblib.dump(logreg, directory / "logreg.joblib")
    gate = FileGate(directory / "gate")
    joblib.dump(LoadGatedClassifier(str(gate.directory)).fit(None, None), directory / "gated.pkl")
    models: list[dict[str, object]] = [
        {"name": f"{name}-{isolation}", "path": str(directory / f"{name}.joblib"), **extra}
        for name in ("forest", "logreg")
        for isolation, extra in (("thread", {}), ("process", {"isolation": "process"}))
    ]
    models[3]["batching"] = {"inference_threads": 2}  # logreg-process: a child per thread
    models.append({"name": "gated", "path": str(directory / "gated.pkl"), "isolation": "process"})
    for version, isolation in (("1", "thread"), ("2", "process")):  # v2 is free to unload
        models.append(
            {
                "name": "spare",
                "version": version,
                "path": str(directory / "logreg.joblib"),
                "isolation": isolation,
            }
        )
    server = serve_modelserve_module(write_config(directory, _config(models)), wait=None)
    wait_ready(server, START_TIMEOUT_S)
    return Served(server, gate)


def _child_pids(server: RunningServer, model: str, count: int = 1) -> list[int]:
    lines = wait_for_log_events(server, count, event="model_process_started", model=model)
    return [int(str(line["pid"])) for line in lines]


def _stat(pid: int) -> tuple[str, int] | None:
    """A process's state letter and parent pid from /proc (None once it is reaped)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    state, ppid = text.rsplit(")", 1)[1].split()[:2]  # the name may hold spaces
    return state, int(ppid)


def _parent(pid: int) -> int:
    stat = _stat(pid)
    assert stat is not None, f"process {pid} is gone"
    return stat[1]


def _exited(pid: int) -> bool:
    stat = _stat(pid)
    return stat is None or stat[0] in ("Z", "X")  # a zombie has exited; nobody reaped it yet


def _wait_exited(pids: list[int], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(_exited(pid) for pid in pids):
        assert time.monotonic() < deadline, f"model processes still running: {pids}"
        time.sleep(0.05)


def _probabilities(server: RunningServer, model: str, rows: list[list[float]]) -> object:
    response = httpx.post(
        server.base_url + "/predict-batch",
        params={"model": model, "probabilities": "true"},
        json={"batch": rows},
        headers=AUTH,
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()["probabilities"]


@pytest.mark.parametrize("model", ["forest", "logreg"])
def test_process_isolation_answers_exactly_as_thread_isolation(served: Served, model: str) -> None:
    """Every probability a model process computes equals, to the last bit, the thread's."""
    rng = np.random.default_rng(7)
    rows = (load_iris().data[::3] + rng.normal(0, 0.3, (50, 4))).round(6).tolist()
    thread = _probabilities(served.server, f"{model}-thread", rows)
    assert _probabilities(served.server, f"{model}-process", rows) == thread


def test_model_process_started_before_the_version_was_ready(served: Served) -> None:
    """The child is the server's own process and answered before the version was loaded."""
    lines = served.server.log_lines()
    events = [
        (line["event"], line.get("model"))
        for line in lines
        if line.get("model") == "forest-process"
    ]
    assert events.index(("model_process_started", "forest-process")) < events.index(
        ("model_loaded", "forest-process")
    )
    (pid,) = _child_pids(served.server, "forest-process")
    assert _parent(pid) == served.server.proc.pid


def test_model_process_per_inference_thread(served: Served) -> None:
    """A version with two inference threads has two children of the server."""
    pids = _child_pids(served.server, "logreg-process", 2)
    assert len(set(pids)) == 2
    assert {_parent(pid) for pid in pids} == {served.server.proc.pid}


def test_killed_model_process_fails_its_batch_with_503_then_recovers(served: Served) -> None:
    """A child killed during a call answers that call 503 (no internals), leaves the version
    unready while it restarts, is counted, and serves again once it is back."""
    server, gate = served.server, served.gate
    (pid,) = _child_pids(server, "gated")
    gate.hold()
    answers: list[httpx.Response] = []
    request = threading.Thread(
        target=lambda: answers.append(
            httpx.post(
                server.base_url + "/predict",
                params={"model": "gated"},
                json={"features": ROW},
                headers=AUTH,
                timeout=60,
            )
        )
    )
    request.start()
    gate.wait_entered(1)
    (gate.directory / "hold-load").touch()  # the restarted child waits in its load
    os.kill(pid, signal.SIGKILL)
    request.join(60)
    (answer,) = answers
    assert answer.status_code == 503, answer.text
    assert answer.json()["code"] == "model_not_ready"
    assert str(pid) not in answer.text
    assert "gated.pkl" not in answer.text
    gate.open()
    ready = poll_status(server.base_url + "/ready", 503)
    assert "gated:1 is loading" in ready.text
    refused = httpx.post(
        server.base_url + "/predict",
        params={"model": "gated"},
        json={"features": ROW},
        headers=AUTH,
        timeout=30,
    )
    assert refused.status_code == 503, refused.text
    samples = parse(httpx.get(server.base_url + "/metrics", headers=AUTH, timeout=10).text)
    assert value(samples, "modelserve_model_ready", model="gated", model_version="1") == 0
    exits = "modelserve_model_process_exits_total"
    assert value(samples, exits, model="gated", model_version="1") == 1
    (gate.directory / "hold-load").unlink()
    poll_status(server.base_url + "/ready", 200)
    wait_for_log_events(server, 1, event="model_process_restarted", model="gated")
    recovered = httpx.post(
        server.base_url + "/predict",
        params={"model": "gated"},
        json={"features": ROW},
        headers=AUTH,
        timeout=30,
    )
    assert recovered.status_code == 200, recovered.text
    assert _exited(pid)


def test_reload_stops_the_replaced_model_process(served: Served) -> None:
    """An admin reload starts a new child for the new artifact and stops the old one."""
    server = served.server
    (old,) = _child_pids(server, "forest-process")
    response = httpx.post(
        f"{server.base_url}/admin/models/forest-process/versions/1/reload",
        headers=AUTH,
        json={},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    _wait_exited([old])
    new = _child_pids(server, "forest-process", 2)[-1]
    assert new != old
    assert not _exited(new)
    rows = load_iris().data[:5].tolist()
    assert _probabilities(server, "forest-process", rows) == _probabilities(
        server, "forest-thread", rows
    )


def test_unload_stops_the_model_process(served: Served) -> None:
    """An admin unload of a version in a process stops its child."""
    server = served.server
    (pid,) = _child_pids(server, "spare")
    response = httpx.post(
        f"{server.base_url}/admin/models/spare/versions/2/unload",
        headers=AUTH,
        json={},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    _wait_exited([pid])


def test_sigterm_drains_the_model_process_batch_then_stops_it(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path
) -> None:
    """On SIGTERM to the server's whole process group, a call inside a model process finishes
    and is answered 200, then the child is stopped and the server exits 0."""
    gate = FileGate(tmp_path / "gate")
    joblib.dump(LoadGatedClassifier(str(gate.directory)).fit(None, None), tmp_path / "gated.pkl")
    config = _config(
        [{"name": "gated", "path": str(tmp_path / "gated.pkl"), "isolation": "process"}]
    )
    server = serve_modelserve(write_config(tmp_path, config), wait=None)
    wait_ready(server, START_TIMEOUT_S)
    (pid,) = _child_pids(server, "gated")
    gate.hold()
    answers: list[httpx.Response] = []
    request = threading.Thread(
        target=lambda: answers.append(
            httpx.post(
                server.base_url + "/predict",
                json={"features": ROW},
                headers=AUTH,
                timeout=60,
            )
        )
    )
    request.start()
    gate.wait_entered(1)
    os.killpg(server.proc.pid, signal.SIGTERM)  # the model process is in the group too
    wait_for_log_events(server, 1, event="shutdown_requested")
    assert not _exited(pid)
    gate.open()
    request.join(60)
    (answer,) = answers
    assert answer.status_code == 200, answer.text
    assert server.stop() == 0
    _wait_exited([pid])


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])
def test_killed_server_leaves_no_model_process(
    serve_modelserve: Callable[..., RunningServer],
    tmp_path: Path,
    demo_models_dir: Path,
    workers: int,
) -> None:
    """SIGKILL to every server process (not to the model processes): each worker's own
    model process sees its socket end and exits."""
    config = _config(
        [{"name": "iris", "path": str(demo_models_dir / IRIS_ONNX), "isolation": "process"}]
    )
    server = serve_modelserve(write_config(tmp_path, config), "--workers", str(workers), wait=None)
    wait_ready(server, START_TIMEOUT_S)
    pids = _child_pids(server, "iris", workers)
    owners = {_parent(pid) for pid in pids}
    assert len(set(pids)) == len(owners) == workers
    for pid in {server.proc.pid, *owners}:
        os.kill(pid, signal.SIGKILL)
    server.proc.wait(timeout=10)
    _wait_exited(pids)


def test_config_reload_dropping_a_version_stops_its_model_process(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path, demo_models_dir: Path
) -> None:
    """A version removed from the file (SIGHUP rereads it) has its child stopped."""
    iris = str(demo_models_dir / IRIS_ONNX)
    kept: dict[str, object] = {"name": "iris", "version": "1", "path": iris}
    dropped: dict[str, object] = {**kept, "version": "2", "isolation": "process"}
    path = write_config(tmp_path, _config([kept, dropped]))
    server = serve_modelserve(path, wait=None)
    wait_ready(server, START_TIMEOUT_S)
    (pid,) = _child_pids(server, "iris")
    write_config(tmp_path, _config([kept]))
    server.proc.send_signal(signal.SIGHUP)
    wait_for_log_events(server, 1, event="config_reloaded")
    _wait_exited([pid])
