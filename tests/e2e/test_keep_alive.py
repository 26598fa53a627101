"""Kept-alive connections of a real server outlive the idle expiry of common clients."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import IRIS_ONNX, RunningServer

pytestmark = pytest.mark.e2e

CLIENT_EXPIRY_S = 5.0
"""httpx keeps idle connections this long (and uvicorn closed them after as long)."""
REQUEST = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def read_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data  # closed by the server
        data += chunk
    return data


def test_kept_alive_connection_idle_past_the_client_expiry_is_served(
    serve_modelserve: Callable[..., RunningServer], demo_models_dir: Path
) -> None:
    """A connection left idle a little longer than httpx's idle expiry still carries the next
    request: the server's keep-alive (server.keep_alive_s) is longer, so a client reusing a
    connection it still trusts never races the server closing it."""
    server = serve_modelserve(demo_models_dir / IRIS_ONNX)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(REQUEST)
        assert read_head(conn).startswith(b"HTTP/1.1 200 ")
        time.sleep(CLIENT_EXPIRY_S + 1)  # the idle time under test, not a race
        try:
            conn.sendall(REQUEST)
            second = read_head(conn)
        except ConnectionResetError:
            second = b"reset"
    assert second.startswith(b"HTTP/1.1 200 "), second
