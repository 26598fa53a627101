"""The quick start works against a real process."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import RunningServer

pytestmark = pytest.mark.e2e


def test_serve_demo_predicts_setosa(
    serve_modelserve: Callable[..., RunningServer], demo_models_dir: Path
) -> None:
    """The README's curl gets a setosa prediction from the default demo model."""
    server = serve_modelserve(demo_models_dir / "modelserve.yaml")
    response = httpx.post(server.base_url + "/predict", json={"features": [5.1, 3.5, 1.4, 0.2]})
    assert response.status_code == 200
    body = response.json()
    assert body["prediction"] == "setosa"
    assert body["model"] == "iris"
    assert server.stop() == 0


def test_serve_model_file_with_zero_configuration(
    serve_modelserve: Callable[..., RunningServer], demo_models_dir: Path, tmp_path: Path
) -> None:
    """`modelserve serve path/to/model.joblib` serves that file with no config, named after it.

    The file name has characters a model name may not hold; they become underscores.
    """
    model = tmp_path / "flowers v2+final.joblib"
    shutil.copy(demo_models_dir / "iris.joblib", model)
    server = serve_modelserve(model)
    response = httpx.post(server.base_url + "/predict", json={"features": [5.1, 3.5, 1.4, 0.2]})
    body = response.json()
    assert (response.status_code, body["model"], body["model_version"]) == (
        200,
        "flowers_v2_final",
        "1",
    )
    assert body["prediction"] == "0"  # without configured labels, the model's own classes
    (listed,) = httpx.get(server.base_url + "/models").json()["models"]
    assert (listed["format"], listed["n_features"], listed["status"]) == ("sklearn", 4, "ready")
