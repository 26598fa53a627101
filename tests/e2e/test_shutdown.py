"""Graceful shutdown of real servers: every accepted request is answered, then exit 0."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelserve.settings import Settings
from tests.e2e.conftest import IRIS_ONNX, RunningServer, wait_for_log_events, write_config

ROW = {"features": [5.1, 3.5, 1.4, 0.2]}
CLIENTS = 8
MAX_REQUESTS_PER_CLIENT = 400


@dataclass
class LoadRecord:
    """What the clients saw, by request id."""

    answered: dict[str, int] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)
    """Connection refused, or reset before the server read the request (see the test)."""
    signal_sent: bool = False
    flowing: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once every client could have had an answer: load is flowing."""


async def run_client(url: str, record: LoadRecord) -> None:
    """Predict on fresh connections until the server refuses connections after the signal."""
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        for _ in range(MAX_REQUESTS_PER_CLIENT):
            request_id = uuid.uuid4().hex
            try:
                response = await client.post(url, json=ROW, headers={"x-request-id": request_id})
            except httpx.TransportError as exc:
                record.refused.add(request_id)
                if record.signal_sent and isinstance(exc, httpx.ConnectError):
                    return
                continue
            record.answered[request_id] = response.status_code
            if len(record.answered) >= CLIENTS:
                record.flowing.set()


async def load_then_terminate(server: RunningServer) -> tuple[LoadRecord, int]:
    """Run the clients, SIGTERM the server once load flows; return what they saw and the rc."""
    record = LoadRecord()
    url = server.base_url + "/predict"
    clients = [asyncio.create_task(run_client(url, record)) for _ in range(CLIENTS)]
    async with asyncio.timeout(30):
        await record.flowing.wait()
    record.signal_sent = True
    server.proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(60):
        await asyncio.gather(*clients)
        returncode = await asyncio.to_thread(server.proc.wait, 30)
    return record, returncode


def predictions_logged(server: RunningServer) -> list[dict[str, object]]:
    """The access-log lines of every /predict request the server accepted."""
    return [
        line
        for line in server.log_lines()
        if line.get("event") == "request_completed" and line.get("path") == "/predict"
    ]


@pytest.mark.e2e
@pytest.mark.parametrize("workers", [1, 2], ids=["uvicorn", "gunicorn-2-workers"])
async def test_shutdown_under_load_answers_every_accepted_request(
    serve_modelserve: Callable[..., RunningServer],
    fake_models_dir: Path,
    tmp_path: Path,
    workers: int,
) -> None:
    """SIGTERM under load: every request the server accepted is answered 200, then exit 0.

    A connection the kernel queued but the server never accepted is reset when the listener
    closes; the client cannot tell that from a cut-off, so the server's access log (by
    request id) decides: a failed request must be absent from it.
    """
    config = write_config(
        tmp_path,
        {
            "models": [{"name": "slowish", "path": str(fake_models_dir / "slowish.joblib")}],
            "server": {"grace_period_s": 10},
            # Every request reaches the 0.2 s model, so some are always in flight at the signal
            # (cached answers take a millisecond: the clients could all be between requests).
            "cache": {"backend": "none"},
        },
    )
    server = serve_modelserve(config, "--workers", str(workers))
    wait_for_log_events(server, workers, event="models_loaded", ready=True)

    record, returncode = await load_then_terminate(server)

    logged = predictions_logged(server)
    accepted = {str(line["request_id"]): line["status"] for line in logged}
    signalled_at = min(
        str(line["timestamp"])
        for line in server.log_lines()
        if line["event"] == "shutdown_requested"
    )
    assert returncode == 0
    assert len(wait_for_log_events(server, workers, event="server_stopped")) == workers
    assert set(record.answered.values()) == {200}
    assert accepted == record.answered
    assert not record.refused & set(accepted)
    assert any(str(line["timestamp"]) > signalled_at for line in logged)


async def wait_for_ready_status(client: httpx.AsyncClient, status: int) -> httpx.Response:
    """Poll /ready (bounded) until it answers ``status``; return that response."""
    for _ in range(50):
        response = await client.get("/ready")
        if response.status_code == status:
            return response
        await asyncio.sleep(0.01)
    raise AssertionError(f"/ready never answered {status}")


@pytest.mark.e2e
async def test_shutdown_prestop_delay_fails_readiness_while_still_serving(
    serve_modelserve: Callable[..., RunningServer], demo_models_dir: Path
) -> None:
    """During the pre-stop delay /ready is 503 shutting down, predictions are still served."""
    server = serve_modelserve(
        demo_models_dir / IRIS_ONNX, env={"MODELSERVE_SERVER__PRESTOP_DELAY_S": "1"}
    )
    async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as client:
        server.proc.send_signal(signal.SIGTERM)
        not_ready = await wait_for_ready_status(client, 503)
        prediction = await client.post("/predict", json=ROW)

    assert not_ready.json()["code"] == "not_ready"
    assert "shutting down" in not_ready.json()["detail"]
    assert prediction.status_code == 200
    assert await asyncio.to_thread(server.proc.wait, 10) == 0


@pytest.mark.e2e
async def test_shutdown_prestop_delay_closes_keep_alive_connections_after_each_response(
    serve_modelserve: Callable[..., RunningServer], demo_models_dir: Path
) -> None:
    """Once draining, answers carry Connection: close so pooled clients reconnect elsewhere."""
    server = serve_modelserve(
        demo_models_dir / IRIS_ONNX, env={"MODELSERVE_SERVER__PRESTOP_DELAY_S": "1"}
    )
    async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as client:
        before = await client.post("/predict", json=ROW)
        server.proc.send_signal(signal.SIGTERM)
        await wait_for_ready_status(client, 503)
        during = await client.post("/predict", json=ROW)

    assert before.headers.get("connection") != "close"
    assert during.status_code == 200
    assert during.headers["connection"] == "close"
    assert await asyncio.to_thread(server.proc.wait, 10) == 0


async def test_shutdown_refuses_new_predictions_with_shutting_down(
    app_client: Callable[..., Any], settings_factory: Callable[..., Settings]
) -> None:
    """Once the server stops accepting, a new prediction gets 503 shutting_down and Retry-After."""
    in_process = app_client(settings_factory(models=[{"name": "iris", "path": "iris.joblib"}]))
    async with in_process as client:
        in_process.app.state.health.stop_accepting()
        response = await client.post("/predict", json=ROW)

    assert response.status_code == 503
    assert response.json()["code"] == "shutting_down"
    assert response.headers["retry-after"] == "1"
    assert response.headers["connection"] == "close"
