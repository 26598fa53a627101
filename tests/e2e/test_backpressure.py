"""Backpressure on a real server: refuse at once when full, 504 past the deadline, probes live."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import joblib
import pytest

from tests.e2e.conftest import RunningServer, write_config
from tests.fakes import BusyClassifier, SlowClassifier

pytestmark = pytest.mark.e2e

ROW = {"features": [5.1, 3.5, 1.4, 0.2]}
MODEL_CALL_S = 1.0
QUEUE_ROWS = 2
DEADLINE_MS = 400
BUSY_CALL_S = 0.1
"""The CPU-bound model sustains 1 / BUSY_CALL_S single-row requests per second."""


@pytest.fixture(scope="module")
def server(
    serve_modelserve_module: Callable[..., RunningServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> RunningServer:
    """One server, one model per scenario (each model has its own queue and thread)."""
    models = tmp_path_factory.mktemp("backpressure-models")
    joblib.dump(SlowClassifier(MODEL_CALL_S).fit(None, None), models / "slow.joblib")
    joblib.dump(BusyClassifier(BUSY_CALL_S).fit(None, None), models / "busy.joblib")
    slow = str(models / "slow.joblib")
    config = write_config(
        models,
        {
            "models": [
                {
                    "name": "small-queue",
                    "path": slow,
                    "batching": {"max_batch_size": 1, "max_queue_rows": QUEUE_ROWS},
                },
                {"name": "deadline", "path": slow, "batching": {"timeout_ms": DEADLINE_MS}},
                {
                    "name": "busy",
                    "path": str(models / "busy.joblib"),
                    "batching": {"max_batch_size": 1, "max_queue_rows": 4},
                },
            ],
            "server": {"access_log": False},
            "cache": {"backend": "none"},
        },
    )
    return serve_modelserve_module(config)


async def test_backpressure_full_queue_refuses_at_once_with_overloaded(
    server: RunningServer,
) -> None:
    """With one call running and the queue full, further requests get 503 before any 200."""
    finished: list[httpx.Response] = []

    async def predict(client: httpx.AsyncClient) -> None:
        finished.append(await client.post("/predict?model=small-queue", json=ROW))

    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        await asyncio.gather(*(predict(client) for _ in range(8)))

    statuses = [response.status_code for response in finished]
    refused = [response for response in finished if response.status_code == 503]
    assert statuses.count(200) == 1 + QUEUE_ROWS
    assert statuses.index(200) == len(refused)
    assert {response.json()["code"] for response in refused} == {"overloaded"}
    assert all(int(response.headers["retry-after"]) >= 1 for response in refused)


async def test_backpressure_deadline_answers_504_naming_the_stage(server: RunningServer) -> None:
    """Past the deadline the running call answers inference_timeout, the queued queue_timeout."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        running = asyncio.create_task(client.post("/predict?model=deadline", json=ROW))
        await asyncio.sleep(0.1)
        queued = await client.post("/predict?model=deadline", json=ROW)
        first = await running

    assert (first.status_code, queued.status_code) == (504, 504)
    assert sorted([first.json()["code"], queued.json()["code"]]) == [
        "inference_timeout",
        "queue_timeout",
    ]


async def test_backpressure_probes_answer_at_ten_times_sustainable_load(
    server: RunningServer,
) -> None:
    """While a CPU-bound model is offered 10x what it sustains, /health and /ready answer."""
    clients = 10
    pause_s = clients * BUSY_CALL_S / 10  # so the clients together offer 10 x 1 / BUSY_CALL_S
    probing = asyncio.Event()
    predictions: list[int] = []

    async def offer_load(client: httpx.AsyncClient) -> None:
        for _ in range(100):
            response = await client.post("/predict?model=busy", json=ROW)
            predictions.append(response.status_code)
            if probing.is_set():
                return
            await asyncio.sleep(pause_s)

    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        load = [asyncio.create_task(offer_load(client)) for _ in range(clients)]
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=1.0) as probe:
            probes = []
            for _ in range(10):
                probes.append((await probe.get("/health")).status_code)
                probes.append((await probe.get("/ready")).status_code)
                await asyncio.sleep(0.05)
        probing.set()
        await asyncio.gather(*load)

    assert probes == [200] * 20
    assert 503 in predictions
    assert 200 in predictions
