"""Shadow mode: comparisons, counting, bounds, and a live answer that never waits or fails."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from modelserve.inference.registry import ModelRegistry
from modelserve.inference.shadow import ShadowRunner, compare
from modelserve.inference.types import FloatArray, Outputs
from modelserve.settings import Settings, load_settings
from tests import fakes
from tests import iris_versions as iv

VIRGINICA_ROW = [6.7, 3.0, 5.2, 2.3]


def shadow_rows(model: str, live: str, shadow: str, result: str) -> float:
    """Rows counted so far for one shadow result."""
    labels = {"model": model, "live_version": live, "shadow_version": shadow, "result": result}
    return REGISTRY.get_sample_value("modelserve_shadow_comparisons_total", labels) or 0.0


async def settle(runner: ShadowRunner, model: str, timeout_s: float = 20) -> None:
    """Wait until no shadow request of ``model`` is pending."""
    deadline = time.monotonic() + timeout_s
    while runner.pending(model):
        assert time.monotonic() < deadline, "shadow work did not finish"
        await asyncio.sleep(0.01)


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """GATE, opened again at the end: close it once the models are loaded (warm-up passes)."""
    yield iv.GATE
    iv.GATE.set()


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory, fake_models_dir: Path) -> dict[str, Path]:
    """Live and shadow artifacts: iris logistic, a shifted copy, failing, gated, regressors."""
    out = tmp_path_factory.mktemp("shadow-models")
    live = iv.logistic()
    return {
        "live": iv.dump(live, out / "live.joblib"),
        "same": iv.dump(live, out / "same.joblib"),
        "shifted": iv.dump(iv.shifted(), out / "shifted.joblib"),
        "failing": fake_models_dir / "failing.joblib",
        "gated": iv.dump(iv.GatedClassifier(), out / "gated.joblib"),
        "sum": fake_models_dir / "sum.joblib",
        "sum_copy": iv.dump(fakes.SumRegressor(), out / "sum_copy.joblib"),
    }


def shadow_settings(
    tmp_path: Path, model: str, live: Path, shadow: Path, **routing: Any
) -> Settings:
    """A config with ``model`` 1 (live, default) and 2 (its shadow)."""
    entries = [
        iv.version_entry(model, "1", live, default=True),
        iv.version_entry(model, "2", shadow, required=False),
    ]
    config = iv.write_config(
        tmp_path / f"{model}.yaml", entries, routing={model: {"shadow": "2", **routing}}
    )
    return load_settings(config)


@pytest.fixture
async def make_registry() -> AsyncIterator[Callable[[Settings], Any]]:
    """Factory for loaded registries, closed at the end of the test."""
    made: list[ModelRegistry] = []

    async def make(settings: Settings) -> ModelRegistry:
        registry = ModelRegistry(settings)
        await registry.load_all(strict=False)
        made.append(registry)
        return registry

    yield make
    for registry in made:
        await registry.close(5)


async def live_answer(registry: ModelRegistry, model: str, row: list[float]) -> Outputs:
    with registry.route(model, "1", None) as entry:
        return await entry.compute(batch(row))


def batch(*rows: list[float]) -> FloatArray:
    return np.array(rows, dtype=np.float64)


def labels(*names: str) -> Outputs:
    return Outputs(labels=list(names))


def values(*numbers: float | list[float]) -> Outputs:
    return Outputs(values=np.array(numbers, dtype=np.float64))


def test_compare_counts_equal_labels_as_agreement() -> None:
    """Classifier rows agree when the labels are equal."""
    result = compare(labels("setosa", "virginica"), labels("setosa", "versicolor"), 0.0)
    assert (result.agreed, result.disagreed) == (1, 1)
    assert result.example == ("virginica", "versicolor")
    assert result.max_abs_delta is None


def test_compare_regressors_agree_within_tolerance() -> None:
    """Regressor rows agree when |live - shadow| is within the tolerance; the largest is kept."""
    result = compare(values(1.0, 2.0), values(1.05, 2.5), 0.1)
    assert (result.agreed, result.disagreed) == (1, 1)
    assert result.max_abs_delta == pytest.approx(0.5)


def test_compare_multi_output_rows_use_the_largest_difference() -> None:
    """A multi-output row agrees only when every output is within the tolerance."""
    result = compare(values([1.0, 2.0]), values([1.0, 2.3]), 0.2)
    assert result.agreed == 0
    assert result.max_abs_delta == pytest.approx(0.3)


def test_compare_refuses_different_row_counts() -> None:
    """A shadow answering another number of rows is an error, not a comparison."""
    with pytest.raises(ValueError, match="1 rows for 2"):
        compare(labels("a", "b"), labels("a"), 0.0)


async def test_mirror_counts_agreement_and_logs_it(
    tmp_path: Path, model_files: dict[str, Path], make_registry: Any
) -> None:
    """An identical shadow model agrees, and the comparison is logged."""
    registry = await make_registry(
        shadow_settings(tmp_path, "agree", model_files["live"], model_files["same"])
    )
    runner = ShadowRunner(registry)
    live = registry.route("agree", None, None)
    before = shadow_rows("agree", "1", "2", "agree")
    with capture_logs() as logs:
        runner.mirror(
            live, batch(iv.SETOSA_ROW), await live_answer(registry, "agree", iv.SETOSA_ROW)
        )
        await settle(runner, "agree")
    assert shadow_rows("agree", "1", "2", "agree") == before + 1
    event = next(e for e in logs if e["event"] == "shadow_compared")
    assert (event["agreed"], event["disagreed"]) == (1, 0)


async def test_mirror_counts_disagreement_with_an_example(
    tmp_path: Path, model_files: dict[str, Path], make_registry: Any
) -> None:
    """A shadow that answers another label is counted as disagreeing and logged with both."""
    registry = await make_registry(
        shadow_settings(tmp_path, "differ", model_files["live"], model_files["shifted"])
    )
    runner = ShadowRunner(registry)
    live = registry.route("differ", None, None)
    before = shadow_rows("differ", "1", "2", "disagree")
    with capture_logs() as logs:
        runner.mirror(
            live, batch(iv.SETOSA_ROW), await live_answer(registry, "differ", iv.SETOSA_ROW)
        )
        await settle(runner, "differ")
    assert shadow_rows("differ", "1", "2", "disagree") == before + 1
    event = next(e for e in logs if e["event"] == "shadow_compared")
    assert (event["live_prediction"], event["shadow_prediction"]) == ("setosa", "versicolor")


async def test_mirror_regressor_delta_within_tolerance_agrees(
    tmp_path: Path, model_files: dict[str, Path], make_registry: Any
) -> None:
    """Regressors are compared by |Δ| against routing.shadow_tolerance."""
    settings = shadow_settings(
        tmp_path, "regress", model_files["sum"], model_files["sum_copy"], shadow_tolerance=0.01
    )
    settings.models[0].labels = settings.models[1].labels = None
    registry = await make_registry(settings)
    runner = ShadowRunner(registry)
    live = registry.route("regress", None, None)
    before = shadow_rows("regress", "1", "2", "agree")
    with capture_logs() as logs:
        runner.mirror(live, batch([1.0, 2.0, 3.0, 4.0]), values(10.005))
        await settle(runner, "regress")
    assert shadow_rows("regress", "1", "2", "agree") == before + 1
    event = next(e for e in logs if e["event"] == "shadow_compared")
    assert event["max_abs_delta"] == pytest.approx(0.005)


async def test_mirror_counts_a_failing_shadow_as_error(
    tmp_path: Path, model_files: dict[str, Path], make_registry: Any
) -> None:
    """A shadow that raises is counted as an error and logged as a warning."""
    registry = await make_registry(
        shadow_settings(tmp_path, "fails", model_files["live"], model_files["failing"])
    )
    runner = ShadowRunner(registry)
    live = registry.route("fails", None, None)
    row = [666.0, 1.0, 1.0, 1.0]
    before = shadow_rows("fails", "1", "2", "error")
    with capture_logs() as logs:
        runner.mirror(live, batch(row), await live_answer(registry, "fails", row))
        await settle(runner, "fails")
    assert shadow_rows("fails", "1", "2", "error") == before + 1
    assert any(e["event"] == "shadow_failed" and e["log_level"] == "warning" for e in logs)


async def test_mirror_returns_before_the_shadow_answers(
    tmp_path: Path, model_files: dict[str, Path], make_registry: Any, gate: threading.Event
) -> None:
    """mirror() only schedules work: the shadow is still computing when it returns."""
    registry = await make_registry(
        shadow_settings(tmp_path, "waits", model_files["live"], model_files["gated"])
    )
    runner = ShadowRunner(registry)
    gate.clear()
    live = registry.route("waits", None, None)
    runner.mirror(live, batch(iv.SETOSA_ROW), labels("setosa"))
    await asyncio.sleep(0.05)
    assert runner.pending("waits") == 1
    gate.set()
    await settle(runner, "waits")
    assert runner.pending("waits") == 0


async def test_mirror_drops_and_counts_beyond_max_pending(
    tmp_path: Path, model_files: dict[str, Path], make_registry: Any, gate: threading.Event
) -> None:
    """With shadow_max_pending requests in progress, further copies are dropped and counted."""
    registry = await make_registry(
        shadow_settings(
            tmp_path, "bounded", model_files["live"], model_files["gated"], shadow_max_pending=2
        )
    )
    runner = ShadowRunner(registry)
    gate.clear()
    live = registry.route("bounded", None, None)
    before = shadow_rows("bounded", "1", "2", "dropped")
    for _ in range(5):
        runner.mirror(live, batch(iv.SETOSA_ROW, iv.SETOSA_ROW), labels("setosa", "setosa"))
    assert runner.pending("bounded") == 2
    assert shadow_rows("bounded", "1", "2", "dropped") == before + 6
    gate.set()
    await settle(runner, "bounded")


async def test_close_cancels_pending_shadow_work(
    tmp_path: Path, model_files: dict[str, Path], make_registry: Any, gate: threading.Event
) -> None:
    """At shutdown pending shadow requests are cancelled instead of delaying the drain."""
    registry = await make_registry(
        shadow_settings(tmp_path, "closing", model_files["live"], model_files["gated"])
    )
    runner = ShadowRunner(registry)
    gate.clear()
    runner.mirror(registry.route("closing", None, None), batch(iv.SETOSA_ROW), labels("setosa"))
    await runner.close()
    assert runner.pending("closing") == 0


async def test_mirror_skips_requests_answered_by_the_shadow_version(
    tmp_path: Path, model_files: dict[str, Path], make_registry: Any
) -> None:
    """A request that named the shadow version itself is not compared with itself."""
    registry = await make_registry(
        shadow_settings(tmp_path, "itself", model_files["live"], model_files["same"])
    )
    runner = ShadowRunner(registry)
    runner.mirror(registry.route("itself", "2", None), batch(iv.SETOSA_ROW), labels("setosa"))
    assert runner.pending("itself") == 0


@pytest.fixture
def app_settings(tmp_path: Path, model_files: dict[str, Path]) -> Callable[[str, str], Settings]:
    """Settings serving iris 1 with the named shadow artifact as version 2."""

    def make(model: str, shadow: str) -> Settings:
        return shadow_settings(tmp_path, model, model_files["live"], model_files[shadow])

    return make


async def test_predict_with_a_failing_shadow_returns_the_live_answer(
    app_client: Any, app_settings: Callable[[str, str], Settings]
) -> None:
    """The client gets the live version's answer when the shadow raises."""
    client_factory = app_client(app_settings("apifail", "failing"))
    async with client_factory as client:
        response = await client.post(
            "/predict?model=apifail", json={"features": [666.0, 1.0, 1.0, 1.0]}
        )
        await settle(client_factory.app.state.core.shadow, "apifail")
    assert response.status_code == 200
    assert response.json()["model_version"] == "1"
    assert shadow_rows("apifail", "1", "2", "error") >= 1


async def test_predict_answers_while_a_slow_shadow_is_still_computing(
    app_client: Any, app_settings: Callable[[str, str], Settings], gate: threading.Event
) -> None:
    """The live response is sent while the shadow copy is still waiting for its model."""
    client_factory = app_client(app_settings("apislow", "gated"))
    async with client_factory as client:
        gate.clear()
        response = await client.post("/predict?model=apislow", json={"features": VIRGINICA_ROW})
        runner = client_factory.app.state.core.shadow
        still_pending = runner.pending("apislow")
        gate.set()
        await settle(runner, "apislow")
    assert response.status_code == 200
    assert (response.json()["prediction"], response.json()["model_version"]) == ("virginica", "1")
    assert still_pending == 1


async def test_predict_never_shows_the_shadow_answer(
    app_client: Any, app_settings: Callable[[str, str], Settings]
) -> None:
    """A disagreeing shadow is counted, but the response carries only the live answer."""
    client_factory = app_client(app_settings("apidiffer", "shifted"))
    before = shadow_rows("apidiffer", "1", "2", "disagree")
    async with client_factory as client:
        response: httpx.Response = await client.post(
            "/predict?model=apidiffer", json={"features": iv.SETOSA_ROW}
        )
        await settle(client_factory.app.state.core.shadow, "apidiffer")
    body = response.json()
    assert (body["prediction"], body["model_version"]) == ("setosa", "1")
    assert response.headers["x-model-version"] == "1"
    assert shadow_rows("apidiffer", "1", "2", "disagree") == before + 1
