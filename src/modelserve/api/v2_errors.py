"""Refusals on ``/v2`` paths in the Open Inference Protocol's error body.

The V2 routes answer their own failures as ``{"error": "<message>"}``; this pure ASGI
middleware does the same for refusals made before a V2 route runs (API keys, rate limits,
body size, unknown paths and methods), which answer the server-wide ``{detail, code,
request_id}`` body elsewhere. Status and headers are kept; successful answers pass untouched.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

V2_PREFIX: Final = "/v2"


class V2ErrorBodyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (path == V2_PREFIX or path.startswith("/v2/")):
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        chunks: list[bytes] = []

        async def send_v2(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                if message["status"] >= 400 and _is_json(message):
                    held = message
                    return
            elif message["type"] == "http.response.body" and held is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = _as_v2_error(b"".join(chunks))
                held["headers"] = [
                    (k, str(len(body)).encode() if k == b"content-length" else v)
                    for k, v in held.get("headers", [])
                ]
                await send(held)
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, send_v2)


def _is_json(message: Message) -> bool:
    return any(
        k == b"content-type" and v.startswith(b"application/json")
        for k, v in message.get("headers", [])
    )


def _as_v2_error(body: bytes) -> bytes:
    """``{"detail": ...}`` → ``{"error": "..."}``; anything else (already V2) unchanged."""
    try:
        document: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(document, dict) or "error" in document or "detail" not in document:
        return body
    detail = document["detail"]
    message = detail if isinstance(detail, str) else orjson.dumps(detail).decode()
    return orjson.dumps({"error": message})
