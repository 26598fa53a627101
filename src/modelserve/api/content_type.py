"""Predicting and state-changing routes take ``Content-Type: application/json`` only.

A web page can make a visitor's browser POST ``text/plain``, form or multipart bodies to any
address, 127.0.0.1 included, without a CORS preflight; ``application/json`` always needs one,
which this server never grants. So a body of another type is refused with 415 before it is
read, and a page cannot predict or drive the admin API through a browser.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Scope

from modelserve.errors import UnsupportedMediaTypeError

JSON = "application/json"


def require_json(scope: Scope) -> None:
    """Raise :class:`UnsupportedMediaTypeError` unless the request declares a JSON body."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            declared = value.decode("latin-1")
            if declared.split(";", 1)[0].strip().lower() == JSON:
                return
            raise UnsupportedMediaTypeError(declared)
    raise UnsupportedMediaTypeError(None)


async def json_body_required(request: Request) -> None:
    """The same check as a FastAPI dependency, for the admin routes that change state."""
    require_json(request.scope)
