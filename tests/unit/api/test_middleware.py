"""RequestContextMiddleware: request ids, body-size limit, access log, last-resort 500."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send
from structlog.testing import LogCapture

from modelserve.api.middleware import RequestContextMiddleware
from modelserve.api.route_table import RouteTable
from modelserve.settings import Settings

SETOSA = [5.1, 3.5, 1.4, 0.2]
LIMIT = 2048


async def _explode(request: Request) -> Response:
    raise RuntimeError("secret internal detail")


@pytest.fixture
def logs() -> LogCapture:
    """Captured log entries, with the request's context merged in as in production."""
    capture = LogCapture()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    return capture


def lines(logs: LogCapture, event: str) -> list[dict[str, Any]]:
    return [dict(entry) for entry in logs.entries if entry["event"] == event]


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], demo_models_dir: Path) -> Settings:
    """iris alone, with a small body limit."""
    return settings_factory(
        models=[{"name": "iris", "path": demo_models_dir / "iris.joblib"}],
        server={"max_body_bytes": LIMIT},
        cache={"backend": "none"},
    )


@pytest.fixture
async def client(
    app_client: Callable[..., Any], settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client; the app also has a /explode route that raises."""
    wrapper = app_client(settings)
    wrapper.app.router.routes.append(Route("/explode", _explode))
    async with wrapper as http:
        yield http


async def test_request_id_sent_is_echoed_in_header_and_body(client: httpx.AsyncClient) -> None:
    """An X-Request-ID sent by the client comes back in the header and the body."""
    response = await client.post(
        "/predict", json={"features": SETOSA}, headers={"X-Request-ID": "client-id.42:x_y"}
    )
    assert response.headers["x-request-id"] == "client-id.42:x_y"
    assert response.json()["request_id"] == "client-id.42:x_y"


async def test_request_id_generated_when_absent(client: httpx.AsyncClient) -> None:
    """Without X-Request-ID the server makes a fresh one per request."""
    first = await client.get("/health")
    second = await client.get("/health")
    assert re.fullmatch(r"[0-9a-f]{32}", first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize("unsafe", ["has space", "x" * 129, "new\\nline", "<script>"], ids=str)
async def test_request_id_unsafe_value_is_replaced(client: httpx.AsyncClient, unsafe: str) -> None:
    """A request id that could forge log lines or headers is replaced by a generated one."""
    response = await client.get("/health", headers={"X-Request-ID": unsafe})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


@pytest.mark.parametrize(
    ("sent", "reason"),
    [("has space", "characters other than"), ("x" * 129, "longer than 128 characters")],
    ids=["space", "too-long"],
)
async def test_request_id_refusal_is_logged_with_the_reason(
    client: httpx.AsyncClient, logs: LogCapture, sent: str, reason: str
) -> None:
    """A refused X-Request-ID is answered with a generated id and one warning saying why."""
    response = await client.get("/health", headers={"X-Request-ID": sent})
    (line,) = lines(logs, "request_id_refused")
    assert line["request_id"] == response.headers["x-request-id"]
    assert reason in line["reason"]
    assert line["log_level"] == "warning"


async def test_request_id_of_128_allowed_characters_is_kept(
    client: httpx.AsyncClient, logs: LogCapture
) -> None:
    """The documented form, 1 to 128 of A-Z a-z 0-9 . _ : -, is echoed and nothing is logged."""
    sent = ("Az09._:-" * 16)[:128]
    response = await client.get("/health", headers={"X-Request-ID": sent})
    assert response.headers["x-request-id"] == sent
    assert lines(logs, "request_id_refused") == []


async def test_request_id_on_error_bodies(client: httpx.AsyncClient) -> None:
    """Error bodies carry the request id too."""
    response = await client.post(
        "/predict",
        content=b"nope",
        headers={"X-Request-ID": "e-1", "Content-Type": "application/json"},
    )
    assert response.json()["request_id"] == "e-1"


async def test_body_limit_declared_length_is_413(client: httpx.AsyncClient) -> None:
    """A Content-Length over server.max_body_bytes is 413 body_too_large."""
    response = await client.post("/predict", content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert response.json()["code"] == "body_too_large"
    assert str(LIMIT) in response.json()["detail"]


async def test_body_limit_chunked_body_stops_reading(client: httpx.AsyncClient) -> None:
    """A chunked body is refused with 413 once past the limit, without reading the rest."""
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(1000):
            sent += 1
            yield b"x" * 1024

    response = await client.post(
        "/predict", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "body_too_large"
    assert sent < 1000


async def test_body_limit_allows_bodies_up_to_the_limit(client: httpx.AsyncClient) -> None:
    """A body of exactly the limit is read (here: valid JSON padded with spaces)."""
    payload = b'{"features": [5.1, 3.5, 1.4, 0.2]}'
    response = await client.post(
        "/predict", content=payload.ljust(LIMIT), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200


async def test_unexpected_exception_is_generic_500(client: httpx.AsyncClient) -> None:
    """An exception no handler knows becomes a generic 500 body without internal detail."""
    response = await client.get("/explode", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.json() == {
        "detail": "internal server error",
        "code": "internal_error",
        "request_id": "boom-1",
    }


async def test_unexpected_exception_traceback_goes_to_the_log(
    client: httpx.AsyncClient, logs: LogCapture
) -> None:
    """The traceback of an unexpected exception is logged once, with the request id."""
    await client.get("/explode", headers={"X-Request-ID": "boom-2"})
    failures = lines(logs, "request_failed")
    assert len(failures) == 1
    assert failures[0]["request_id"] == "boom-2"
    assert isinstance(failures[0]["exc_info"], RuntimeError)


async def test_access_log_line_per_request(client: httpx.AsyncClient, logs: LogCapture) -> None:
    """Each request logs one request_completed line with id, method, path, status and latency
    (more than nothing, no more than the client waited)."""
    started = time.perf_counter()
    await client.get("/health", headers={"X-Request-ID": "acc-1"})
    waited_ms = (time.perf_counter() - started) * 1000
    (line,) = lines(logs, "request_completed")
    assert line["request_id"] == "acc-1"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/health", 200)
    assert 0 < line["latency_ms"] <= waited_ms


async def test_access_log_line_carries_prediction_fields(
    client: httpx.AsyncClient, logs: LogCapture
) -> None:
    """A /predict access line adds model, version, batch size, prediction and confidence."""
    await client.post("/predict", json={"features": SETOSA})
    (line,) = lines(logs, "request_completed")
    assert (line["model"], line["model_version"], line["batch_size"]) == ("iris", "1", 1)
    assert line["prediction"] == "0"
    assert 0 < line["confidence"] <= 1


async def test_access_log_line_of_batch_has_per_sample_latency(
    client: httpx.AsyncClient, logs: LogCapture
) -> None:
    """A /predict-batch access line adds its size and the average latency per sample: the
    prediction's time over its rows, which fits within the request's own latency."""
    await client.post("/predict-batch", json={"batch": [SETOSA] * 4})
    (line,) = lines(logs, "request_completed")
    assert line["batch_size"] == 4
    per_sample_ms = line["avg_latency_per_sample_ms"]
    assert 0 < per_sample_ms * 4 <= line["latency_ms"] + 0.001  # each figure is rounded


async def test_access_log_status_of_errors(client: httpx.AsyncClient, logs: LogCapture) -> None:
    """The access line records the status actually sent, errors included."""
    await client.post("/predict", json={"features": [1.0]})
    (line,) = lines(logs, "request_completed")
    assert line["status"] == 400
    assert type(line["status"]) is int  # not HTTPStatus, whose repr shows in console logs


async def test_access_log_can_be_turned_off(
    app_client: Callable[..., Any], settings: Settings, logs: LogCapture
) -> None:
    """With server.access_log false no request_completed line is written."""
    settings.server.access_log = False
    async with app_client(settings) as http:
        await http.get("/health")
    assert lines(logs, "request_completed") == []


async def test_access_log_probes_can_be_quieted_alone(
    app_client: Callable[..., Any], settings: Settings, logs: LogCapture
) -> None:
    """server.access_log_probes false drops /health and /ready lines, keeps the others."""
    settings.server.access_log_probes = False
    async with app_client(settings) as http:
        await http.get("/health")
        await http.get("/ready")
        await http.post("/predict", json={"features": SETOSA})
    assert [line["path"] for line in lines(logs, "request_completed")] == ["/predict"]


async def test_request_context_does_not_leak_between_requests(client: httpx.AsyncClient) -> None:
    """Fields bound for one request are gone once it is answered."""
    await client.post("/predict", json={"features": SETOSA}, headers={"X-Request-ID": "leak"})
    assert "request_id" not in structlog.contextvars.get_contextvars()
    assert "model" not in structlog.contextvars.get_contextvars()


async def test_request_id_with_a_trailing_newline_is_replaced() -> None:
    """The whole value must match the allowed form: "abc\\n" is not taken as a request id."""
    seen: list[str] = []

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["state"]["request_id"])
        await Response(b"")(scope, receive, send)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    middleware = RequestContextMiddleware(
        endpoint, table=RouteTable([]), max_body_bytes=LIMIT, access_log=False
    )
    for sent in (b"abc", b"abc\n"):
        scope: Scope = {
            "type": "http",
            "method": "GET",
            "path": "/",
            "headers": [(b"x-request-id", sent)],
        }
        await middleware(scope, receive, send)
    assert seen[0] == "abc"
    assert re.fullmatch(r"[0-9a-f]{32}", seen[1])
