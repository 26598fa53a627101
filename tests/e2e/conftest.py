"""Start the real ``modelserve serve`` on a free port, wait for /ready, stop it by pid."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from tests.conftest import free_port, pythonpath_env

MODELSERVE = [sys.executable, "-m", "modelserve"]

IRIS_ONNX = "iris.onnx"
"""The demo's iris pipeline as ONNX, for servers whose model format is irrelevant to what a
test proves: its runtime imports in a fraction of a second, scikit-learn's takes seconds of
every start-up (tests of the sklearn path serve ``iris.joblib``)."""


@dataclass
class RunningServer:
    """A modelserve process under test."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    tmp_dir: Path
    """The server's TMPDIR (its own, or the one the test gave): where it makes its run
    directories; removed after the server is killed at teardown."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_lines(self) -> list[dict[str, object]]:
        """Every line the server wrote to stdout, parsed (fails on a non-JSON line).

        The server writes its lines from a thread that drains a queue every 20 ms, so a line
        logged before a response can reach the file just after it: while the process runs,
        wait (at most a second) until the file has stopped growing for several drains."""
        if self.proc.poll() is None:
            _wait_until_quiet(self.log_path)
        text = self.log_path.read_bytes().splitlines()
        return [orjson.loads(line) for line in text if line.strip()]

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout_s)


def _wait_until_quiet(path: Path, quiet_s: float = 0.15, timeout_s: float = 1.0) -> None:
    deadline = time.monotonic() + timeout_s
    size, since = path.stat().st_size, time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.02)
        now_size = path.stat().st_size
        if now_size != size:
            size, since = now_size, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return


def polling_client(timeout_s: float) -> httpx.Client:
    """One client for every poll of a wait: ``httpx.get`` builds a TLS context per call (about
    60 ms of CPU), which every 50 ms took a core from the server starting on a 2-core machine.
    No keep-alive, so each poll is a new connection as with ``httpx.get`` (under gunicorn any
    worker may answer it)."""
    return httpx.Client(timeout=timeout_s, limits=httpx.Limits(max_keepalive_connections=0))


def wait_ready(server: RunningServer, timeout_s: float = 60, path: str = "/ready") -> None:
    deadline = time.monotonic() + timeout_s
    with polling_client(timeout_s=1) as client:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(f"server exited with {server.proc.returncode}:\n{_tail(server)}")
            try:
                if client.get(server.base_url + path).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    raise TimeoutError(f"server not ready after {timeout_s} s:\n{_tail(server)}")


def wait_for_log_events(
    server: RunningServer, count: int, timeout_s: float = 60, **fields: object
) -> list[dict[str, object]]:
    """Wait until the log holds ``count`` lines whose values match ``fields``; return them
    (for instance one ``control_state_applied`` line per worker at a given version)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = [
            line
            for line in server.log_lines()
            if all(line.get(key) == value for key, value in fields.items())
        ]
        if len(lines) >= count:
            return lines
        if server.proc.poll() is not None:
            break
        time.sleep(0.05)
    raise TimeoutError(f"fewer than {count} log lines with {fields}:\n{_tail(server)}")


def poll_status(
    url: str,
    status: int,
    timeout_s: float = 60,
    interval_s: float = 0.05,
    request_timeout_s: float = 5,
) -> httpx.Response:
    """GET ``url`` until it answers ``status`` (connection errors included, as a stopped or
    killed worker gives); fail naming the last answer after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    with polling_client(request_timeout_s) as client:
        while time.monotonic() < deadline:
            try:
                response = client.get(url)
            except httpx.HTTPError as exc:
                last = exc
            else:
                if response.status_code == status:
                    return response
                last = (response.status_code, response.text)
            time.sleep(interval_s)
    raise AssertionError(f"{url} never answered {status}; last: {last!r}")


def _tail(server: RunningServer) -> str:
    return "\n".join(server.log_path.read_text(errors="replace").splitlines()[-20:])


def write_config(directory: Path, data: dict[str, Any], name: str = "modelserve.yaml") -> Path:
    """Write a YAML config for a server under test; returns its path."""
    path = directory / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def serve_modelserve(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """Factory: ``serve_modelserve(config_or_model_path, *extra_args, wait="/ready")``."""
    with _server_factory(tmp_path) as start:
        yield start


@pytest.fixture(scope="module")
def serve_modelserve_module(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., RunningServer]]:
    """The same factory for servers shared by a whole test module (killed at its end)."""
    with _server_factory(tmp_path_factory.mktemp("servers")) as start:
        yield start


@dataclass
class ModuleServers:
    """Servers shared by one test module, the model files they are made of, and a directory
    of the module's own for the configs and models it writes."""

    demo_models: Path
    fake_models: Path
    directory: Path
    start: Callable[..., RunningServer]
    _configs: Iterator[int] = field(default_factory=itertools.count)

    def iris(self, model_file: str = "iris.joblib", **fields: object) -> dict[str, object]:
        """The demo's iris model (``model_file``: another demo file of it, e.g. IRIS_ONNX) as
        a config entry, with ``fields`` added."""
        return {"name": "iris", "path": str(self.demo_models / model_file), **fields}

    def serve(
        self, config: dict[str, Any], *extra: str, wait: str | None = "/ready"
    ) -> RunningServer:
        """Write ``config`` to a file of its own in the module's directory and serve it."""
        name = f"modelserve-{next(self._configs)}.yaml"
        return self.start(write_config(self.directory, config, name), *extra, wait=wait)


@pytest.fixture(scope="module")
def module_servers(
    serve_modelserve_module: Callable[..., RunningServer],
    demo_models_dir: Path,
    fake_models_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> ModuleServers:
    """Start servers shared by the whole module: ``module_servers.serve(config)``."""
    return ModuleServers(
        demo_models_dir, fake_models_dir, tmp_path_factory.mktemp("module"), serve_modelserve_module
    )


@pytest.fixture(scope="session")
def demo_server(
    tmp_path_factory: pytest.TempPathFactory, demo_models_dir: Path
) -> Iterator[RunningServer]:
    """One server of the demo config (the quick start) for the whole run; tests only read it."""
    with _server_factory(tmp_path_factory.mktemp("demo-server")) as start:
        yield start(demo_models_dir / "modelserve.yaml")


@contextlib.contextmanager
def _server_factory(directory: Path) -> Iterator[Callable[..., RunningServer]]:
    started: list[RunningServer] = []

    def start(
        target: Path, *extra: str, wait: str | None = "/ready", env: dict[str, str] | None = None
    ) -> RunningServer:
        port = free_port()
        log_path = directory / f"server-{port}.log"
        given_tmp = (env or {}).get("TMPDIR")
        tmp_dir = Path(given_tmp) if given_tmp else directory / f"tmp-{port}"
        tmp_dir.mkdir(exist_ok=True)
        source = ["--config", str(target)] if target.suffix in (".yaml", ".yml") else [str(target)]
        command = [
            *MODELSERVE,
            "serve",
            *source,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *extra,
        ]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**pythonpath_env(), "TMPDIR": str(tmp_dir), **(env or {})},
                start_new_session=True,  # its own process group: teardown reaps gunicorn workers
            )
        server = RunningServer(proc, port, log_path, tmp_dir)
        started.append(server)
        if wait is not None:
            wait_ready(server, path=wait)
        return server

    yield start
    for server in started:
        # The whole group: a gunicorn master killed by a test would otherwise orphan workers.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
        # A killed server cannot remove its run directories (metrics, probe and control files).
        shutil.rmtree(server.tmp_dir, ignore_errors=True)
