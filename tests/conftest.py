"""Shared fixtures: tiny real models built once per run, settings, in-process apps, Redis."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import joblib
import pytest
import structlog
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from filelock import FileLock

from modelserve.app import create_app
from modelserve.demo import build_demo
from modelserve.settings import Settings, load_settings
from tests import fakes

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under ``--dist loadgroup`` each test file runs on one worker, as with ``loadfile``
    (its module-scoped servers start once), and the cluster files share one: their fleet is
    a session fixture, started once per worker that runs any of them."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            path = item.path.relative_to(REPO_ROOT)
            group = "cluster" if path.parts[:2] == ("tests", "cluster") else str(path)
            item.add_marker(pytest.mark.xdist_group(group))


def run_shared_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A directory of this run that every pytest-xdist worker sees (the base temporary
    directory of the run, which holds each worker's own), not yet created."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name


def build_once(out: Path, build: Callable[[Path], object]) -> Path:
    """Run ``build(out)`` unless an earlier call (of any process) finished it; concurrent
    callers wait for the one building."""
    with FileLock(out.with_name(out.name + ".lock")):
        done = out / ".built"
        if not done.exists():
            out.mkdir(parents=True, exist_ok=True)
            build(out)
            done.touch()
    return out


@pytest.fixture(scope="session")
def demo_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo models (joblib, ONNX, skops, TorchScript) and their modelserve.yaml, built
    once per run and shared by the xdist workers (building them costs about 14 s of CPU).

    ``MODELSERVE_TEST_DEMO_DIR`` names a directory to build them in once and reuse across
    runs: `make mutate` runs the tests once per mutant, and building the demo would cost more
    than the tests themselves.
    """
    reused = os.environ.get("MODELSERVE_TEST_DEMO_DIR")
    return build_once(
        Path(reused) if reused else run_shared_dir(tmp_path_factory, "demo"), build_demo
    )


@pytest.fixture(scope="session")
def fake_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Pickled test doubles: slow.joblib (1 s per call), failing.joblib, sum.joblib."""
    out = tmp_path_factory.mktemp("fakes")
    joblib.dump(fakes.SlowClassifier(1.0).fit(None, None), out / "slow.joblib")
    joblib.dump(fakes.SlowClassifier(0.2).fit(None, None), out / "slowish.joblib")
    joblib.dump(fakes.FailingClassifier().fit(None, None), out / "failing.joblib")
    joblib.dump(fakes.SumRegressor().fit(None, None), out / "sum.joblib")
    (out / "corrupt.joblib").write_bytes(b"this is not a pickle")
    return out


@pytest.fixture
def settings_factory(demo_models_dir: Path) -> Callable[..., Settings]:
    """Settings from the demo config, with overrides in the same nested shape as the file.

    Overrides that bring their own ``models`` also turn the demo's ``require_sha256`` off
    (unless they set it): the pins of the demo files do not cover them.
    """

    def make(**overrides: Any) -> Settings:
        if "models" in overrides:
            overrides.setdefault("require_sha256", False)
        return load_settings(demo_models_dir / "modelserve.yaml", **overrides)

    return make


@pytest.fixture
def app_client(settings_factory: Callable[..., Settings]) -> Callable[..., Any]:
    """Factory: ``async with app_client(settings) as client`` runs the lifespan in-process."""

    class _Client:
        def __init__(self, settings: Settings | None = None) -> None:
            self.settings = settings or settings_factory()
            self.app: FastAPI = create_app(self.settings)

        async def __aenter__(self) -> httpx.AsyncClient:
            self._lifespan = LifespanManager(self.app, startup_timeout=60)
            await self._lifespan.__aenter__()
            await wait_until_loaded(self.app)
            self._client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=self._lifespan.app), base_url="http://test"
            )
            return self._client

        async def __aexit__(self, *exc: object) -> None:
            await self._client.aclose()
            await self._lifespan.__aexit__(None, None, None)

    return _Client


async def wait_until_loaded(app: FastAPI, timeout_s: float = 60) -> None:
    """Wait for the start-up of an in-process app to finish: its models loaded in the
    background and the control state applied once after that.

    The second step runs a few event-loop turns after the first, and readiness waits for it
    too: an app only "loaded" can still answer not ready, when the poll lands between them.
    """
    import asyncio

    deadline = time.monotonic() + timeout_s
    health = app.state.health
    while not (health.loading_done and health.control_synced):
        if time.monotonic() > deadline:
            raise TimeoutError("the start-up did not finish")
        await asyncio.sleep(0.01)


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """Each test starts with structlog's defaults (tests may capture logs)."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def start_redis(
    workdir: Path, *, password: str | None = None, port: int | None = None
) -> tuple[str, subprocess.Popen[bytes]]:
    """Start a real redis-server on loopback (a free port unless given); return its URL
    (with the password, when one is required) and process."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed; run the suite with `make test`")
    port = port or free_port()
    options = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)]
    if password is not None:
        options += ["--requirepass", password]
    proc = subprocess.Popen(
        [binary, "--port", str(port), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    credentials = f":{password}@" if password is not None else ""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return f"redis://{credentials}127.0.0.1:{port}/0", proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail("redis-server did not start")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port for the whole run; yields its URL."""
    url, proc = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The session Redis, flushed before the test."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    return redis_server


def pythonpath_env() -> dict[str, str]:
    """Environment for subprocesses: tests' doubles importable, no stray MODELSERVE_ vars."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env
