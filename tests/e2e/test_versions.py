"""Canary routing against a real server: weighted split, stickiness, explicit choice, 404."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Callable

import httpx
import pytest

from tests import iris_versions as iv
from tests.e2e.conftest import RunningServer

pytestmark = pytest.mark.e2e

REQUESTS = 2000
CONCURRENCY = 16
CANARY_SHARE = 0.2


@pytest.fixture(scope="module")
def server(
    serve_modelserve_module: Callable[..., RunningServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> RunningServer:
    """iris 1.0 (default) and 2.0 with a sticky 80/20 canary split, without cache."""
    out = tmp_path_factory.mktemp("versions")
    models = [
        iv.version_entry("iris", "1.0", iv.dump(iv.logistic(), out / "v1.joblib"), default=True),
        iv.version_entry("iris", "2.0", iv.dump(iv.forest(), out / "v2.joblib")),
    ]
    routing = {"iris": {"weights": {"1.0": 80, "2.0": 20}, "sticky": True}}
    config = iv.write_config(
        out / "modelserve.yaml", models, routing=routing, cache={"backend": "none"}
    )
    return serve_modelserve_module(config)


async def answered_versions(
    server: RunningServer, count: int, headers_of: Callable[[int], dict[str, str]]
) -> list[tuple[int, str, str]]:
    """(status, body version, header version) of ``count`` /predict calls, a few at a time."""
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=30) as client:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(i: int) -> tuple[int, str, str]:
            async with gate:
                response = await client.post(
                    "/predict", json={"features": iv.SETOSA_ROW}, headers=headers_of(i)
                )
            body = response.json()
            return (
                response.status_code,
                body.get("model_version"),
                response.headers.get("x-model-version", ""),
            )

        return await asyncio.gather(*(one(i) for i in range(count)))


async def test_canary_split_matches_the_weights(server: RunningServer) -> None:
    """Over 2,000 anonymous requests the canary's share is within 4 sigma of its 20 % weight."""
    answers = await answered_versions(server, REQUESTS, lambda i: {})
    assert {status for status, _, _ in answers} == {200}
    assert all(body == header for _, body, header in answers)
    canary = Counter(version for _, version, _ in answers)["2.0"]
    sigma = math.sqrt(REQUESTS * CANARY_SHARE * (1 - CANARY_SHARE))
    assert abs(canary - REQUESTS * CANARY_SHARE) <= 4 * sigma


async def test_sticky_client_gets_one_version_every_time(server: RunningServer) -> None:
    """Each X-Client-ID is answered by one version on every request."""
    clients = [f"device-{i}" for i in range(40)]
    answers = await answered_versions(
        server, len(clients) * 5, lambda i: {"X-Client-ID": clients[i % len(clients)]}
    )
    per_client: dict[str, set[str]] = {}
    for i, (_, version, _) in enumerate(answers):
        per_client.setdefault(clients[i % len(clients)], set()).add(version)
    assert all(len(versions) == 1 for versions in per_client.values())
    assert set().union(*per_client.values()) == {"1.0", "2.0"}


@pytest.mark.parametrize(
    ("headers", "version"),
    [({"X-Model-Version": "2.0"}, "2.0"), ({"X-Model-Version": "1.0"}, "1.0")],
    ids=["canary", "stable"],
)
async def test_explicit_version_beats_routing(
    server: RunningServer, headers: dict[str, str], version: str
) -> None:
    """Requests naming a version all get it, whatever the split says."""
    answers = await answered_versions(server, 100, lambda i: {**headers, "X-Client-ID": str(i)})
    assert {(status, body) for status, body, _ in answers} == {(200, version)}


def test_unknown_version_is_404(server: RunningServer) -> None:
    """A version that is not configured answers 404 version_not_found."""
    response = httpx.post(
        server.base_url + "/predict?model_version=3.0", json={"features": iv.SETOSA_ROW}
    )
    assert (response.status_code, response.json()["code"]) == (404, "version_not_found")


def test_models_shows_versions_and_their_share(server: RunningServer) -> None:
    """GET /models lists both versions with the default and each one's share of traffic."""
    models = httpx.get(server.base_url + "/models").json()["models"]
    shown = {(m["version"], m["status"], m["is_default"], m["traffic_percent"]) for m in models}
    assert shown == {("1.0", "ready", True, 80.0), ("2.0", "ready", False, 20.0)}
