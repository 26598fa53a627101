"""apply_state on a real registry: order, reload generations, and what cannot be applied."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from modelserve.control.reconcile import Generations, apply_state
from modelserve.control.state import DesiredState
from modelserve.inference.coordination import RoutingAction, VersionAction
from modelserve.inference.registry import ModelRegistry
from modelserve.settings import RoutingConfig, load_settings
from tests import iris_versions as iv


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[ModelRegistry]:
    """iris 1 (default, logistic: setosa) and 2 (shifted: versicolor), loaded."""
    models = [
        iv.version_entry("iris", "1", iv.dump(iv.logistic(), tmp_path / "v1.joblib")),
        iv.version_entry("iris", "2", iv.dump(iv.shifted(), tmp_path / "v2.joblib")),
    ]
    registry = ModelRegistry(load_settings(iv.write_config(tmp_path / "m.yaml", models)))
    await registry.load_all(strict=True)
    yield registry
    await registry.close(5)


async def test_apply_state_reroutes_then_unloads_what_the_routing_left(
    registry: ModelRegistry,
) -> None:
    """A state moving the default to 2 and unloading 1 applies in one pass: the routing
    changes first, so the unload of the former default is not refused."""
    state = DesiredState().with_action(RoutingAction("iris", "2", RoutingConfig()))
    state = state.with_action(VersionAction("iris", "1", "unload"))
    assert await apply_state(registry, state, {}) == []
    assert registry.routers["iris"].default_version == "2"
    assert registry.get("iris", "1").info.status.value == "unloaded"


async def test_apply_state_reloads_once_per_generation(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    """A raised reload generation reloads the artifact from its path once; applying the same
    state again reloads nothing."""
    generations: Generations = {}
    assert await apply_state(registry, DesiredState(), generations) == []
    iv.dump(iv.shifted(), tmp_path / "v1.joblib")
    state = DesiredState().with_action(VersionAction("iris", "1", "reload"))
    before = registry.get("iris", "1")
    assert await apply_state(registry, state, generations) == []
    reloaded = registry.get("iris", "1")
    assert reloaded is not before
    assert await apply_state(registry, state, generations) == []
    assert registry.get("iris", "1") is reloaded


async def test_apply_state_reports_what_this_process_cannot_apply(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    """Unknown models and versions, and a reload whose artifact is corrupt, are reported;
    the rest of the state is applied and the old artifact keeps serving."""
    state = DesiredState().with_action(RoutingAction("other", "1", RoutingConfig()))
    state = state.with_action(VersionAction("iris", "9", "load"))
    state = state.with_action(RoutingAction("iris", "2", RoutingConfig()))
    generations: Generations = {}
    await apply_state(registry, DesiredState(), generations)
    (tmp_path / "v1.joblib").write_bytes(b"not a model")
    state = state.with_action(VersionAction("iris", "1", "reload"))
    before = registry.get("iris", "1")
    problems = await apply_state(registry, state, generations)
    assert problems[:2] == [
        "other: not configured in this process",
        "iris:9: not configured in this process",
    ]
    assert len(problems) == 3
    assert problems[2].startswith("iris:1: ")
    assert registry.routers["iris"].default_version == "2"
    assert registry.get("iris", "1") is before
