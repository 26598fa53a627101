"""A real server bounds slow and idle clients: header and body deadlines, a connection limit;
one process (uvicorn) and gunicorn with two workers, where each worker applies them."""

from __future__ import annotations

import contextlib
import math
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from modelserve.demo import FEATURES
from tests.e2e.conftest import (
    IRIS_ONNX,
    RunningServer,
    polling_client,
    wait_for_log_events,
    write_config,
)

pytestmark = pytest.mark.e2e

WAIT_S = 20.0
"""How long a test waits for the server to act: far beyond the 1 s deadlines configured."""


def _config(directory: Path, server: Mapping[str, object], demo_models_dir: Path) -> Path:
    model = {
        "name": "iris",
        "path": str(demo_models_dir / IRIS_ONNX),
        "feature_names": FEATURES,
    }
    return write_config(
        directory, {"models": [model], "cache": {"backend": "none"}, "server": server}
    )


WORKERS = [1, 2]
WORKER_IDS = ["uvicorn", "gunicorn-2-workers"]


def _serve(start: Callable[..., RunningServer], config: Path, workers: int) -> RunningServer:
    """A server of ``workers`` processes, once every worker has loaded its models."""
    server = start(config, "--workers", str(workers))
    wait_for_log_events(server, workers, event="models_loaded", ready=True)
    return server


@pytest.fixture(scope="module", params=WORKERS, ids=WORKER_IDS)
def server(
    request: pytest.FixtureRequest,
    serve_modelserve_module: Callable[..., RunningServer],
    demo_models_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> RunningServer:
    settings = {"header_timeout_s": 1, "body_timeout_s": 1}
    config = _config(tmp_path_factory.mktemp("slow"), settings, demo_models_dir)
    return _serve(serve_modelserve_module, config, request.param)


@contextlib.contextmanager
def _connection(server: RunningServer) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S) as sock:
        yield sock


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; a socket timeout fails the test."""
    received = b""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"connection still open after {WAIT_S} s; got {received!r}")


@pytest.mark.parametrize(
    "partial",
    [b"", b"POST /predict HT", b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty"],
    ids=["idle", "half-request-line", "half-headers"],
)
def test_connection_without_complete_headers_is_closed(
    server: RunningServer, partial: bytes
) -> None:
    """Every connection (several, so that under gunicorn each worker gets some) is closed."""
    with contextlib.ExitStack() as opened:
        socks = [opened.enter_context(_connection(server)) for _ in range(6)]
        for sock in socks:
            sock.sendall(partial)
        assert [_read_until_closed(sock) for sock in socks] == [b""] * len(socks)
    assert httpx.get(server.base_url + "/health", timeout=10).status_code == 200


def test_body_slower_than_the_deadline_gets_408_and_a_close(server: RunningServer) -> None:
    """Each half-sent body (several connections, for every worker) gets 408 and a close."""
    head = (
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    with contextlib.ExitStack() as opened:
        socks = [opened.enter_context(_connection(server)) for _ in range(4)]
        for sock in socks:
            sock.sendall(head + b'{"feature')
        responses = [_read_until_closed(sock) for sock in socks]
    for response in responses:
        status_line, _, rest = response.partition(b"\r\n")
        assert status_line == b"HTTP/1.1 408 Request Timeout"
        assert b"connection: close" in rest.lower()
        assert b'"code":"body_timeout"' in rest.replace(b" ", b"")
    assert httpx.get(server.base_url + "/health", timeout=10).status_code == 200


@pytest.mark.parametrize("workers", WORKERS, ids=WORKER_IDS)
def test_connections_beyond_the_limit_get_503_and_the_server_recovers(
    serve_modelserve: Callable[..., RunningServer],
    demo_models_dir: Path,
    tmp_path: Path,
    workers: int,
) -> None:
    """Past max_connections a request gets the error model's 503 (JSON, Retry-After, a close;
    the V2 body on /v2 paths), logged once per interval; freed slots serve again. Under
    gunicorn the limit is each worker's: enough connections are held to fill them all."""
    config = _config(tmp_path, {"max_connections": 3, "header_timeout_s": 60}, demo_models_dir)
    server = _serve(serve_modelserve, config, workers)
    started = time.monotonic()
    with contextlib.ExitStack() as held:
        for _ in range(3 if workers == 1 else 12 * workers):
            held.enter_context(_connection(server))
        refused = _refused_once_held(server, "/health")
        v2_refused = _refused_once_held(server, "/v2/health/live")
    assert refused.json()["code"] == "overloaded"
    assert "server.max_connections" in refused.json()["detail"]
    assert set(refused.json()) == {"detail", "code", "request_id"}
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["connection"] == "close"
    assert set(v2_refused.json()) == {"error"}
    assert "server.max_connections" in v2_refused.json()["error"]
    assert v2_refused.headers["retry-after"] == "1"
    with polling_client(timeout_s=10) as client:
        for _ in range(100):
            if client.get(server.base_url + "/health").status_code == 200:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("still refusing after the held connections closed")
    assert server.proc.poll() is None
    elapsed = time.monotonic() - started
    assert server.stop() == 0
    logged = [line for line in server.log_lines() if line["event"] == "connection_limit_reached"]
    # At most once per 10 s in each worker, not once per refusal.
    assert 1 <= len(logged) <= workers * (1 + math.ceil(elapsed / 10))


def _refused_once_held(server: RunningServer, path: str) -> httpx.Response:
    """GET ``path`` until the server, seeing the held connections, refuses it (bounded)."""
    with polling_client(timeout_s=10) as client:
        for _ in range(100):  # the server sees the held connections within a few tries
            response = client.get(server.base_url + path)
            if response.status_code == 503:
                return response
            time.sleep(0.05)
    raise AssertionError(f"{path}: never refused past max_connections")
