"""`modelserve init`: the scaffold passes `modelserve check` and its own test, and serves."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import pythonpath_env
from tests.e2e.conftest import MODELSERVE, RunningServer

pytestmark = pytest.mark.e2e


def run(*command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, env=pythonpath_env(), capture_output=True, text=True, timeout=180,
        check=False,
    )  # fmt: skip


@pytest.fixture
def scaffold(tmp_path: Path) -> Path:
    """The folder `modelserve init churn` wrote."""
    result = run(*MODELSERVE, "init", "churn", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return tmp_path / "churn"


def test_init_scaffold_passes_modelserve_check(scaffold: Path) -> None:
    """The generated config loads and warms up the generated class."""
    result = run(*MODELSERVE, "check", "--config", "modelserve.yaml", cwd=scaffold)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "churn  1        python  3" in result.stdout


def test_init_scaffold_passes_its_own_test(scaffold: Path) -> None:
    """pytest in the generated folder runs the generated test, and it passes."""
    result = run(MODELSERVE[0], "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=scaffold)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_init_scaffold_serves_predictions(
    scaffold: Path, serve_modelserve: Callable[..., RunningServer]
) -> None:
    """Served for real, the scaffold answers its logistic model's class and probabilities."""
    server = serve_modelserve(scaffold / "modelserve.yaml")
    row = {"feature_1": 1.5, "feature_2": -0.5, "feature_3": 0.25}
    response = httpx.post(f"{server.base_url}/predict", json={"features": row}, timeout=30)
    assert response.status_code == 200, response.text
    params = json.loads((scaffold / "artifacts" / "params.json").read_text())
    scaled = (np.array(list(row.values())) - params["mean"]) / params["scale"]
    positive = 1 / (1 + np.exp(-(scaled @ np.array(params["weights"]))))
    body = response.json()
    assert body["prediction"] == ("positive" if positive > 0.5 else "negative")
    assert body["probabilities"]["positive"] == pytest.approx(positive)
