"""Predicting and state-changing routes take ``Content-Type: application/json`` only.

A web page can make a visitor's browser POST ``text/plain``, form or multipart bodies to any
address, 127.0.0.1 included, without a CORS preflight, and a body with no ``Content-Type`` at
all (a ``Blob`` of no type); ``application/json`` always needs one, which this server never
grants. So a body of another type is refused with 415 before it is read, and a page cannot
predict or drive the admin API through a browser.

V2 inference also takes the binary tensor extension: a request carrying
``Inference-Header-Content-Length`` with no ``Content-Type`` or ``application/octet-stream``
(what the Triton clients send). That header is not one a page may set without a preflight
either, so the exception opens nothing to a browser.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Scope

from modelserve.errors import UnsupportedMediaTypeError

JSON = "application/json"
BINARY = "application/octet-stream"
BINARY_HEADER = b"inference-header-content-length"
_V2_EXPECTED = (
    "Content-Type: application/json, or Inference-Header-Content-Length "
    "with Content-Type: application/octet-stream (or none)"
)


def _declared_type(scope: Scope) -> str | None:
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == b"content-type":
            return value.decode("latin-1")
    return None


def _media_type(declared: str) -> str:
    return declared.split(";", 1)[0].strip().lower()


def require_json(scope: Scope) -> None:
    """Raise :class:`UnsupportedMediaTypeError` unless the request declares a JSON body."""
    declared = _declared_type(scope)
    if declared is None or _media_type(declared) != JSON:
        raise UnsupportedMediaTypeError(declared)


def require_v2_infer_body(scope: Scope) -> None:
    """Raise :class:`UnsupportedMediaTypeError` unless the request declares a JSON body or is
    a binary tensor request (``Inference-Header-Content-Length``, octet-stream or no type)."""
    declared = _declared_type(scope)
    if declared is not None and _media_type(declared) == JSON:
        return
    binary = any(name == BINARY_HEADER for name, _ in scope["headers"])
    if binary and (declared is None or _media_type(declared) == BINARY):
        return
    raise UnsupportedMediaTypeError(declared, _V2_EXPECTED)


async def json_body_required(request: Request) -> None:
    """The same check as a FastAPI dependency, for the admin routes that change state."""
    require_json(request.scope)
