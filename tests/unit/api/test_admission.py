"""InFlightBytesLimit: bodies in flight are bounded by their declared bytes."""

from __future__ import annotations

import asyncio

import orjson
from starlette.types import Message, Receive, Scope, Send

from modelserve.api.admission import InFlightBytesLimit

LIMIT = 1000


class HeldApp:
    """An endpoint that answers 200 only once ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.entered.set()
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def scope_for(length: int | None, method: str = "POST") -> Scope:
    headers = [] if length is None else [(b"content-length", str(length).encode())]
    return {"type": "http", "method": method, "headers": headers, "state": {"request_id": "r1"}}


async def call(app: InFlightBytesLimit, scope: Scope) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_inflight_bytes_refuses_at_once_past_the_limit() -> None:
    """With 600 declared bytes in flight, another 600 gets 503 overloaded with Retry-After."""
    inner = HeldApp()
    app = InFlightBytesLimit(inner, max_inflight_bytes=LIMIT, max_body_bytes=LIMIT)
    held = asyncio.create_task(call(app, scope_for(600)))
    await inner.entered.wait()
    refused = await call(app, scope_for(600))
    assert refused[0]["status"] == 503
    assert (b"retry-after", b"1") in refused[0]["headers"]
    assert orjson.loads(refused[1]["body"])["code"] == "overloaded"
    inner.release.set()
    assert (await held)[0]["status"] == 200
    assert (await call(app, scope_for(600)))[0]["status"] == 200
    assert app.inflight == 0


async def test_inflight_bytes_admits_one_oversized_request_when_idle() -> None:
    """A request larger than the whole budget is still served when nothing is in flight."""
    inner = HeldApp()
    inner.release.set()
    app = InFlightBytesLimit(inner, max_inflight_bytes=LIMIT, max_body_bytes=LIMIT)
    assert (await call(app, scope_for(LIMIT * 5)))[0]["status"] == 200


async def test_inflight_bytes_charges_undeclared_bodies_the_body_limit() -> None:
    """A POST without Content-Length counts as max_body_bytes; a GET counts nothing."""
    inner = HeldApp()
    app = InFlightBytesLimit(inner, max_inflight_bytes=LIMIT, max_body_bytes=LIMIT)
    held = asyncio.create_task(call(app, scope_for(None)))
    await inner.entered.wait()
    assert app.inflight == LIMIT
    assert (await call(app, scope_for(10)))[0]["status"] == 503
    inner.release.set()
    assert (await call(app, scope_for(None, method="GET")))[0]["status"] == 200
    await held
