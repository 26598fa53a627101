"""A real server bounds slow and idle clients: header and body deadlines, a connection limit."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from modelserve.demo import FEATURES
from tests.e2e.conftest import RunningServer, write_config

pytestmark = pytest.mark.e2e

WAIT_S = 20.0
"""How long a test waits for the server to act: far beyond the 1 s deadlines configured."""


def _config(directory: Path, server: Mapping[str, object], demo_models_dir: Path) -> Path:
    model = {
        "name": "iris",
        "path": str(demo_models_dir / "iris.joblib"),
        "feature_names": FEATURES,
    }
    return write_config(
        directory, {"models": [model], "cache": {"backend": "none"}, "server": server}
    )


@pytest.fixture(scope="module")
def server(
    serve_modelserve_module: Callable[..., RunningServer],
    demo_models_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> RunningServer:
    settings = {"header_timeout_s": 1, "body_timeout_s": 1}
    return serve_modelserve_module(
        _config(tmp_path_factory.mktemp("slow"), settings, demo_models_dir)
    )


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
    with _connection(server) as sock:
        sock.sendall(partial)
        assert _read_until_closed(sock) == b""
    assert httpx.get(server.base_url + "/health", timeout=10).status_code == 200


def test_body_slower_than_the_deadline_gets_408_and_a_close(server: RunningServer) -> None:
    head = (
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    with _connection(server) as sock:
        sock.sendall(head + b'{"feature')
        response = _read_until_closed(sock)
    status_line, _, rest = response.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 408 Request Timeout"
    assert b"connection: close" in rest.lower()
    assert b'"code":"body_timeout"' in rest.replace(b" ", b"")
    assert httpx.get(server.base_url + "/health", timeout=10).status_code == 200


def test_connections_beyond_the_limit_get_503_and_the_server_recovers(
    serve_modelserve: Callable[..., RunningServer], demo_models_dir: Path, tmp_path: Path
) -> None:
    """Past max_connections a request gets the documented 503 overloaded body with
    Retry-After (not uvicorn's bare text), logged once; the server serves again after."""
    config = _config(tmp_path, {"max_connections": 3, "header_timeout_s": 60}, demo_models_dir)
    server = serve_modelserve(config)
    with contextlib.ExitStack() as held:
        for _ in range(3):
            held.enter_context(_connection(server))
        refusals = []
        for _ in range(100):  # the server sees the held connections within a few tries
            response = httpx.get(server.base_url + "/health", timeout=10)
            if response.status_code == 200:
                time.sleep(0.05)
                continue
            refusals.append(response)
            if len(refusals) == 3:
                break
        assert [r.status_code for r in refusals] == [503] * 3
        assert {r.json()["code"] for r in refusals} == {"overloaded"}
        assert all(int(r.headers["retry-after"]) >= 1 for r in refusals)
    events = [line.get("event") for line in server.log_lines()]
    assert events.count("connection_limit_reached") == 1
    for _ in range(100):
        if httpx.get(server.base_url + "/health", timeout=10).status_code == 200:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("still refusing after the held connections closed")
    assert server.proc.poll() is None
