"""Drift of typed features on a real server: a profile `modelserve profile` made from a CSV,
category-frequency PSI beside numeric PSI in /metrics, /stats and the dashboard."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import orjson
import pytest

from modelserve.inference.artifact import file_sha256
from tests import prometheus, tabular
from tests.conftest import pythonpath_env
from tests.e2e.conftest import MODELSERVE, RunningServer, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MIN_ROWS = 40
SHIFTED_ROWS = 60


@dataclass(frozen=True)
class Profiled:
    server: RunningServer
    profile: dict[str, Any]
    printed: str


def _training_csv(path: Path) -> None:
    tabular.customers(200, seed=1)[["city", "age", "income"]].to_csv(path, index=False)


@pytest.fixture(scope="module")
def profiled(
    serve_modelserve_module: Callable[..., RunningServer], tmp_path_factory: pytest.TempPathFactory
) -> Profiled:
    """`modelserve profile` of the cities pipeline on its CSV, then a server using the profile
    that has seen only Oslo and an unknown city (the encoder ignores it) since."""
    out = tmp_path_factory.mktemp("typed-drift")
    model = out / "cities.joblib"
    joblib.dump(tabular.city_pipeline("ignore"), model)
    data, profile = out / "train.csv", out / "cities.profile.json"
    _training_csv(data)
    entry: dict[str, Any] = {"name": "cities", "path": str(model), "sha256": file_sha256(model)}
    config = write_config(out, {"models": [entry]})
    command = [*MODELSERVE, "profile", "--data", str(data), "--model", "cities"]
    printed = subprocess.run(
        [*command, "--config", str(config), "--out", str(profile)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=pythonpath_env(),
    ).stdout
    entry["profile"] = str(profile)
    settings = {"drift": {"min_rows": MIN_ROWS, "window": 100, "interval_s": 1}}
    server = serve_modelserve_module(write_config(out, {**settings, "models": [entry]}))
    rng = np.random.default_rng(3)
    batch = [
        {"city": "Oslo" if i % 3 else "Paris", "age": float(rng.integers(18, 80)), "income": 50.0}
        for i in range(SHIFTED_ROWS)
    ]
    response = httpx.post(
        server.base_url + "/predict-batch", params={"model": "cities"}, json={"batch": batch}
    )
    assert response.status_code == 200, response.text
    return Profiled(server, orjson.loads(profile.read_bytes()), printed)


def test_profile_of_a_typed_model_has_category_shares_and_nulls(profiled: Profiled) -> None:
    """city gets the share of each city (and of other values and nulls); age its numeric bins
    and its share of nulls, as in the training CSV."""
    frame = tabular.customers(200, seed=1)
    city, age, _income = profiled.profile["features"]
    assert city["kind"] == "categorical"
    shares = dict(zip(city["categories"], city["proportions"], strict=False))
    assert shares == {c: n / 200 for c, n in frame["city"].value_counts().items()}
    assert city["proportions"][-2:] == [0.0, 0.0]  # other, missing
    assert age["missing_share"] == pytest.approx(frame["age"].isna().mean())
    assert age["mean"] == pytest.approx(frame["age"].mean())
    assert sum(age["proportions"]) == pytest.approx(1.0)


def test_profile_prints_the_schema_and_each_feature(profiled: Profiled) -> None:
    """The command shows the typed schema, then per feature its shares or statistics."""
    printed = profiled.printed
    assert "typed features of cities:1:" in printed
    assert "city: category (Bergen, Oslo, Trondheim; unknown ignored)" in printed
    assert "age: float, nullable" in printed
    assert "city: categorical, Trondheim 37.5%, Oslo 32.0%, Bergen 30.5%, (other) 0.0%" in printed
    assert "age: numeric, mean 49.3" in printed


def _cities(server: RunningServer) -> dict[str, Any]:
    stats = httpx.get(server.base_url + "/stats", timeout=10).json()
    found: dict[str, Any] = next(m for m in stats["models"] if m["model"] == "cities")
    return found


def test_category_shift_is_a_psi_in_stats(profiled: Profiled) -> None:
    """Only Oslo and an unknown city since: city's PSI is far over the threshold, its live
    shares say so (the unknown city in "other"), and age is a numeric feature beside it."""
    drift = _cities(profiled.server)["drift"]
    assert drift["window_rows"] == SHIFTED_ROWS
    assert drift["psi"]["city"] > drift["psi_threshold"]
    city, age, income = drift["features"]
    assert (city["name"], city["type"], city["kind"]) == ("city", "category", "categorical")
    assert city["psi"] == drift["psi"]["city"]
    assert city["live_shares"] == {
        "Trondheim": 0.0,
        "Oslo": 0.666667,
        "Bergen": 0.0,
        "(other)": 0.333333,
        "(missing)": 0.0,
    }
    assert city["reference_shares"]["Trondheim"] == 0.375
    assert (age["type"], age["kind"]) == ("float", "numeric")
    assert age["reference_missing_share"] == pytest.approx(0.145)
    assert "live_shares" not in age
    assert income["psi"] > drift["psi_threshold"]  # every row had income 50


def test_category_psi_is_a_metric(profiled: Profiled) -> None:
    """modelserve_drift_feature_psi carries city's PSI as it does a numeric feature's."""
    text = httpx.get(profiled.server.base_url + "/metrics", timeout=10).text
    samples = prometheus.parse(text)
    labels = {"model": "cities", "model_version": "1"}
    city = prometheus.value(samples, "modelserve_drift_feature_psi", **labels, feature="city")
    age = prometheus.value(samples, "modelserve_drift_feature_psi", **labels, feature="age")
    assert city > 0.2
    assert age >= 0


@pytest.mark.browser
def test_dashboard_shows_typed_features_and_category_shares(
    profiled: Profiled, tmp_path: Path
) -> None:
    """In headless Chromium the card lists each feature's type and PSI, and city's live share
    of each city against the reference."""
    chromium = shutil.which("chromium")
    assert chromium is not None, "chromium is not installed (make services)"
    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            f"--user-data-dir={tmp_path / 'chrome'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            profiled.server.base_url + "/dashboard",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    psi = _cities(profiled.server)["drift"]["psi"]
    features = _feature_texts(dom)
    head = features["city"][0]
    assert head.startswith("city · category · PSI ")
    assert float(head.rsplit(" ", 1)[1]) == pytest.approx(psi["city"], abs=1e-3)
    assert features["city"][1:] == [
        "Trondheim",
        "0%",
        "Oslo",
        "66.7%",
        "Bergen",
        "0%",
        "(other)",
        "33.3%",
        "(missing)",
        "0%",
    ]
    assert features["age"][0].startswith("age · float · PSI ")
    assert features["income"][0].startswith("income · float · PSI ")


def _feature_texts(dom: str) -> dict[str, list[str]]:
    from tests.e2e.test_dashboard_browser import _texts

    return _texts(dom, "data-feature")
