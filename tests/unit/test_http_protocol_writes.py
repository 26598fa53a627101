"""The serving protocol writes a fixed-length response's head and body in one socket write."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from modelserve.http_protocol import serving_protocol


class RecordingTransport(asyncio.Transport):
    """A socket stand-in that keeps every ``write`` call separately."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if data:
            self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _fixed(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("served")(scope, receive, send)


async def _streamed(scope: Scope, receive: Receive, send: Send) -> None:
    async def chunks() -> Any:
        yield b"one"
        yield b"two"

    await StreamingResponse(chunks())(scope, receive, send)


async def _answer(app: Any, request: bytes) -> RecordingTransport:
    protocol_class = serving_protocol(header_timeout_s=10, max_loop_lag_ms=500, max_accept_queue=2)
    config = uvicorn.Config(app, http=protocol_class, log_config=None, lifespan="off")
    config.load()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(request)
    async with asyncio.timeout(5):
        while not b"".join(transport.writes).endswith((b"served", b"0\r\n\r\n")):  # noqa: ASYNC110
            await asyncio.sleep(0.001)
    protocol.connection_lost(None)
    return transport


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\nhost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}",
    ],
    ids=["get", "post"],
)
async def test_serving_protocol_writes_head_and_body_at_once(request_bytes: bytes) -> None:
    """A response with a Content-Length leaves in one transport write, head then body."""
    transport = await _answer(_fixed, request_bytes)

    (written,) = transport.writes
    head, _, body = written.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-length: 6" in head
    assert body == b"served"


async def test_serving_protocol_streams_chunked_responses_as_they_come() -> None:
    """A chunked response still sends its head at once and each chunk as it is produced."""
    transport = await _answer(_streamed, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")

    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[0].endswith(b"\r\n\r\n")
    assert transport.writes[1:] == [b"3\r\none\r\n", b"3\r\ntwo\r\n", b"0\r\n\r\n"]
