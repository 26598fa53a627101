"""Admission by declared rows on a real server: a batch the queue would refuse is refused
from its ``Content-Length``, before its body is read, and the connection stays usable."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import joblib
import orjson
import pytest

from tests import prometheus
from tests.e2e.conftest import RunningServer, polling_client, write_config
from tests.fakes import SlowClassifier

pytestmark = pytest.mark.e2e

MODEL_CALL_S = 2.0
QUEUE_ROWS = 100
ROW = [5.1, 3.5, 1.4, 0.2]
WAIT_S = 30.0
QUEUE_LABELS = {"model": "slow", "model_version": "1"}


def batch_body(rows: int) -> bytes:
    return orjson.dumps({"batch": [ROW] * rows})


@pytest.fixture
def server(
    serve_modelserve: Callable[..., RunningServer], tmp_path_factory: pytest.TempPathFactory
) -> RunningServer:
    models = tmp_path_factory.mktemp("declared-models")
    joblib.dump(SlowClassifier(MODEL_CALL_S).fit(None, None), models / "slow.joblib")
    model = {
        "name": "slow",
        "path": str(models / "slow.joblib"),
        "batching": {
            "max_batch_size": 50,
            "max_queue_rows": QUEUE_ROWS,
            "timeout_ms": 60_000,
            "inference_threads": 1,
        },
    }
    config = {"models": [model], "server": {"access_log": False}, "cache": {"backend": "none"}}
    return serve_modelserve(write_config(models, config))


def post_batch(server: RunningServer, rows: int) -> httpx.Response:
    return httpx.post(
        server.base_url + "/predict-batch",
        content=batch_body(rows),
        headers={"Content-Type": "application/json"},
        timeout=WAIT_S + 10 * MODEL_CALL_S,
    )


def wait_for_queued_rows(server: RunningServer, rows: float) -> None:
    deadline = time.monotonic() + WAIT_S
    with polling_client(timeout_s=5) as client:
        while time.monotonic() < deadline:
            samples = prometheus.parse(client.get(server.base_url + "/metrics").text)
            if prometheus.value(samples, "modelserve_queue_rows", **QUEUE_LABELS) == rows:
                return
            time.sleep(0.05)
    raise AssertionError(f"the queue never held {rows} rows")


def read_response(conn: socket.socket) -> bytes:
    """One response: its head, then as many body bytes as its Content-Length says."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


def test_predict_batch_is_refused_by_its_declared_rows_before_its_body(
    server: RunningServer,
) -> None:
    """With the queue nearly full, a batch whose declared length stands for more rows than
    fit gets 503 ``overloaded`` with ``Retry-After`` while its body has not been sent; the
    body sent afterwards is skipped and the same connection answers the next request."""
    assert post_batch(server, 50).status_code == 200  # the bytes per row are now known
    with ThreadPoolExecutor(2) as pool:
        # One goes into the only model call at once, the other waits in the queue.
        computing, queued = pool.submit(post_batch, server, 50), pool.submit(post_batch, server, 50)
        wait_for_queued_rows(server, 50)
        body = batch_body(60)
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S) as conn:
            conn.sendall(
                b"POST /predict-batch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
            )
            refusal = read_response(conn)  # old servers waited here for the body
            conn.sendall(body + b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            after = read_response(conn)
        assert (computing.result().status_code, queued.result().status_code) == (200, 200)
    head, _, payload = refusal.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    assert b"retry-after:" in head.lower()
    assert orjson.loads(payload)["code"] == "overloaded"
    assert after.startswith(b"HTTP/1.1 200 ")
