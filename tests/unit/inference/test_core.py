"""InferenceCore called directly (no HTTP): arrays in, outputs out, health, metadata, repository."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from modelserve.cache.memory import MemoryCache
from modelserve.errors import (
    FeatureCountError,
    InvalidInputError,
    ModelNotFoundError,
    ModelNotReadyError,
    NonFiniteFeatureError,
    ShuttingDownError,
    VersionNotFoundError,
)
from modelserve.inference.cache import PredictionCache
from modelserve.inference.core import InferenceCore
from modelserve.inference.formatting import format_predictions
from modelserve.inference.metadata import TensorSpec
from modelserve.inference.preprocess import FeatureSchema
from modelserve.inference.registry import ModelRegistry
from modelserve.inference.types import Batch, FloatArray, ModelStatus
from modelserve.observability.health import HealthState
from modelserve.settings import Settings, load_settings
from tests import iris_versions as iv

ROWS = np.array([iv.SETOSA_ROW, [6.7, 3.0, 5.2, 2.3]])


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory, fake_models_dir: Path) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("core-models")
    return {
        "logistic": iv.dump(iv.logistic(), out / "logistic.joblib"),
        "other": iv.dump(iv.logistic(0.1), out / "other.joblib"),
        "sum": fake_models_dir / "sum.joblib",
    }


def core_settings(tmp_path: Path, artifacts: dict[str, Path]) -> Settings:
    """iris 1 (default) and 2, and a regressor ``sum`` without labels."""
    entries = [
        iv.version_entry("iris", "1", artifacts["logistic"], default=True),
        iv.version_entry("iris", "2", artifacts["other"], required=False),
        {"name": "sum", "path": str(artifacts["sum"]), "n_features": 4},
    ]
    return load_settings(iv.write_config(tmp_path / "core.yaml", entries))


@pytest.fixture
async def make_core(
    tmp_path: Path, artifacts: dict[str, Path]
) -> AsyncIterator[Callable[..., Any]]:
    """Factory: a core over a loaded registry (optionally with a memory cache), closed after."""
    made: list[InferenceCore] = []

    async def make(*, cache: bool = False) -> InferenceCore:
        registry = ModelRegistry(core_settings(tmp_path, artifacts))
        await registry.load_all(strict=True)
        health = HealthState(loading_done=True)
        backend = (
            PredictionCache(MemoryCache(maxsize=100, ttl_s=60), b"core test secret!")
            if cache
            else None
        )
        core = InferenceCore(registry, health, backend)
        made.append(core)
        return core

    yield make
    for core in made:
        await core.close(5)


def given(batch: FloatArray) -> Callable[[FeatureSchema], FloatArray]:
    return lambda schema: batch


async def test_core_infer_returns_the_models_own_probabilities(make_core: Any) -> None:
    """Arrays in, arrays out: probabilities equal predict_proba, labels its argmax's name."""
    core = await make_core()
    result = await core.infer(given(ROWS), model="iris")
    expected = iv.logistic().predict_proba(ROWS)
    assert result.outputs.probabilities is not None
    np.testing.assert_array_equal(result.outputs.probabilities, expected)
    assert result.outputs.labels == [iv.LABELS[i] for i in expected.argmax(axis=1)]
    assert (result.model, result.model_version) == ("iris", "1")


async def test_core_infer_regressor_returns_values(make_core: Any) -> None:
    """A regressor's outputs are its values, one float64 per row."""
    core = await make_core()
    result = await core.infer(given(ROWS), model="sum")
    assert result.outputs.labels is None
    assert result.outputs.values is not None
    assert result.outputs.values.tolist() == ROWS.sum(axis=1).tolist()


async def test_core_infer_decodes_with_the_resolved_versions_schema(make_core: Any) -> None:
    """The decode function receives the schema of the version the request resolved to."""
    core = await make_core()
    seen: list[list[str] | None] = []

    def decode(schema: FeatureSchema) -> Batch:
        seen.append(schema.feature_names)
        return schema.rows_to_array([dict(zip(iv.FEATURES, iv.SETOSA_ROW, strict=True))])

    result = await core.infer(decode, model="iris", version="2")
    assert seen == [iv.FEATURES]
    assert result.model_version == "2"


@pytest.mark.parametrize(
    ("batch", "error"),
    [
        (np.ones((1, 3)), FeatureCountError),
        (np.array([[1.0, np.nan, 1.0, 1.0]]), NonFiniteFeatureError),
        (np.ones((1, 4), dtype=np.float32), InvalidInputError),
        (np.ones(4), InvalidInputError),
    ],
    ids=["width", "nan", "float32", "one-dimensional"],
)
async def test_core_infer_checks_every_decoded_batch(
    make_core: Any, batch: FloatArray, error: type[Exception]
) -> None:
    """Whatever a transport decodes is checked for shape, dtype and finiteness before use."""
    core = await make_core()
    with pytest.raises(error):
        await core.infer(given(batch), model="iris")


async def test_core_infer_counts_a_refused_batch_against_the_version(make_core: Any) -> None:
    """A bad batch is counted once in the version's failure counter, by its code."""
    core = await make_core()
    labels = {"model": "iris", "model_version": "1", "code": "wrong_feature_count"}
    before = REGISTRY.get_sample_value("modelserve_inference_errors_total", labels) or 0.0
    with pytest.raises(FeatureCountError):
        await core.infer(given(np.ones((1, 3))), model="iris")
    after = REGISTRY.get_sample_value("modelserve_inference_errors_total", labels)
    assert after == before + 1


async def test_core_infer_refuses_once_not_accepting(make_core: Any) -> None:
    """After stop_accepting every request is refused with shutting_down."""
    core = await make_core()
    core.health.stop_accepting()
    with pytest.raises(ShuttingDownError):
        await core.infer(given(ROWS), model="iris")


async def test_core_cache_hit_gives_the_same_outputs_for_any_top_k(make_core: Any) -> None:
    """A cached row comes back identical, and one entry serves every top_k when formatted."""
    core = await make_core(cache=True)
    first = await core.infer(given(ROWS[:1]), model="iris")
    second = await core.infer(given(ROWS[:1]), model="iris")
    assert (first.cache_status, second.cache_status) == ("MISS", "HIT")
    assert first.outputs.labels == second.outputs.labels
    assert first.outputs.probabilities is not None
    assert second.outputs.probabilities is not None
    np.testing.assert_array_equal(first.outputs.probabilities, second.outputs.probabilities)
    (top1,) = format_predictions(second.outputs, second.spec, 1)
    assert top1.probabilities is not None
    assert list(top1.probabilities) == ["setosa"]


async def test_core_server_ready_says_why_not(make_core: Any) -> None:
    """Ready after loading; not while loading; not once draining, with the reason first."""
    core = await make_core()
    assert core.server_ready().ready
    core.health.loading_done = False
    assert core.server_ready().reasons == ["models are loading"]
    core.health.loading_done = True
    core.health.start_draining()
    readiness = core.server_ready()
    assert (readiness.ready, readiness.reasons[0]) == (False, "shutting down")


async def test_core_model_ready_follows_the_versions_state(make_core: Any) -> None:
    """A version is ready while it serves and not after an unload."""
    core = await make_core()
    assert core.model_ready("iris", "2")
    await core.repository.unload("iris", "2")
    assert not core.model_ready("iris", "2")
    with pytest.raises(ModelNotReadyError):
        await core.infer(given(ROWS), model="iris", version="2")


@pytest.mark.parametrize(
    ("name", "version", "error"),
    [("ghost", None, ModelNotFoundError), ("iris", "9", VersionNotFoundError)],
    ids=["model", "version"],
)
async def test_core_model_ready_unknown_names_raise(
    make_core: Any, name: str, version: str | None, error: type[Exception]
) -> None:
    """An unknown model or version is an error (404 on every transport), not "not ready"."""
    core = await make_core()
    with pytest.raises(error):
        core.model_ready(name, version)


async def test_core_model_metadata_of_a_classifier(make_core: Any) -> None:
    """Platform, versions, input tensor with a -1 batch dimension, label and probabilities."""
    core = await make_core()
    meta = core.model_metadata("iris")
    assert (meta.name, meta.version, meta.versions) == ("iris", "1", ["1", "2"])
    assert (meta.platform, meta.task, meta.status) == ("sklearn_joblib", "classifier", "ready")
    assert meta.inputs == [TensorSpec("input", "FP64", (-1, 4))]
    assert meta.outputs == [
        TensorSpec("label", "BYTES", (-1,)),
        TensorSpec("probabilities", "FP64", (-1, 3)),
    ]
    assert (meta.labels, meta.feature_names) == (iv.LABELS, iv.FEATURES)


async def test_core_model_metadata_of_a_regressor(make_core: Any) -> None:
    """A regressor answers one value tensor."""
    core = await make_core()
    meta = core.model_metadata("sum")
    assert meta.outputs == [TensorSpec("value", "FP64", (-1,))]
    assert meta.task == "regressor"


async def test_core_model_metadata_of_an_unloaded_version_has_no_tensors(make_core: Any) -> None:
    """Until a version loads its tensors are unknown; status says why."""
    core = await make_core()
    await core.repository.unload("iris", "2")
    meta = core.model_metadata("iris", "2")
    assert (meta.status, meta.inputs, meta.outputs) == (ModelStatus.UNLOADED, [], [])


async def test_core_repository_unload_and_load_are_audited(make_core: Any) -> None:
    """Unload then load a version: both change it, both are logged with the caller."""
    core = await make_core()
    with capture_logs() as logs:
        unloaded = await core.repository.unload("iris", "2", caller="ops")
        loaded = await core.repository.load("iris", "2", caller="ops")
        again = await core.repository.load("iris", "2", caller="ops")
    assert (unloaded.info.status, unloaded.changed) == (ModelStatus.UNLOADED, True)
    assert (loaded.info.status, loaded.changed) == (ModelStatus.READY, True)
    assert again.changed is False
    audit = [(e["action"], e["caller"]) for e in logs if e["event"] == "admin_action_completed"]
    assert audit == [("unload", "ops"), ("load", "ops"), ("load", "ops")]


async def test_core_repository_index_shows_routing_roles(make_core: Any) -> None:
    """The index lists every version with its default flag and traffic share."""
    core = await make_core()
    index = {(s.info.name, s.info.version): s for s in core.repository.index()}
    assert index["iris", "1"].is_default
    assert index["iris", "1"].traffic_share == 1.0
    assert (index["iris", "2"].is_default, index["iris", "2"].traffic_share) == (False, 0.0)
