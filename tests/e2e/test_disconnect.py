"""A client that hangs up costs nothing: real process, model calls counted in /metrics."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import joblib
import orjson
import pytest

from tests import fakes
from tests.e2e.conftest import RunningServer, write_config
from tests.e2e.test_metrics import scrape

pytestmark = pytest.mark.e2e

SLOW = {"model": "slow", "model_version": "1"}
HUNG_UP = 5


MODEL_CALL_S = 5.0
"""Long enough that polling /metrics on a busy machine never outlasts a call."""


@pytest.fixture
def server(serve_modelserve: Callable[..., RunningServer], tmp_path: Path) -> RunningServer:
    """A model taking 5 s per call, one call at a time, one request per call."""
    path = tmp_path / "slow5.joblib"
    # Calls with a row starting 1.0 take 5 s; the warm-up's zeros answer at once.
    joblib.dump(fakes.StallingClassifier(1.0, MODEL_CALL_S).fit(None, None), path)
    model = {
        "name": "slow",
        "path": str(path),
        "batching": {"enabled": False, "inference_threads": 1, "timeout_ms": 60_000},
    }
    return serve_modelserve(write_config(tmp_path, {"models": [model]}))


def wait_for_metric(
    server: RunningServer, name: str, expected: float, labels: dict[str, str] = SLOW
) -> None:
    """Poll /metrics until ``name`` with ``labels`` equals ``expected`` (30 s at most)."""
    deadline = time.monotonic() + 30
    seen = None
    key = (name, frozenset(labels.items()))
    while time.monotonic() < deadline:
        seen = scrape(server.base_url).get(key)  # absent until first recorded
        if seen == expected:
            return
        time.sleep(0.02)
    raise AssertionError(f"{name} stayed {seen}, expected {expected}")


def wait_until_computing(server: RunningServer) -> None:
    """One prediction in flight besides the scrape itself, and nothing queued: it is in the
    model (which holds it five seconds)."""
    wait_for_metric(server, "modelserve_http_requests_in_flight", 2, labels={})
    wait_for_metric(server, "modelserve_queue_rows", 0)


def wait_for_access_lines(server: RunningServer, status: int, count: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lines = server.log_lines()
        done = [
            line
            for line in lines
            if line.get("event") == "request_completed" and line.get("status") == status
        ]
        if len(done) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} access lines with status {status}")


@pytest.fixture
def raw_predictions(server: RunningServer) -> Iterator[Callable[[int], list[socket.socket]]]:
    """Factory: send ``count`` /predict requests on raw sockets, without reading answers."""
    opened: list[socket.socket] = []
    body = orjson.dumps({"features": [1, 2, 3, 4]})
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()

    def send(count: int) -> list[socket.socket]:
        socks = [
            socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(count)
        ]
        for sock in socks:
            sock.sendall(head + body)
        opened.extend(socks)
        return socks

    yield send
    for sock in opened:
        sock.close()


def model_calls(server: RunningServer) -> float:
    """Model calls made by the batcher so far (the warm-up call is not one of them)."""
    samples = scrape(server.base_url)
    return samples.get(("modelserve_batch_rows_count", frozenset(SLOW.items())), 0.0)


def test_hung_up_queued_requests_are_never_computed(
    server: RunningServer, raw_predictions: Callable[[int], list[socket.socket]]
) -> None:
    """Five clients queued behind a running call hang up: their rows are dropped and counted,
    the model is called once (for the client that stayed), and nothing is logged as an error."""
    calls_before = model_calls(server)
    with ThreadPoolExecutor(1) as pool:
        staying = pool.submit(
            httpx.post, server.base_url + "/predict", json={"features": [1, 0, 0, 0]}, timeout=30
        )
        wait_until_computing(server)
        socks = raw_predictions(HUNG_UP)
        wait_for_metric(server, "modelserve_queue_rows", HUNG_UP)
        for sock in socks:
            sock.close()
        wait_for_metric(server, "modelserve_cancelled_rows_total", HUNG_UP)
        wait_for_metric(server, "modelserve_queue_rows", 0)
        assert staying.result(timeout=30).status_code == 200
    assert model_calls(server) == calls_before + 1
    lines = server.log_lines()
    assert [line for line in lines if line.get("level") == "error"] == []
    closed = [line for line in lines if line.get("event") == "request_completed"]
    assert sum(line["status"] == 499 for line in closed) == HUNG_UP


def test_hung_up_computing_request_is_discarded_quietly(
    server: RunningServer, raw_predictions: Callable[[int], list[socket.socket]]
) -> None:
    """A client that hangs up while its row is in the model: the call finishes, the answer
    is dropped, the access line says 499, and no error is logged."""
    calls_before = model_calls(server)
    (sock,) = raw_predictions(1)
    wait_until_computing(server)
    sock.close()
    wait_for_access_lines(server, 499, 1)
    wait_for_metric(server, "modelserve_batch_rows_count", calls_before + 1)
    lines = server.log_lines()
    closed = [line for line in lines if line.get("event") == "request_completed"]
    assert [line["status"] for line in closed if line.get("path") == "/predict"] == [499]
    assert [line for line in lines if line.get("level") == "error"] == []
    samples = scrape(server.base_url)
    assert ("modelserve_cancelled_rows_total", frozenset(SLOW.items())) not in samples


def test_hung_up_v2_infer_is_discarded_quietly(server: RunningServer) -> None:
    """A V2 infer whose client hangs up while its row is in the model: the access line says
    499 and no error is logged (it used to log v2_request_failed and answer 500)."""
    calls_before = model_calls(server)
    body = orjson.dumps(
        {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}
    )
    head = (
        f"POST /v2/models/slow/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + body)
        wait_until_computing(server)
    wait_for_access_lines(server, 499, 1)
    wait_for_metric(server, "modelserve_batch_rows_count", calls_before + 1)
    lines = server.log_lines()
    closed = [line for line in lines if line.get("event") == "request_completed"]
    assert [line["status"] for line in closed if line.get("path") == "/v2/models/slow/infer"] == [
        499
    ]
    assert [line for line in lines if line.get("level") == "error"] == []
