"""Every error class against a real process: its status, the one JSON body, the server lives on."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from modelserve.demo import FEATURES
from tests.e2e.conftest import ModuleServers, RunningServer, wait_for_log_events

pytestmark = pytest.mark.e2e

SETOSA = [5.1, 3.5, 1.4, 0.2]
BODY_LIMIT = 1024
MAX_ROWS = 5
POISON = [666.0, 0.0, 0.0, 0.0]


@pytest.fixture(scope="module")
def server(module_servers: ModuleServers) -> RunningServer:
    """iris, a model that raises on a poisoned row, an optional unloadable model, small limits."""
    absent = module_servers.directory / "absent.joblib"
    config = {
        "server": {"max_body_bytes": BODY_LIMIT, "max_batch_rows": MAX_ROWS},
        "cache": {"backend": "none"},
        "default_model": "iris",
        "models": [
            module_servers.iris(feature_names=FEATURES),
            {"name": "failing", "path": str(module_servers.fake_models / "failing.joblib")},
            {"name": "ghost", "path": str(absent), "required": False},
        ],
    }
    return module_servers.serve(config)


def post(server: RunningServer, path: str, **kwargs: Any) -> httpx.Response:
    """POST declaring a JSON body (as every client must), whatever the body holds."""
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    return httpx.post(server.base_url + path, timeout=10, headers=headers, **kwargs)


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    """The response is the one JSON error body with this status and code; returns its detail."""
    assert response.status_code == status, response.text
    body = response.json()
    named = {"model", "model_version"} & set(body)
    assert set(body) - named == {"detail", "code", "request_id"}
    if named:  # raised once a version was chosen: it is named like a success names it
        assert named == {"model", "model_version"}
        assert body["model_version"] == response.headers["x-model-version"]
    assert body["code"] == code
    assert body["request_id"] == response.headers["x-request-id"]
    return str(body["detail"])


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool
    """The server closed the connection after answering."""


def raw_exchange(port: int, head: bytes, chunks: list[bytes]) -> RawAnswer:
    """Send a request by hand (headers, then body pieces) and read the answer within 10 s."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered and closed: exactly what an early 413 does
        data = b""
        while b"\r\n\r\n" not in data:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
        header_block, _, body = data.partition(b"\r\n\r\n")
        status_line, *header_lines = header_block.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines)
        }
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            piece = sock.recv(65536)
            if not piece:
                break
            body += piece
        sock.settimeout(2)
        try:
            closed = sock.recv(1) == b""
        except TimeoutError:
            closed = False
        except ConnectionResetError:
            closed = True
    return RawAnswer(int(status_line.split()[1]), headers, body, closed)


@pytest.mark.parametrize(
    "payload",
    [{"features": ["5.1", 3.5, 1.4, 0.2]}, {"features": None}, {}, {"batch": [SETOSA]}],
    ids=["string-feature", "null-features", "missing-field", "wrong-field"],
)
def test_predict_wrong_types_or_missing_fields_is_422(
    server: RunningServer, payload: dict[str, Any]
) -> None:
    """JSON of the wrong types or without the required field is 422."""
    assert_error(post(server, "/predict", json=payload), 422, "validation_error")


@pytest.mark.parametrize(
    "content",
    [b"features=1,2,3,4", b"\xff\xfe\xfd", b'{"features": [5.1, 3.5, 1.4, "\xe9"]}'],
    ids=["not-json", "binary", "latin-1-text"],
)
def test_predict_non_json_or_non_utf8_body_is_400(server: RunningServer, content: bytes) -> None:
    """A body that is not JSON or not UTF-8 is 400 invalid_json, never 500."""
    response = post(
        server, "/predict", content=content, headers={"Content-Type": "application/json"}
    )
    assert "not valid JSON" in assert_error(response, 400, "invalid_json")


def test_predict_wrong_feature_count_is_400_expected_vs_got(server: RunningServer) -> None:
    """A row of the wrong width is 400 saying expected vs got."""
    detail = assert_error(
        post(server, "/predict", json={"features": [1.0, 2.0, 3.0, 4.0, 5.0]}),
        400,
        "wrong_feature_count",
    )
    assert detail == "expected 4 features, got 5"


@pytest.mark.parametrize(
    ("literal", "shown"),
    [("NaN", "nan"), ("Infinity", "inf"), ("-Infinity", "-inf"), ("1e999", "inf")],
    ids=["nan", "infinity", "minus-infinity", "1e999"],
)
def test_predict_non_finite_feature_is_400_naming_row_and_column(
    server: RunningServer, literal: str, shown: str
) -> None:
    """NaN, ±Infinity and 1e999 are 400 naming the row, column and feature."""
    content = f'{{"batch": [[5.1, 3.5, 1.4, 0.2], [5.1, 3.5, 1.4, {literal}]]}}'.encode()
    detail = assert_error(
        post(server, "/predict-batch", content=content), 400, "non_finite_feature"
    )
    assert detail.endswith(f"row 1, column 3 ('petal_width') is {shown}")


def test_predict_batch_empty_is_422(server: RunningServer) -> None:
    """An empty batch is 422 before the model sees anything."""
    assert_error(post(server, "/predict-batch", json={"batch": []}), 422, "empty_batch")


def test_predict_batch_too_many_rows_is_413(server: RunningServer) -> None:
    """More rows than server.max_batch_rows is 413."""
    response = post(server, "/predict-batch", json={"batch": [SETOSA] * (MAX_ROWS + 1)})
    assert_error(response, 413, "batch_too_large")


def test_body_over_limit_with_content_length_is_413_without_reading_it(
    server: RunningServer,
) -> None:
    """A declared Content-Length over the limit is answered 413 before any of the body is sent."""
    head = (
        b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000000\r\n\r\n"
    )
    answer = raw_exchange(server.port, head, [])
    assert answer.status == 413
    assert orjson.loads(answer.body)["code"] == "body_too_large"


def test_body_over_limit_chunked_is_413_without_reading_it(server: RunningServer) -> None:
    """A chunked body is answered 413 once past the limit, though it never ends."""
    head = (
        b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"400\r\n" + b" " * 1024 + b"\r\n"  # 1 KiB per chunk; no terminating 0-chunk
    answer = raw_exchange(server.port, head, [chunk] * 4)
    assert answer.status == 413
    assert orjson.loads(answer.body)["code"] == "body_too_large"


@pytest.mark.parametrize(
    ("framing", "chunks"),
    [
        (b"Content-Length: 100000000", []),
        (b"Transfer-Encoding: chunked", [b"400\r\n" + b" " * 1024 + b"\r\n"] * 4),
    ],
    ids=["content-length", "chunked"],
)
def test_body_over_limit_closes_the_connection(
    server: RunningServer, framing: bytes, chunks: list[bytes]
) -> None:
    """After a 413 the server closes the connection, so the rest of the body is never read."""
    head = (
        b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        + framing
        + b"\r\n\r\n"
    )
    answer = raw_exchange(server.port, head, chunks)
    assert (answer.status, answer.headers.get("connection")) == (413, "close")
    assert answer.closed


@pytest.mark.parametrize(
    ("params", "code"),
    [({"model": "nope"}, "model_not_found"), ({"model_version": "7"}, "version_not_found")],
    ids=["model", "version"],
)
def test_predict_unknown_model_or_version_is_404(
    server: RunningServer, params: dict[str, str], code: str
) -> None:
    """An unknown model or version is 404."""
    assert_error(post(server, "/predict", json={"features": SETOSA}, params=params), 404, code)


def test_predict_model_not_loaded_is_503_with_reason(server: RunningServer) -> None:
    """A model that failed to load answers 503 with the load failure's reason."""
    response = post(server, "/predict", json={"features": SETOSA}, params={"model": "ghost"})
    assert "model file not found" in assert_error(response, 503, "model_not_ready")


def test_predict_model_exception_is_500_without_internals(server: RunningServer) -> None:
    """An exception inside the model is 500 with a generic message, no traceback or detail."""
    response = post(server, "/predict", json={"features": POISON}, params={"model": "failing"})
    detail = assert_error(response, 500, "prediction_failed")
    assert detail == "the model failed to compute a prediction; see the server log"
    for leak in ("secret", "Traceback", "RuntimeError", "poisoned", ".py"):
        assert leak not in response.text


def test_server_keeps_serving_after_model_exception(server: RunningServer) -> None:
    """After a model exception the process is alive and the same model answers good rows."""
    post(server, "/predict", json={"features": POISON}, params={"model": "failing"})
    response = post(server, "/predict", json={"features": SETOSA}, params={"model": "failing"})
    assert response.status_code == 200
    assert server.proc.poll() is None


def test_model_exception_traceback_is_in_the_log(server: RunningServer) -> None:
    """The model's exception and its frames are logged as structured JSON (batch_failed)."""
    response = post(server, "/predict", json={"features": POISON}, params={"model": "failing"})
    assert response.status_code == 500
    failures = wait_for_log_events(server, 1, timeout_s=10, event="batch_failed", model="failing")
    exception = failures[-1]["exception"]
    assert isinstance(exception, list)
    assert exception[0]["exc_type"] == "RuntimeError"
    assert exception[0]["frames"]


def test_predict_non_finite_model_output_is_400_naming_the_row(server: RunningServer) -> None:
    """Finite but extreme input that drives the model to NaN is refused as the client's
    input (400, found by the schemathesis run), never served as null nor answered 500."""
    response = post(server, "/predict-batch", json={"batch": [SETOSA, [1e308] * 4]})
    detail = assert_error(response, 400, "non_finite_output")
    assert "row 1" in detail
