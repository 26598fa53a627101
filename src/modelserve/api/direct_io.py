"""Reading a request and writing its answer on the hot routes without Starlette's conveniences.

``Request.body()`` goes through an async generator and ``aclosing`` for every request (about
7 % of the single-row /predict path in py-spy, for what is nearly always one message), a
``Headers`` object is built for a single lookup, ``QueryParams`` builds a multi-dict for a
lookup or two, and ``Response`` normalises its headers.
The routes dispatched directly (/predict, /predict-batch, V2 infer) use these instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Scope


async def read_body(request: Request) -> bytes:
    """The request body, read straight from ``receive``."""
    chunks: list[bytes] = []
    while True:
        message = await request.receive()
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()


def header(scope: Scope, name: bytes) -> str | None:
    """One request header by its lower-case name (the first one sent)."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def query(scope: Scope) -> dict[str, str]:
    """The query parameters, the last value of a repeated name winning, exactly as
    ``request.query_params.get`` reads them (without the multi-dict it builds).

    A query with nothing escaped (no ``%``, no ``+``: ``model=iris``) is split here: what
    ``parse_qsl`` does with it, at a fraction of its cost on the hot path."""
    text = scope["query_string"].decode("latin-1")
    if "%" in text or "+" in text:
        return dict(parse_qsl(text, keep_blank_values=True))
    params: dict[str, str] = {}
    for part in text.split("&"):
        if part:
            name, _, value = part.partition("=")
            params[name] = value
    return params


class RawResponse(Response):
    """A 200 answer of ready bytes, its raw headers built directly: ``content-length``,
    ``content-type``, then ``headers`` (lower-case names)."""

    def __init__(
        self, body: bytes, content_type: bytes, headers: Iterable[tuple[bytes, bytes]] = ()
    ) -> None:
        self.status_code = 200
        self.background = None
        self.body = body
        self.raw_headers = [
            (b"content-length", str(len(body)).encode()),
            (b"content-type", content_type),
            *headers,
        ]
