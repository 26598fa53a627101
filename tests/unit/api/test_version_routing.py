"""Version routing through the HTTP API, in-process: stickiness per API key, explicit choice."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from modelserve.settings import Settings, load_settings
from tests import iris_versions as iv

CALLERS = [f"team-{i}" for i in range(8)]


@pytest.fixture(scope="module")
def canary_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("canary")
    return iv.dump(iv.logistic(), out / "v1.joblib"), iv.dump(iv.forest(), out / "v2.joblib")


@pytest.fixture
def canary_settings(tmp_path: Path, canary_files: tuple[Path, Path]) -> Callable[..., Settings]:
    """Factory: iris 1.0 and 2.0 with a sticky 50/50 split; overrides go to load_settings."""

    def make(**overrides: Any) -> Settings:
        v1, v2 = canary_files
        models = [
            iv.version_entry("iris", "1.0", v1, default=True),
            iv.version_entry("iris", "2.0", v2),
        ]
        routing = {"iris": {"weights": {"1.0": 50, "2.0": 50}, "sticky": True}}
        config = iv.write_config(tmp_path / "c.yaml", models, routing=routing)
        return load_settings(config, **overrides)

    return make


def with_keys() -> dict[str, Any]:
    keys = [{"name": name, "key": f"secret-of-{name}", "scopes": ["predict"]} for name in CALLERS]
    return {"auth": {"enabled": True, "keys": keys}, "cache": {"backend": "none"}}


async def test_sticky_routing_keeps_each_api_key_on_one_version(
    app_client: Any, canary_settings: Callable[..., Settings]
) -> None:
    """Every request made with one API key is answered by the same version."""
    seen: dict[str, set[str]] = {}
    async with app_client(canary_settings(**with_keys())) as client:
        for name in CALLERS:
            headers = {"Authorization": f"Bearer secret-of-{name}"}
            for _ in range(10):
                response = await client.post(
                    "/predict", json={"features": iv.SETOSA_ROW}, headers=headers
                )
                seen.setdefault(name, set()).add(response.json()["model_version"])
    assert all(len(versions) == 1 for versions in seen.values())
    assert set().union(*seen.values()) == {"1.0", "2.0"}


async def test_sticky_routing_prefers_the_api_key_over_x_client_id(
    app_client: Any, canary_settings: Callable[..., Settings]
) -> None:
    """With a key, a changing X-Client-ID does not move the caller to another version."""
    async with app_client(canary_settings(**with_keys())) as client:
        versions = {
            (
                await client.post(
                    "/predict",
                    json={"features": iv.SETOSA_ROW},
                    headers={"X-API-Key": "secret-of-team-0", "X-Client-ID": f"device-{i}"},
                )
            ).json()["model_version"]
            for i in range(30)
        }
    assert len(versions) == 1


async def test_sticky_routing_keeps_each_client_id_on_one_version(
    app_client: Any, canary_settings: Callable[..., Settings]
) -> None:
    """Without auth, X-Client-ID decides the version, the same one every time."""
    seen: dict[str, set[str]] = {}
    async with app_client(canary_settings(cache={"backend": "none"})) as client:
        for name in CALLERS:
            for _ in range(10):
                response = await client.post(
                    "/predict", json={"features": iv.SETOSA_ROW}, headers={"X-Client-ID": name}
                )
                seen.setdefault(name, set()).add(response.json()["model_version"])
    assert all(len(versions) == 1 for versions in seen.values())


@pytest.mark.parametrize(
    ("params", "headers", "version"),
    [
        ({"model_version": "2.0"}, {"X-Client-ID": "team-0"}, "2.0"),
        ({}, {"X-Model-Version": "1.0", "X-Client-ID": "team-1"}, "1.0"),
        ({"model_version": "2.0"}, {"X-Model-Version": "1.0"}, "2.0"),
    ],
    ids=["query", "header", "query-beats-header"],
)
async def test_explicit_version_beats_routing(
    app_client: Any,
    canary_settings: Callable[..., Settings],
    params: dict[str, str],
    headers: dict[str, str],
    version: str,
) -> None:
    """A version named in the request answers every time, whatever the weights say."""
    async with app_client(canary_settings()) as client:
        answers = [
            await client.post(
                "/predict", json={"features": iv.SETOSA_ROW}, params=params, headers=headers
            )
            for _ in range(20)
        ]
    assert {(r.json()["model_version"], r.headers["x-model-version"]) for r in answers} == {
        (version, version)
    }


async def test_batch_response_names_the_routed_version(
    app_client: Any, canary_settings: Callable[..., Settings]
) -> None:
    """A routed /predict-batch says in its body and header which version answered."""
    async with app_client(canary_settings()) as client:
        responses = [
            await client.post("/predict-batch", json={"batch": [iv.SETOSA_ROW] * 3})
            for _ in range(20)
        ]
    pairs = {(r.json()["model_version"], r.headers["x-model-version"]) for r in responses}
    assert pairs <= {("1.0", "1.0"), ("2.0", "2.0")}
    assert len(pairs) == 2


async def test_unknown_version_in_the_header_is_404(
    app_client: Any, canary_settings: Callable[..., Settings]
) -> None:
    """X-Model-Version naming no configured version answers 404 version_not_found."""
    async with app_client(canary_settings()) as client:
        response = await client.post(
            "/predict", json={"features": iv.SETOSA_ROW}, headers={"X-Model-Version": "3.0"}
        )
    assert (response.status_code, response.json()["code"]) == (404, "version_not_found")


async def test_error_from_a_routed_version_names_that_version(
    app_client: Any, canary_settings: Callable[..., Settings]
) -> None:
    """A 400 answered by the canary carries its version in the body and X-Model-Version."""
    answers: dict[str, tuple[str | None, str | None]] = {}
    async with app_client(canary_settings(cache={"backend": "none"})) as client:
        for name in CALLERS:
            response = await client.post(
                "/predict", json={"features": [1.0, 2.0]}, headers={"X-Client-ID": name}
            )
            assert (response.status_code, response.json()["code"]) == (400, "wrong_feature_count")
            body = response.json()
            assert body["model"] == "iris"
            answers[name] = (body["model_version"], response.headers.get("x-model-version"))
    assert {version for version, _ in answers.values()} == {"1.0", "2.0"}
    assert all(version == header for version, header in answers.values())


async def test_sticky_request_without_caller_is_counted(
    app_client: Any, canary_settings: Callable[..., Settings]
) -> None:
    """A sticky canary request with no key and no X-Client-ID counts as routed at random."""
    name = "modelserve_sticky_without_caller_total"
    before = REGISTRY.get_sample_value(name, {"model": "iris"}) or 0.0
    async with app_client(canary_settings(cache={"backend": "none"})) as client:
        for _ in range(3):
            await client.post("/predict", json={"features": iv.SETOSA_ROW})
        await client.post(
            "/predict", json={"features": iv.SETOSA_ROW}, headers={"X-Client-ID": "team-0"}
        )
    assert REGISTRY.get_sample_value(name, {"model": "iris"}) == before + 3
