"""The congestion signals on real sockets, and the serving protocol's refusal while they fire."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from modelserve.congestion import congestion
from modelserve.http_protocol import serving_protocol
from tests.conftest import free_port

WAITING = 3
"""Connections left waiting in the accept queue of a listener nobody accepts on."""


@contextlib.contextmanager
def backlogged_listener() -> Iterator[socket.socket]:
    """A listening socket with ``WAITING`` connections the kernel completed but nobody took."""
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.create_server(("127.0.0.1", 0), backlog=16))
        for _ in range(WAITING):
            client = stack.enter_context(socket.create_connection(listener.getsockname()))
            client.settimeout(5)
        yield listener


async def wait_for_accept_queue(expected: int) -> None:
    monitor = congestion(asyncio.get_running_loop())
    async with asyncio.timeout(5):
        # Polling: the monitor's own timer updates the count, nothing signals it.
        while monitor.accept_queue != expected:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_congestion_counts_connections_waiting_to_be_accepted() -> None:
    """The monitor reads how many connections wait in a listener's accept queue."""
    with backlogged_listener() as listener:
        congestion(asyncio.get_running_loop()).watch([listener])

        await wait_for_accept_queue(WAITING)


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("served")(scope, receive, send)


@pytest.fixture
async def server_url() -> AsyncIterator[str]:
    """A uvicorn server with the serving protocol; at most 2 connections may wait to be
    accepted before bodies are refused."""
    port = free_port()
    protocol = serving_protocol(header_timeout_s=10, max_loop_lag_ms=500, max_accept_queue=2)
    config = uvicorn.Config(_app, host="127.0.0.1", port=port, http=protocol, log_config=None)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110  # uvicorn only sets a flag
            await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_serving_protocol_refuses_bodies_at_once_while_connections_wait(
    server_url: str,
) -> None:
    """While more connections wait to be accepted than allowed, a POST gets the documented
    503 overloaded body with Retry-After before the app runs; a GET is still served."""
    async with httpx.AsyncClient(base_url=server_url, timeout=10) as client:
        assert (await client.post("/predict", json={})).text == "served"
        with backlogged_listener() as listener:
            congestion(asyncio.get_running_loop()).watch([listener])
            await wait_for_accept_queue(WAITING)

            refused = await client.post("/predict", json={})
            probe = await client.get("/health")

        congestion(asyncio.get_running_loop()).watch([])
        await wait_for_accept_queue(0)
        served = await client.post("/predict", json={})

    assert (refused.status_code, refused.json()["code"]) == (503, "overloaded")
    assert int(refused.headers["retry-after"]) >= 1
    assert (probe.status_code, probe.text) == (200, "served")
    assert (served.status_code, served.text) == (200, "served")


async def test_serving_protocol_never_sheds_a_lone_request_for_loop_lag() -> None:
    """A loop that lags with nothing else in flight (a busy machine, not arrivals) serves a
    sequential client: every POST is answered by the app, none refused."""
    port = free_port()
    # Any lag is past this bound: only the requests in progress decide.
    protocol = serving_protocol(header_timeout_s=10, max_loop_lag_ms=1e-6, max_accept_queue=64)
    config = uvicorn.Config(_app, host="127.0.0.1", port=port, http=protocol, log_config=None)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110  # uvicorn only sets a flag
                await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            statuses = [(await client.post("/predict", json={})).status_code for _ in range(20)]
    finally:
        server.should_exit = True
        await task
    assert statuses == [200] * 20
