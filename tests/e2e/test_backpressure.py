"""Backpressure on a real server: refuse at once when full, 504 past the deadline, probes live."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import joblib
import pytest

from tests.e2e.conftest import RunningServer, write_config
from tests.fakes import BusyClassifier, FileGate, FileGatedClassifier
from tests.prometheus import parse

pytestmark = pytest.mark.e2e

ROW = {"features": [5.1, 3.5, 1.4, 0.2]}
QUEUE_ROWS = 2
DEADLINE_MS = 400
BUSY_CALL_S = 0.1
"""The CPU-bound model sustains 1 / BUSY_CALL_S single-row requests per second."""


@dataclass
class Backpressure:
    """The server, and the gates holding the calls of its small-queue and deadline models."""

    server: RunningServer
    small_queue: FileGate
    deadline: FileGate


def _gated_model(directory: Path, name: str) -> tuple[str, FileGate]:
    gate = FileGate(directory / f"{name}-gate")
    path = directory / f"{name}.joblib"
    joblib.dump(FileGatedClassifier(str(gate.directory)).fit(None, None), path)
    return str(path), gate


@pytest.fixture(scope="module")
def backpressure(
    serve_modelserve_module: Callable[..., RunningServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> Backpressure:
    """One server, one model per scenario (each model has its own queue and thread)."""
    models = tmp_path_factory.mktemp("backpressure-models")
    small_queue, small_queue_gate = _gated_model(models, "small-queue")
    deadline, deadline_gate = _gated_model(models, "deadline")
    joblib.dump(BusyClassifier(BUSY_CALL_S).fit(None, None), models / "busy.joblib")
    config = write_config(
        models,
        {
            "models": [
                {
                    "name": "small-queue",
                    "path": small_queue,
                    "batching": {"max_batch_size": 1, "max_queue_rows": QUEUE_ROWS},
                },
                {"name": "deadline", "path": deadline, "batching": {"timeout_ms": DEADLINE_MS}},
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
    server = serve_modelserve_module(config)
    return Backpressure(server, small_queue_gate, deadline_gate)


@pytest.fixture(scope="module")
def server(backpressure: Backpressure) -> RunningServer:
    return backpressure.server


async def wait_for_queue_rows(client: httpx.AsyncClient, model: str, rows: float) -> None:
    """Poll /metrics until ``model``'s batch queue holds ``rows`` rows (bounded)."""
    async with asyncio.timeout(30):
        while True:
            samples = parse((await client.get("/metrics")).text)
            if samples.get(("modelserve_queue_rows", _version(model))) == rows:
                return
            await asyncio.sleep(0.01)


def _version(model: str) -> frozenset[tuple[str, str]]:
    return frozenset({"model": model, "model_version": "1"}.items())


async def test_backpressure_full_queue_refuses_at_once_with_overloaded(
    backpressure: Backpressure,
) -> None:
    """With one call inside the model and the queue full, every further request gets 503
    overloaded with Retry-After while those calls are still held; the held ones then get 200."""
    gate = backpressure.small_queue
    gate.hold()
    async with httpx.AsyncClient(base_url=backpressure.server.base_url, timeout=60) as client:

        def predict() -> asyncio.Task[httpx.Response]:
            return asyncio.create_task(client.post("/predict?model=small-queue", json=ROW))

        try:
            running = predict()
            await asyncio.to_thread(gate.wait_entered, 1)
            queued = [predict() for _ in range(QUEUE_ROWS)]
            await wait_for_queue_rows(client, "small-queue", QUEUE_ROWS)
            refused = [await client.post("/predict?model=small-queue", json=ROW) for _ in range(5)]
            held = [task for task in [running, *queued] if not task.done()]
        finally:
            gate.open()
        answered = await asyncio.gather(running, *queued)

    assert len(held) == 1 + QUEUE_ROWS
    assert [response.status_code for response in refused] == [503] * 5
    assert {response.json()["code"] for response in refused} == {"overloaded"}
    assert all(int(response.headers["retry-after"]) >= 1 for response in refused)
    assert [response.status_code for response in answered] == [200] * (1 + QUEUE_ROWS)


async def test_backpressure_deadline_answers_504_naming_the_stage(
    backpressure: Backpressure,
) -> None:
    """Past the deadline the call inside the model answers inference_timeout and the one
    queued behind it queue_timeout, while the model call is still held."""
    gate = backpressure.deadline
    gate.hold()
    async with httpx.AsyncClient(base_url=backpressure.server.base_url, timeout=60) as client:
        try:
            running = asyncio.create_task(client.post("/predict?model=deadline", json=ROW))
            await asyncio.to_thread(gate.wait_entered, 1)
            queued = await client.post("/predict?model=deadline", json=ROW)
            first = await running
            entered = gate.entered()
        finally:
            gate.open()

    assert (first.status_code, first.json()["code"]) == (504, "inference_timeout")
    assert (queued.status_code, queued.json()["code"]) == (504, "queue_timeout")
    assert entered == 1  # the queued request never reached the model


async def test_backpressure_probes_answer_at_ten_times_sustainable_load(
    server: RunningServer,
) -> None:
    """While a CPU-bound model is offered 10x what it sustains, /health and /ready answer."""
    clients = 10
    pause_s = clients * BUSY_CALL_S / 10  # so the clients together offer 10 x 1 / BUSY_CALL_S
    overloaded = asyncio.Event()
    probed = asyncio.Event()
    predictions: list[int] = []

    async def offer_load(client: httpx.AsyncClient) -> None:
        for _ in range(2000):  # bounded: 2000 x pause_s at most, far beyond the probing
            response = await client.post("/predict?model=busy", json=ROW)
            predictions.append(response.status_code)
            if response.status_code == 503:
                overloaded.set()
            if probed.is_set():
                return
            await asyncio.sleep(pause_s)  # pacing: the offered rate, not a wait on a race

    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        load = [asyncio.create_task(offer_load(client)) for _ in range(clients)]
        async with asyncio.timeout(60):
            await overloaded.wait()
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as probe:
            probes = []
            for _ in range(10):
                probes.append((await probe.get("/health")).status_code)
                probes.append((await probe.get("/ready")).status_code)
        load_still_offered = not any(task.done() for task in load)
        probed.set()
        await asyncio.gather(*load)

    assert probes == [200] * 20
    assert load_still_offered
    assert 200 in predictions
