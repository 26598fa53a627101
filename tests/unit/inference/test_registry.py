"""ModelRegistry: readiness after load and warm-up, failures answered 503, lookups answered 404."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt
import pytest

from modelserve.errors import (
    ErrorKind,
    ModelLoadError,
    ModelNotFoundError,
    ModelNotReadyError,
    VersionNotFoundError,
)
from modelserve.inference.registry import ModelRegistry
from modelserve.inference.types import ModelStatus
from modelserve.settings import Settings
from tests import fakes

WARMUP_STARTED = threading.Event()
WARMUP_RELEASE = threading.Event()


class GatedClassifier(fakes.SlowClassifier):
    """Blocks inside predict_proba until the test releases it, so warm-up can be observed."""

    def predict_proba(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        WARMUP_STARTED.set()
        WARMUP_RELEASE.wait(timeout=10)
        return super().predict_proba(x)


RegistryFactory = Callable[..., ModelRegistry]


@pytest.fixture
async def make_registry() -> AsyncIterator[RegistryFactory]:
    """Factory: a registry over the given model entries; its batchers are closed afterwards."""
    made: list[ModelRegistry] = []

    def make(*models: dict[str, Any], **settings: Any) -> ModelRegistry:
        registry = ModelRegistry(Settings(models=list(models), **settings))
        made.append(registry)
        return registry

    yield make
    for registry in made:
        await registry.close(1.0)


def iris(demo_models_dir: Path, **fields: Any) -> dict[str, Any]:
    return {"name": "iris", "path": demo_models_dir / "iris.joblib", **fields}


def missing(tmp_path: Path, **fields: Any) -> dict[str, Any]:
    return {"name": "ghost", "path": tmp_path / "absent.joblib", **fields}


async def test_registry_not_ready_before_loading(
    make_registry: RegistryFactory, demo_models_dir: Path
) -> None:
    """Before load_all every version is loading and readiness says so."""
    registry = make_registry(iris(demo_models_dir))
    assert registry.readiness() == (False, ["iris:1 is loading"])


async def test_registry_ready_after_load_all(
    make_registry: RegistryFactory, demo_models_dir: Path
) -> None:
    """After a successful load and warm-up the registry is ready."""
    registry = make_registry(iris(demo_models_dir))
    await registry.load_all(strict=False)
    assert registry.readiness() == (True, [])


async def test_registry_not_ready_while_warm_up_runs(
    make_registry: RegistryFactory, tmp_path: Path
) -> None:
    """Readiness stays false while the warm-up call is running, and turns true after it."""
    joblib.dump(GatedClassifier(0.0).fit(None, None), tmp_path / "gated.joblib")
    registry = make_registry({"name": "gated", "path": tmp_path / "gated.joblib"})
    WARMUP_STARTED.clear()
    WARMUP_RELEASE.clear()
    loading = asyncio.create_task(registry.load_all(strict=False))
    try:
        assert await asyncio.to_thread(WARMUP_STARTED.wait, 10)
        assert registry.readiness() == (False, ["gated:1 is loading"])
    finally:
        WARMUP_RELEASE.set()
        await loading
    assert registry.readiness() == (True, [])


async def test_registry_records_load_and_warm_up_in_info(
    make_registry: RegistryFactory, demo_models_dir: Path
) -> None:
    """A loaded version's info has its durations, width, task and labels."""
    registry = make_registry(iris(demo_models_dir, labels=fakes.LABELS))
    await registry.load_all(strict=False)
    info = registry.get("iris").info
    assert info.status is ModelStatus.READY
    assert (info.n_features, info.task, info.labels) == (4, "classifier", fakes.LABELS)
    assert info.load_ms is not None
    assert info.load_ms > 0
    assert info.warmup_ms is not None
    assert info.warmup_ms > 0


async def test_registry_failed_version_answers_503_with_reason(
    make_registry: RegistryFactory, tmp_path: Path
) -> None:
    """A version that failed to load refuses predictions with 503 and its reason."""
    registry = make_registry(missing(tmp_path))
    await registry.load_all(strict=False)
    with pytest.raises(ModelNotReadyError) as info:
        registry.route("ghost", None, None)
    assert info.value.kind is ErrorKind.UNAVAILABLE
    assert "model file not found" in info.value.detail


async def test_registry_failed_required_version_fails_readiness_naming_it(
    make_registry: RegistryFactory, tmp_path: Path
) -> None:
    """A failed required version makes readiness false, naming the version and its status;
    the reason (which names the file) stays in the version's info, not in readiness."""
    registry = make_registry(missing(tmp_path))
    await registry.load_all(strict=False)
    ready, reasons = registry.readiness()
    assert not ready
    assert reasons == ["ghost:1 is failed"]
    assert str(registry.get("ghost", "1").info.reason).startswith("model file not found")


async def test_registry_failed_optional_version_does_not_block_readiness(
    make_registry: RegistryFactory, demo_models_dir: Path, tmp_path: Path
) -> None:
    """An optional version that failed leaves the registry ready."""
    registry = make_registry(iris(demo_models_dir), missing(tmp_path, required=False))
    await registry.load_all(strict=False)
    assert registry.readiness() == (True, [])
    assert registry.get("ghost").info.status is ModelStatus.FAILED


async def test_registry_strict_load_raises(make_registry: RegistryFactory, tmp_path: Path) -> None:
    """With strict, the first failed load raises instead of being recorded."""
    registry = make_registry(missing(tmp_path))
    with pytest.raises(ModelLoadError, match="ghost:1: model file not found"):
        await registry.load_all(strict=True)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"warmup_input": [[1.0, 2.0]]}, "warmup_input does not fit"),
        ({"warmup_input": [[666.0, 0.0, 0.0, 0.0]]}, "warm-up prediction failed"),
        ({"n_features": 5}, "n_features is 5 but the model expects 4"),
        ({"feature_names": ["a", "b"]}, "2 feature names given for a model of 4"),
        ({"labels": ["only", "two"]}, "labels"),
    ],
    ids=["warmup-width", "warmup-raises", "n-features", "feature-names", "labels-count"],
)
async def test_registry_inconsistent_model_fails_at_load(
    make_registry: RegistryFactory, fake_models_dir: Path, fields: dict[str, Any], reason: str
) -> None:
    """A model that does not fit its configuration fails at load time, not at request time."""
    registry = make_registry({"name": "m", "path": fake_models_dir / "failing.joblib", **fields})
    await registry.load_all(strict=False)
    info = registry.get("m").info
    assert info.status is ModelStatus.FAILED
    assert info.reason is not None
    assert reason in info.reason


async def test_registry_get_unknown_model_is_404(
    make_registry: RegistryFactory, demo_models_dir: Path
) -> None:
    """An unknown model name is a 404 that lists the served models."""
    registry = make_registry(iris(demo_models_dir))
    with pytest.raises(ModelNotFoundError, match="served models: iris") as info:
        registry.get("nope")
    assert info.value.kind is ErrorKind.NOT_FOUND


async def test_registry_get_unknown_version_is_404(
    make_registry: RegistryFactory, demo_models_dir: Path
) -> None:
    """An unknown version of a known model is a 404 that lists its versions."""
    registry = make_registry(iris(demo_models_dir))
    with pytest.raises(VersionNotFoundError, match="versions: 1") as info:
        registry.get("iris", "9")
    assert info.value.kind is ErrorKind.NOT_FOUND


@pytest.mark.parametrize(
    ("defaults", "expected"),
    [((False, False), "1"), ((False, True), "2")],
    ids=["first-listed", "marked-default"],
)
async def test_registry_default_version(
    make_registry: RegistryFactory,
    demo_models_dir: Path,
    defaults: tuple[bool, bool],
    expected: str,
) -> None:
    """A request naming no version gets the version marked default, else the first listed."""
    registry = make_registry(
        iris(demo_models_dir, version="1", default=defaults[0]),
        iris(demo_models_dir, version="2", default=defaults[1]),
    )
    assert registry.get("iris").version == expected


async def test_registry_default_model_is_first_listed(
    make_registry: RegistryFactory, demo_models_dir: Path, fake_models_dir: Path
) -> None:
    """Without default_model a request naming no model gets the first listed one."""
    registry = make_registry(
        {"name": "sum", "path": fake_models_dir / "sum.joblib"}, iris(demo_models_dir)
    )
    assert registry.get(None).name == "sum"


async def test_registry_loads_off_the_event_loop(
    make_registry: RegistryFactory, fake_models_dir: Path
) -> None:
    """While a slow warm-up runs the event loop keeps turning."""
    registry = make_registry({"name": "slow", "path": fake_models_dir / "slowish.joblib"})
    loading = asyncio.create_task(registry.load_all(strict=False))
    ticks = 0
    deadline = time.monotonic() + 10
    while not loading.done() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
        ticks += 1
    await loading
    assert ticks > 5


async def test_registry_label_count_checked_against_probability_width(
    make_registry: RegistryFactory, demo_models_dir: Path
) -> None:
    """For a model that does not list its classes (ONNX), the warm-up output's width is checked."""
    registry = make_registry(
        {"name": "onnx", "path": demo_models_dir / "iris.onnx", "labels": ["a", "b"]}
    )
    await registry.load_all(strict=False)
    assert registry.get("onnx").info.reason == "2 labels configured for a model of 3 classes"


async def test_registry_admin_calls_for_unknown_names_leave_no_lock_behind(
    make_registry: RegistryFactory, demo_models_dir: Path
) -> None:
    """Loads and unloads of names that are not configured answer 404 and add no lock entry,
    so the lock table stays as small as the configuration."""
    registry = make_registry(iris(demo_models_dir))
    before = dict(registry._locks)
    for i in range(50):
        with pytest.raises(ModelNotFoundError):
            await registry.load(f"nope-{i}", "1")
        with pytest.raises(VersionNotFoundError):
            await registry.unload("iris", f"v{i}")
    assert registry._locks.keys() == before.keys()
