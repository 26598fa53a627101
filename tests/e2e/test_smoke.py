"""The quick start works against a real process."""

from __future__ import annotations

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
