"""Refusals made before a V2 route runs answer in the Open Inference Protocol's error body,
against a real server: API keys (401, 403, 429 after failed authentications), rate limits
(429), body size (413), bytes in flight (503), unknown paths (404) and methods (405). The same
refusals on the server's own paths keep ``{detail, code, request_id}``. (415 and the
connection limit's 503 on /v2 paths: test_v2_security.py, test_slow_clients.py.)"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.e2e.conftest import IRIS_ONNX, RunningServer, write_config

pytestmark = pytest.mark.e2e

OPS_KEY = "e2e-v2-refusals-ops-5c1e9a7d3b"
READER_KEY = "e2e-v2-refusals-reader-8d2f6b4a"
LIMITED_KEY = "e2e-v2-refusals-limited-3e7a1c9f"
WRONG_KEY = "e2e-v2-refusals-wrong-0a4c8e2b6d"
MAX_BODY_BYTES = 4096
MAX_INFLIGHT_BYTES = 6144
ROW = [5.1, 3.5, 1.4, 0.2]
INFER = orjson.dumps(
    {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
)
JSON = {"Content-Type": "application/json"}
WAIT_S = 30.0


def _keys() -> list[dict[str, object]]:
    return [
        {"name": "ops", "key": OPS_KEY, "scopes": ["predict", "admin"]},
        {"name": "reader", "key": READER_KEY, "scopes": ["predict"]},
        {"name": "limited", "key": LIMITED_KEY, "scopes": ["predict", "admin"]},
    ]


def _config(directory: Path, demo_models_dir: Path, failed_auth_limit: str) -> Path:
    return write_config(
        directory,
        {
            "models": [{"name": "iris", "path": str(demo_models_dir / IRIS_ONNX)}],
            "auth": {"enabled": True, "keys": _keys(), "failed_auth_limit": failed_auth_limit},
            "rate_limit": {"enabled": True, "admin": "2/minute"},
            "server": {
                "max_body_bytes": MAX_BODY_BYTES,
                "max_inflight_bytes": MAX_INFLIGHT_BYTES,
                "body_timeout_s": WAIT_S,
            },
        },
    )


@pytest.fixture(scope="module")
def server(
    serve_modelserve_module: Callable[..., RunningServer],
    tmp_path_factory: pytest.TempPathFactory,
    demo_models_dir: Path,
) -> RunningServer:
    directory = tmp_path_factory.mktemp("v2-refusals")
    return serve_modelserve_module(_config(directory, demo_models_dir, "1000/hour"))


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _assert_v2_error(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert list(response.json()) == ["error"]
    assert message in response.json()["error"]


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({}, 401, "missing or invalid API key"),
        (_bearer(WRONG_KEY), 401, "missing or invalid API key"),
    ],
    ids=["no-key", "wrong-key"],
)
def test_v2_refusal_of_a_key_is_the_v2_error_body(
    server: RunningServer, headers: dict[str, str], status: int, message: str
) -> None:
    """V2 infer without a valid key is 401 {"error"} with WWW-Authenticate; /predict keeps its
    own body for the same refusal."""
    v2 = httpx.post(
        server.base_url + "/v2/models/iris/infer",
        content=INFER,
        headers={**headers, **JSON},
        timeout=WAIT_S,
    )
    predict = httpx.post(
        server.base_url + "/predict", json={"features": ROW}, headers=headers, timeout=WAIT_S
    )
    _assert_v2_error(v2, status, message)
    assert v2.headers["www-authenticate"] == "Bearer"
    assert predict.status_code == status
    assert set(predict.json()) == {"detail", "code", "request_id"}


def test_v2_repository_without_the_admin_scope_is_403_v2_error(server: RunningServer) -> None:
    """A key without ``admin`` asking the repository index gets 403 {"error"} naming the
    scope."""
    response = httpx.post(
        server.base_url + "/v2/repository/index",
        content=b"{}",
        headers={**_bearer(READER_KEY), **JSON},
        timeout=WAIT_S,
    )
    _assert_v2_error(response, 403, "admin")


def test_v2_repository_over_its_rate_limit_is_429_v2_error(server: RunningServer) -> None:
    """The repository routes spend the admin budget before they run: the third call in the
    minute is 429 {"error"} with Retry-After and the rate headers."""
    answers = [
        httpx.post(
            server.base_url + "/v2/repository/index",
            content=b"{}",
            headers={**_bearer(LIMITED_KEY), **JSON},
            timeout=WAIT_S,
        )
        for _ in range(3)
    ]
    assert [a.status_code for a in answers[:2]] == [200, 200]
    _assert_v2_error(answers[2], 429, "rate limit exceeded")
    assert int(answers[2].headers["retry-after"]) > 0
    assert answers[2].headers["x-ratelimit-remaining"] == "0"


@pytest.mark.parametrize(
    ("path", "v2"),
    [("/v2/models/iris/infer", True), ("/predict", False)],
    ids=["v2-infer", "predict"],
)
def test_v2_declared_body_over_the_limit_is_413_v2_error(
    server: RunningServer, path: str, v2: bool
) -> None:
    """A Content-Length over max_body_bytes is refused before the body is read: 413 and a
    close, in the V2 body on /v2 paths and the server's body elsewhere."""
    body = b" " * (MAX_BODY_BYTES + 1)
    response = httpx.post(
        server.base_url + path,
        content=body,
        headers={**_bearer(OPS_KEY), **JSON},
        timeout=WAIT_S,
    )
    assert response.headers["connection"] == "close"
    if v2:
        _assert_v2_error(response, 413, "max_body_bytes")
    else:
        assert response.status_code == 413
        assert response.json()["code"] == "body_too_large"


@contextlib.contextmanager
def _half_sent_infer(server: RunningServer, length: int) -> Iterator[None]:
    """A V2 infer whose headers promise ``length`` bytes and whose body never comes: its
    bytes stay in flight while the block runs."""
    head = (
        b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\n"
        + f"Authorization: Bearer {OPS_KEY}\r\nContent-Length: {length}\r\n\r\n".encode()
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S) as sock:
        sock.sendall(head + b'{"inputs": ')
        yield


def test_v2_infer_past_the_bytes_in_flight_is_503_v2_error(server: RunningServer) -> None:
    """While a half-sent request holds its declared bytes, a request that would pass
    max_inflight_bytes is refused at once: 503 {"error"} with Retry-After."""
    length = MAX_BODY_BYTES - 8
    with _half_sent_infer(server, length):
        deadline = time.monotonic() + WAIT_S
        for _ in range(50):  # the held request is admitted once the server read its headers
            response = httpx.post(
                server.base_url + "/v2/models/iris/infer",
                content=INFER + b" " * (length - len(INFER)),
                headers={**_bearer(OPS_KEY), **JSON},
                timeout=WAIT_S,
            )
            if response.status_code != 200 or time.monotonic() > deadline:
                break
            time.sleep(0.02)
    _assert_v2_error(response, 503, "bytes of requests in flight")
    assert response.headers["retry-after"] == "1"


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/v2/nothing/here", 404, "Not Found"),
        ("GET", "/v2/models/iris/infer", 405, "Method Not Allowed"),
        ("DELETE", "/v2", 405, "Method Not Allowed"),
    ],
    ids=["unknown-path", "infer-by-get", "delete-server-metadata"],
)
def test_v2_routing_refusals_are_the_v2_error_body(
    server: RunningServer, method: str, path: str, status: int, message: str
) -> None:
    """An unknown /v2 path is 404 {"error"}, a method a V2 route does not take 405."""
    response = httpx.request(
        method, server.base_url + path, headers=_bearer(OPS_KEY), timeout=WAIT_S
    )
    _assert_v2_error(response, status, message)


def test_v2_failed_authentications_lock_out_in_the_v2_error_body(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path, demo_models_dir: Path
) -> None:
    """Past failed_auth_limit an address gets 429 {"error"} with Retry-After on /v2 paths,
    its right key included."""
    server = serve_modelserve(_config(tmp_path, demo_models_dir, "2/hour"))
    url = server.base_url + "/v2/models/iris/infer"

    def infer(key: str) -> httpx.Response:
        return httpx.post(url, content=INFER, headers={**_bearer(key), **JSON}, timeout=WAIT_S)

    wrong = [infer(WRONG_KEY) for _ in range(3)]
    right = infer(OPS_KEY)
    assert [r.status_code for r in wrong[:2]] == [401, 401]
    for refused in (wrong[2], right):
        _assert_v2_error(refused, 429, "failed authentications")
        assert int(refused.headers["retry-after"]) > 0
