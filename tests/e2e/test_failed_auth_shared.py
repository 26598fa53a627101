"""One failed-authentication count per server, and per fleet with Redis, in real processes:
guesses on the probe port lock out the main port and back, guesses spread over gunicorn
workers lock out at the limit, and two servers sharing a Redis share the count."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.e2e.conftest import IRIS_ONNX, RunningServer, wait_ready, write_config

pytestmark = pytest.mark.e2e

KEY = "e2e-failed-auth-shared-5c1e9a7d3b"
WRONG_KEY = "e2e-failed-auth-shared-wrong-2f8b"
ROW = {"features": [5.1, 3.5, 1.4, 0.2]}
WAIT_S = 30.0


def _config(directory: Path, demo_models_dir: Path, limit: str, **sections: object) -> Path:
    auth = {
        "enabled": True,
        "keys": [{"name": "ops", "key": KEY}],
        "failed_auth_limit": limit,
    }
    models = [{"name": "iris", "path": str(demo_models_dir / IRIS_ONNX)}]
    return write_config(directory, {"models": models, "auth": auth, **sections})


def _client(source_address: str) -> httpx.Client:
    """A client whose connections come from ``source_address`` (any 127.x is loopback), so
    one server can be probed by two client addresses with counts of their own; a new
    connection for every request."""
    transport = httpx.HTTPTransport(local_address=source_address)
    return httpx.Client(transport=transport, timeout=WAIT_S, headers={"Connection": "close"})


def _predict(client: httpx.Client, server: RunningServer, key: str) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    return client.post(server.base_url + "/predict", json=ROW, headers=headers).status_code


def _metrics(client: httpx.Client, probe_port: int, key: str) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    url = f"http://127.0.0.1:{probe_port}/metrics"
    return client.get(url, headers=headers).status_code


def test_failed_auth_probe_port_and_main_port_share_one_count(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path, demo_models_dir: Path
) -> None:
    """One process with a probe port: three wrong keys on the probe port's /metrics lock the
    address out of the main port, and three on the main port lock another address out of the
    probe port, a right key included."""
    probe_port = free_port()
    config = _config(tmp_path, demo_models_dir, "3/hour", server={"probe_port": probe_port})
    server = serve_modelserve(config)

    with _client("127.0.0.2") as probe_guesser, _client("127.0.0.3") as main_guesser:
        on_probe = [_metrics(probe_guesser, probe_port, WRONG_KEY) for _ in range(3)]
        main_after_probe = _predict(probe_guesser, server, KEY)
        on_main = [_predict(main_guesser, server, WRONG_KEY) for _ in range(3)]
        probe_after_main = _metrics(main_guesser, probe_port, KEY)
        unaffected = _predict(_client("127.0.0.4"), server, KEY)

    assert on_probe == [401, 401, 401]
    assert main_after_probe == 429
    assert on_main == [401, 401, 401]
    assert probe_after_main == 429
    assert unaffected == 200


def test_failed_auth_workers_count_once_for_the_server(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path, demo_models_dir: Path
) -> None:
    """``--workers 2``: ten wrong keys, each on a connection of its own (gunicorn hands them
    to either worker), lock the address out at ten, not at twenty; the master's probe port
    refuses it too."""
    probe_port = free_port()
    config = _config(tmp_path, demo_models_dir, "10/hour", server={"probe_port": probe_port})
    server = serve_modelserve(config, "--workers", "2")

    with _client("127.0.0.1") as client:
        guesses = [_predict(client, server, WRONG_KEY) for _ in range(10)]
        after = [_predict(client, server, KEY) for _ in range(4)]
        probe = _metrics(client, probe_port, KEY)

    assert guesses == [401] * 10
    assert after == [429] * 4
    assert probe == 429


@pytest.mark.redis
def test_failed_auth_two_servers_sharing_redis_share_the_count(
    serve_modelserve: Callable[..., RunningServer],
    tmp_path: Path,
    demo_models_dir: Path,
    redis_url: str,
) -> None:
    """Two servers on one Redis: two wrong keys on each reach the limit of four, and the
    address is then refused by both, a right key included."""
    config = _config(
        tmp_path,
        demo_models_dir,
        "4/hour",
        redis_url=redis_url,
        rate_limit={"redis_timeout_ms": 5000},  # a slow reply must not fail open in a test
    )
    first, second = serve_modelserve(config, wait=None), serve_modelserve(config, wait=None)
    wait_ready(first)
    wait_ready(second)

    with _client("127.0.0.1") as client:
        guesses = [_predict(client, s, WRONG_KEY) for s in (first, second, first, second)]
        refused = [_predict(client, s, KEY) for s in (first, second)]

    assert guesses == [401] * 4
    assert refused == [429, 429]
