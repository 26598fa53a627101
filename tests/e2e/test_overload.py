"""Overload on a real server: 10x what the model sustains, from clients that do not wait.

The bounded version of ``make overload``: a CPU-bound model computes one row per
``MODEL_CALL_S``, an open-loop client (a new connection per request, sent on schedule whatever
the answers) offers ten times that for a few seconds. Behaviour only, no timings: every answer
is a 200 or a 503 ``overloaded`` with ``Retry-After`` (no 504, no reset, nothing left
hanging), and once the burst ends the server answers 200 again.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import httpx
import joblib
import orjson
import pytest

from tests.e2e.conftest import RunningServer, write_config
from tests.fakes import BusyClassifier

pytestmark = pytest.mark.e2e

MODEL_CALL_S = 0.05
"""The model sustains 1 / MODEL_CALL_S single-row requests per second."""
OFFERED_PER_S = 10 / MODEL_CALL_S
BURST_S = 3.0
CLIENT_TIMEOUT_S = 20.0
"""Far beyond the 1 s deadline: an answer later than this counts as a hang."""
BODY = orjson.dumps({"features": [5.1, 3.5, 1.4, 0.2]})
_JSON = {"Content-Type": "application/json"}


@pytest.fixture
def server(
    serve_modelserve: Callable[..., RunningServer], tmp_path_factory: pytest.TempPathFactory
) -> RunningServer:
    models = tmp_path_factory.mktemp("overload-models")
    joblib.dump(BusyClassifier(MODEL_CALL_S).fit(None, None), models / "busy.joblib")
    model = {
        "name": "busy",
        "path": str(models / "busy.joblib"),
        "batching": {"max_batch_size": 1, "timeout_ms": 1000},
    }
    config = {"models": [model], "server": {"access_log": False}, "cache": {"backend": "none"}}
    return serve_modelserve(write_config(models, config))


async def _one(port: int, outcomes: Counter[str]) -> None:
    """One request on a fresh connection; its outcome (status and code, reset or hang)."""
    head = (
        "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        async with asyncio.timeout(CLIENT_TIMEOUT_S):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(head + BODY)
                data = await reader.read()
            finally:
                writer.close()
    except TimeoutError:
        outcomes["hang"] += 1
        return
    except ConnectionError:
        outcomes["reset"] += 1
        return
    status_line, _, rest = data.partition(b"\r\n")
    if not status_line:
        outcomes["closed without an answer"] += 1
        return
    status = status_line.split(b" ")[1].decode()
    headers, _, payload = rest.partition(b"\r\n\r\n")
    if status == "200":
        outcomes["200"] += 1
        return
    has_retry_after = b"\r\nretry-after:" in b"\r\n" + headers.lower()
    code = orjson.loads(payload)["code"]
    outcomes[f"{status} {code}{'' if has_retry_after else ' without Retry-After'}"] += 1


async def _burst(port: int) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks = []
    for i in range(int(OFFERED_PER_S * BURST_S)):
        await asyncio.sleep(max(0.0, start + i / OFFERED_PER_S - loop.time()))
        tasks.append(asyncio.create_task(_one(port, outcomes)))
    await asyncio.gather(*tasks)
    return outcomes


async def test_overload_is_shed_with_503_retry_after_and_the_server_recovers(
    server: RunningServer,
) -> None:
    """At 10x what the model sustains every answer is a 200 or a 503 overloaded with
    Retry-After, none is reset or left hanging, and the server answers 200 afterwards."""
    outcomes = await _burst(server.port)

    assert set(outcomes) == {"200", "503 overloaded"}, outcomes
    async with httpx.AsyncClient(base_url=server.base_url, timeout=CLIENT_TIMEOUT_S) as client:
        for _ in range(100):  # the queue drains: a bounded wait for the first 200
            response = await client.post("/predict", content=BODY, headers=_JSON)
            if response.status_code == 200:
                break
            await asyncio.sleep(0.1)
        after = [
            (await client.post("/predict", content=BODY, headers=_JSON)).status_code
            for _ in range(5)
        ]
    assert after == [200] * 5
