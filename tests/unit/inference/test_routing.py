"""VersionRouter (weights, stickiness) and the registry's routing of requests to versions."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from modelserve.errors import (
    ModelNotReadyError,
    VersionInUseError,
    VersionNotFoundError,
    VersionNotLoadedError,
)
from modelserve.inference.registry import ModelRegistry
from modelserve.inference.routing import VersionRouter
from modelserve.settings import RoutingConfig, load_settings
from tests import iris_versions as iv

DRAWS = 20_000


def within_four_sigma(hits: int, n: int, p: float) -> bool:
    """True when ``hits`` of ``n`` Bernoulli(p) trials is within 4 standard deviations."""
    return abs(hits - n * p) <= 4 * math.sqrt(n * p * (1 - p))


def canary(sticky: bool = False, **weights: float) -> VersionRouter:
    return VersionRouter("1.0", RoutingConfig(weights=weights or None, sticky=sticky))


def test_choose_without_weights_gives_the_default_version() -> None:
    """With no weights every request goes to the default version."""
    router = VersionRouter("2.0", RoutingConfig())
    assert {router.choose(None) for _ in range(100)} == {"2.0"}


def test_choose_splits_traffic_by_weight() -> None:
    """A 90/10 split over many requests is within four sigma of 10 % for the canary."""
    router = VersionRouter("1.0", RoutingConfig(weights={"1.0": 90, "2.0": 10}))
    picks = Counter(router.choose(None) for _ in range(DRAWS))
    assert within_four_sigma(picks["2.0"], DRAWS, 0.10)
    assert picks["1.0"] + picks["2.0"] == DRAWS


def test_choose_never_picks_a_zero_weight_version() -> None:
    """A version with weight 0 gets no routed traffic."""
    router = VersionRouter("1.0", RoutingConfig(weights={"1.0": 0, "2.0": 1}))
    assert {router.choose(None) for _ in range(1000)} == {"2.0"}


def test_choose_sticky_caller_always_gets_the_same_version() -> None:
    """With sticky routing each caller lands on one version every time."""
    router = VersionRouter("1.0", RoutingConfig(weights={"1.0": 50, "2.0": 50}, sticky=True))
    for caller in (f"client-{i}" for i in range(50)):
        assert len({router.choose(caller) for _ in range(20)}) == 1


def test_choose_sticky_assignment_is_the_same_in_every_replica() -> None:
    """Two routers built separately (two replicas) send each caller to the same version."""
    config = RoutingConfig(weights={"1.0": 70, "2.0": 30}, sticky=True)
    first, second = VersionRouter("1.0", config), VersionRouter("1.0", config)
    callers = [f"key-{i}" for i in range(300)]
    assert [first.choose(c) for c in callers] == [second.choose(c) for c in callers]


def test_choose_sticky_callers_are_spread_by_weight() -> None:
    """Sticky routing still honours the weights across many callers."""
    router = VersionRouter("1.0", RoutingConfig(weights={"1.0": 70, "2.0": 30}, sticky=True))
    picks = Counter(router.choose(f"caller-{i}") for i in range(DRAWS))
    assert within_four_sigma(picks["2.0"], DRAWS, 0.30)


def test_choose_sticky_without_a_caller_is_weighted_at_random() -> None:
    """Anonymous requests are spread by weight even when routing is sticky."""
    router = VersionRouter("1.0", RoutingConfig(weights={"1.0": 50, "2.0": 50}, sticky=True))
    picks = Counter(router.choose(None) for _ in range(DRAWS))
    assert within_four_sigma(picks["2.0"], DRAWS, 0.5)


def test_share_is_the_normalised_weight() -> None:
    """share() gives each version's fraction of routed traffic."""
    router = VersionRouter("1.0", RoutingConfig(weights={"1.0": 3, "2.0": 1, "3.0": 0}))
    assert (router.share("1.0"), router.share("2.0"), router.share("3.0")) == (0.75, 0.25, 0.0)


def test_roles_name_default_weighted_and_shadow_versions() -> None:
    """roles() lists every version the routing depends on and why."""
    router = VersionRouter(
        "1.0", RoutingConfig(weights={"1.0": 9, "2.0": 1, "4.0": 0}, shadow="3.0")
    )
    assert router.roles() == {"1.0": "default", "2.0": "weight 1", "3.0": "shadow"}


def test_router_ignores_later_changes_to_its_config_object() -> None:
    """A router keeps its own copy: mutating the settings object never half-changes routing."""
    config = RoutingConfig(weights={"1.0": 1, "2.0": 1})
    router = VersionRouter("1.0", config)
    config.weights = {"2.0": 1}
    assert router.share("1.0") == 0.5


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[ModelRegistry]:
    """A loaded registry: iris 1.0 (default), 2.0 and 3.0, with a 50/50 canary over 1.0/2.0."""
    models = [
        iv.version_entry("iris", "1.0", iv.dump(iv.logistic(), tmp_path / "v1.joblib")),
        iv.version_entry("iris", "2.0", iv.dump(iv.forest(), tmp_path / "v2.joblib")),
        iv.version_entry("iris", "3.0", iv.dump(iv.shifted(), tmp_path / "v3.joblib")),
    ]
    config = iv.write_config(
        tmp_path / "modelserve.yaml",
        models,
        routing={"iris": {"weights": {"1.0": 50, "2.0": 50}}},
    )
    registry = ModelRegistry(load_settings(config))
    await registry.load_all(strict=True)
    yield registry
    await registry.close(5)


async def test_route_explicit_version_beats_the_weights(registry: ModelRegistry) -> None:
    """A request naming a version gets it, whatever the canary weights say."""
    assert {registry.route("iris", "3.0", None).version for _ in range(50)} == {"3.0"}


async def test_route_without_version_follows_the_weights(registry: ModelRegistry) -> None:
    """Requests naming no version are spread over the weighted versions only."""
    assert {registry.route("iris", None, None).version for _ in range(200)} == {"1.0", "2.0"}


async def test_route_unknown_version_is_version_not_found(registry: ModelRegistry) -> None:
    """Naming a version that is not configured is a 404 version_not_found."""
    with pytest.raises(VersionNotFoundError, match=r"'9\.9'"):
        registry.route("iris", "9.9", None)


async def test_route_failed_canary_falls_back_to_the_default(tmp_path: Path) -> None:
    """Routed traffic never fails because a weighted version failed to load."""
    broken = tmp_path / "broken.joblib"
    broken.write_bytes(b"not a pickle")
    models = [
        iv.version_entry("iris", "1.0", iv.dump(iv.logistic(), tmp_path / "v1.joblib")),
        iv.version_entry("iris", "2.0", broken, required=False),
    ]
    routing = {"iris": {"weights": {"1.0": 50, "2.0": 50}}}
    registry = ModelRegistry(
        load_settings(iv.write_config(tmp_path / "c.yaml", models, routing=routing))
    )
    await registry.load_all(strict=False)
    try:
        assert {registry.route("iris", None, None).version for _ in range(100)} == {"1.0"}
    finally:
        await registry.close(5)


async def test_route_unloaded_version_named_explicitly_is_not_ready(
    registry: ModelRegistry,
) -> None:
    """Naming a version that does not serve is a 503 model_not_ready."""
    registry.set_routing("iris", RoutingConfig())
    await registry.unload("iris", "3.0")
    with pytest.raises(ModelNotReadyError):
        registry.route("iris", "3.0", None)


async def test_set_routing_replaces_the_router_in_one_assignment(
    registry: ModelRegistry,
) -> None:
    """A routing change installs a new router and leaves the old object untouched."""
    old = registry.routers["iris"]
    new = registry.set_routing("iris", RoutingConfig(), default_version="3.0")
    assert registry.routers["iris"] is new
    assert (old.default_version, old.share("2.0")) == ("1.0", 0.5)
    assert {registry.route("iris", None, None).version for _ in range(50)} == {"3.0"}


@pytest.mark.parametrize(
    ("config", "default"),
    [
        (RoutingConfig(weights={"1.0": 1, "7.0": 1}), None),
        (RoutingConfig(shadow="7.0"), None),
        (RoutingConfig(), "7.0"),
    ],
    ids=["weights", "shadow", "default"],
)
async def test_set_routing_unknown_version_is_refused(
    registry: ModelRegistry, config: RoutingConfig, default: str | None
) -> None:
    """Routing that names an unconfigured version is refused and changes nothing."""
    before = registry.routers["iris"]
    with pytest.raises(VersionNotFoundError, match=r"'7\.0'"):
        registry.set_routing("iris", config, default)
    assert registry.routers["iris"] is before


async def test_set_routing_to_an_unloaded_version_is_refused(registry: ModelRegistry) -> None:
    """Routing traffic to a version that does not serve is refused (409 version_not_loaded)."""
    await registry.unload("iris", "3.0")
    with pytest.raises(VersionNotLoadedError, match="unloaded"):
        registry.set_routing("iris", RoutingConfig(weights={"1.0": 9, "3.0": 1}))


@pytest.mark.parametrize("version", ["1.0", "2.0"], ids=["default", "weighted"])
async def test_unload_of_a_routed_version_is_refused(registry: ModelRegistry, version: str) -> None:
    """A version the routing still sends traffic to cannot be unloaded."""
    with pytest.raises(VersionInUseError, match="route traffic away"):
        await registry.unload("iris", version)
    assert registry.get("iris", version).ready
