"""Shutdown's time bounds on a real process: the grace period holds even when a model call is
stuck, a second SIGTERM cuts the pre-stop delay short, and a second SIGINT skips the drain."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import joblib
import pytest

from tests.conftest import free_port
from tests.e2e.conftest import RunningServer, polling_client, wait_for_log_events, write_config
from tests.fakes import StallingClassifier
from tests.prometheus import parse

pytestmark = pytest.mark.e2e

STALL_S = 60.0
"""How long the stuck model call takes: far longer than any bound below."""
STUCK_ROW = {"features": [99.0, 0.0, 0.0, 0.0]}
GRACE_S = 6.0
EXIT_SLACK_S = 4.0
"""Process teardown after the grace period; less than GRACE_S, so waiting out the grace
period twice (once per drain stage) does not pass."""


@pytest.fixture(scope="module")
def stalling_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stalling") / "stalling.joblib"
    joblib.dump(StallingClassifier(99.0, STALL_S).fit(None, None), path)
    return path


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as executor:
        yield executor


def _serve(
    serve_modelserve: Callable[..., RunningServer],
    directory: Path,
    model: Path,
    workers: int = 1,
    **server: float,
) -> RunningServer:
    config = {
        "models": [{"name": "stall", "path": str(model)}],
        "cache": {"backend": "none"},
        "server": {**server, "workers": workers},
    }
    running = serve_modelserve(write_config(directory, config))
    wait_for_log_events(running, workers, event="models_loaded", ready=True)
    return running


def _send_stuck_request(server: RunningServer, pool: ThreadPoolExecutor) -> Future[object]:
    """Send the row that stalls the model; return once the server is handling it.

    The future holds the response, or the transport error the client saw.
    """

    def call() -> object:
        try:
            return httpx.post(server.base_url + "/predict", json=STUCK_ROW, timeout=STALL_S * 2)
        except httpx.TransportError as exc:
            return exc

    future = pool.submit(call)
    in_flight = ("modelserve_http_requests_in_flight", frozenset[tuple[str, str]]())
    with polling_client(timeout_s=5) as client:
        for _ in range(500):
            metrics = parse(client.get(server.base_url + "/metrics").text)
            if metrics.get(in_flight) == 2:  # the stuck request and this scrape
                return future
            time.sleep(0.02)
    raise AssertionError("the stuck request never reached the server")


def _wait_for_exit(server: RunningServer, timeout_s: float) -> tuple[int, float]:
    """The exit status and how long after now the process took to exit."""
    started = time.monotonic()
    returncode = server.proc.wait(timeout=timeout_s)
    return returncode, time.monotonic() - started


@pytest.mark.parametrize("workers", [1, 2], ids=["uvicorn", "gunicorn-2-workers"])
def test_shutdown_exits_within_the_grace_period_while_a_model_call_is_stuck(
    serve_modelserve: Callable[..., RunningServer],
    stalling_model: Path,
    tmp_path: Path,
    pool: ThreadPoolExecutor,
    workers: int,
) -> None:
    """SIGTERM with a 60 s model call running: the stuck request is answered 503
    shutting_down (JSON, naming itself) before the grace period ends, and the process (under
    gunicorn the worker holding the call too, which leaves the call behind instead of being
    killed by the master) is gone within grace_period_s plus teardown, exit 0, its run
    directories (probe files; under gunicorn metrics and control state too) removed."""
    server = _serve(
        serve_modelserve,
        tmp_path,
        stalling_model,
        workers,
        grace_period_s=GRACE_S,
        probe_port=free_port(),
    )
    assert list(server.tmp_dir.glob("modelserve-*"))  # its run directories, while it serves
    stuck = _send_stuck_request(server, pool)

    server.proc.send_signal(signal.SIGTERM)
    returncode, took_s = _wait_for_exit(server, STALL_S / 2)

    outcome = stuck.result(timeout=10)
    assert isinstance(outcome, httpx.Response), outcome
    assert outcome.status_code == 503
    assert outcome.json()["code"] == "shutting_down"
    assert outcome.json()["request_id"] == outcome.headers["x-request-id"]
    assert outcome.headers["connection"] == "close"
    assert returncode == 0
    assert took_s < GRACE_S + EXIT_SLACK_S, took_s
    wait_for_log_events(server, workers, event="server_stopped")
    logged = server.log_lines()
    assert [line["requests"] for line in logged if line["event"] == "requests_abandoned"] == [1]
    assert len([line for line in logged if line["event"] == "model_calls_abandoned"]) == 1
    assert not [line for line in logged if "SIGKILL" in str(line.get("event"))]
    assert not list(server.tmp_dir.glob("modelserve-*"))


def test_shutdown_second_sigterm_cuts_the_prestop_delay_short(
    serve_modelserve: Callable[..., RunningServer], stalling_model: Path, tmp_path: Path
) -> None:
    """With a 60 s pre-stop delay, a second SIGTERM makes the process drain and exit 0 at once."""
    server = _serve(serve_modelserve, tmp_path, stalling_model, prestop_delay_s=STALL_S)
    server.proc.send_signal(signal.SIGTERM)
    wait_for_log_events(server, 1, event="shutdown_requested")
    not_ready = httpx.get(server.base_url + "/ready", timeout=5)

    server.proc.send_signal(signal.SIGTERM)
    returncode, took_s = _wait_for_exit(server, STALL_S / 2)

    assert not_ready.status_code == 503
    assert returncode == 0
    assert took_s < STALL_S / 2
    wait_for_log_events(server, 1, event="server_stopped")


def test_shutdown_second_sigint_skips_the_drain(
    serve_modelserve: Callable[..., RunningServer],
    stalling_model: Path,
    tmp_path: Path,
    pool: ThreadPoolExecutor,
) -> None:
    """With a 60 s grace period and a stuck call, the first SIGINT drains (the process stays),
    the second one stops it at once, without waiting for the call."""
    server = _serve(serve_modelserve, tmp_path, stalling_model, grace_period_s=STALL_S)
    stuck = _send_stuck_request(server, pool)
    server.proc.send_signal(signal.SIGINT)
    wait_for_log_events(server, 1, event="shutdown_requested")
    still_draining = server.proc.poll() is None

    server.proc.send_signal(signal.SIGINT)
    returncode, took_s = _wait_for_exit(server, STALL_S / 2)

    assert still_draining
    assert returncode == 0
    assert took_s < STALL_S / 2
    outcome = stuck.result(timeout=10)
    assert not isinstance(outcome, httpx.Response) or outcome.status_code >= 500
