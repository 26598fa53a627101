"""Hot reload of a real server under continuous load: no failed request, an atomic switch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import joblib
import pytest

from tests import iris_versions as iv
from tests.e2e.conftest import RunningServer

pytestmark = pytest.mark.e2e

CLIENTS = 4
MAX_REQUESTS_PER_CLIENT = 3000
LOAD_DEADLINE_S = 90.0
WARM_RESPONSES = 40
AFTER_RESPONSES = 40
ADMIN_KEY = "e2e-reload-admin-1d3f5a7c9e0b2d4f"
KEY_HEADER = {"Authorization": f"Bearer {ADMIN_KEY}"}


@dataclass(frozen=True)
class Answer:
    sent_at: float
    done_at: float
    status: int
    prediction: str | None


class Load:
    """CLIENTS concurrent clients predicting SETOSA_ROW until stopped (bounded in count/time)."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.answers: list[Answer] = []
        self.errors: list[str] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._client()) for _ in range(CLIENTS)]

    async def wait_for(self, count: int, after: float = 0.0) -> None:
        """Until ``count`` answers were sent after ``after`` (monotonic seconds)."""
        deadline = time.monotonic() + LOAD_DEADLINE_S
        while sum(a.sent_at > after for a in self.answers) < count:
            assert time.monotonic() < deadline, "the load made too little progress"
            assert all(not t.done() for t in self._tasks), "a load client stopped early"
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _client(self) -> None:
        async with httpx.AsyncClient(
            base_url=self.server.base_url, timeout=30, headers=KEY_HEADER
        ) as client:
            for _ in range(MAX_REQUESTS_PER_CLIENT):
                if self._stop.is_set():
                    return
                sent = time.monotonic()
                try:
                    response = await client.post(
                        "/predict?model_version=1", json={"features": iv.SETOSA_ROW}
                    )
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                    continue
                body = response.json()
                self.answers.append(
                    Answer(sent, time.monotonic(), response.status_code, body.get("prediction"))
                )


@pytest.fixture
def start_server(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path
) -> Callable[[], RunningServer]:
    """iris 1 served from tmp_path/v1.joblib (logistic: answers setosa), without cache, with
    auth on (the admin API needs it): every client sends ADMIN_KEY."""

    def start() -> RunningServer:
        path = iv.dump(iv.logistic(), tmp_path / "v1.joblib")
        models = [iv.version_entry("iris", "1", path, default=True)]
        ops = {"name": "ops", "key": ADMIN_KEY, "scopes": ["predict", "admin"]}
        config = iv.write_config(
            tmp_path / "modelserve.yaml",
            models,
            cache={"backend": "none"},
            auth={"enabled": True, "keys": [ops]},
        )
        return serve_modelserve(config)

    return start


async def reload_under_load(
    server: RunningServer, replace: Callable[[], object]
) -> tuple[Load, httpx.Response, float, float]:
    """Run the load, replace the artifact file, reload, keep loading; return what happened."""
    load = Load(server)
    load.start()
    try:
        await load.wait_for(WARM_RESPONSES)
        replace()
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as admin:
            reload_sent = time.monotonic()
            response = await admin.post(
                "/admin/models/iris/versions/1/reload",
                json={},
                headers=KEY_HEADER,
            )
            reload_done = time.monotonic()
        await load.wait_for(AFTER_RESPONSES, after=reload_done)
    finally:
        await load.stop()
    return load, response, reload_sent, reload_done


async def test_reload_under_load_switches_without_a_failed_request(
    start_server: Callable[[], RunningServer], tmp_path: Path
) -> None:
    """Every request succeeds; before the reload they get the old model, after it the new one."""
    server = start_server()
    load, response, sent, done = await reload_under_load(
        server, lambda: joblib.dump(iv.shifted(), tmp_path / "v1.joblib")
    )
    assert response.status_code == 200, response.text
    assert load.errors == []
    assert {a.status for a in load.answers} == {200}
    assert {a.prediction for a in load.answers if a.done_at < sent} == {"setosa"}
    assert {a.prediction for a in load.answers if a.sent_at > done} == {"versicolor"}


async def test_corrupt_artifact_under_load_keeps_the_old_one_serving(
    start_server: Callable[[], RunningServer], tmp_path: Path
) -> None:
    """A reload of a corrupt file answers 409 and every request keeps getting the old model."""
    server = start_server()
    load, response, _, _ = await reload_under_load(
        server, lambda: (tmp_path / "v1.joblib").write_bytes(b"\x80\x04 truncated pickle")
    )
    assert (response.status_code, response.json()["code"]) == (409, "model_load_failed")
    assert load.errors == []
    assert {(a.status, a.prediction) for a in load.answers} == {(200, "setosa")}
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        assert (await client.get("/ready")).status_code == 200
