"""A real server with require_sha256: unpinned pickle/TorchScript refuse to load, saying why."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelserve.inference.artifact import file_sha256
from tests.e2e.conftest import RunningServer, write_config

pytestmark = pytest.mark.e2e

SETOSA = [5.1, 3.5, 1.4, 0.2]
# model name → (file, pinned, status once loading has finished)
MODELS = {
    "joblib-unpinned": ("iris.joblib", False, "failed"),
    "torch-unpinned": ("iris.pt", False, "failed"),
    "joblib-pinned": ("iris.joblib", True, "ready"),
    "onnx-unpinned": ("iris.onnx", False, "ready"),
}


@pytest.fixture(scope="module")
def server(
    serve_modelserve_module: Callable[..., RunningServer],
    demo_models_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> RunningServer:
    """One server with require_sha256 on, serving each format pinned and unpinned."""
    models: list[dict[str, Any]] = []
    for name, (filename, pinned, _) in MODELS.items():
        path = demo_models_dir / filename
        entry: dict[str, Any] = {"name": name, "path": str(path), "required": False}
        if pinned:
            entry["sha256"] = file_sha256(path)
        if filename.endswith(".pt"):
            entry |= {"n_features": 4, "torch_output": "logits"}
        models.append(entry)
    config = {
        "require_sha256": True,
        "models": models,
        "default_model": "joblib-pinned",
        "cache": {"backend": "none"},
    }
    running = serve_modelserve_module(write_config(tmp_path_factory.mktemp("trust"), config))
    deadline = time.monotonic() + 60
    while any(v["status"] == "loading" for v in _versions(running)):
        assert time.monotonic() < deadline, "models still loading after 60 s"
        time.sleep(0.05)
    return running


def _versions(server: RunningServer) -> list[dict[str, Any]]:
    models: list[dict[str, Any]] = httpx.get(server.base_url + "/models", timeout=5).json()[
        "models"
    ]
    return models


@pytest.mark.parametrize("name", list(MODELS))
def test_require_sha256_loads_only_pinned_or_code_free_files(
    server: RunningServer, name: str
) -> None:
    """Unpinned joblib and TorchScript fail to load; pinned joblib and unpinned ONNX serve."""
    (entry,) = [v for v in _versions(server) if v["name"] == name]
    assert entry["status"] == MODELS[name][2]
    response = httpx.post(
        server.base_url + "/predict", params={"model": name}, json={"features": SETOSA}
    )
    assert response.status_code == (200 if entry["status"] == "ready" else 503)


@pytest.mark.parametrize("name", ["joblib-unpinned", "torch-unpinned"])
def test_require_sha256_refusal_says_why_in_the_log(server: RunningServer, name: str) -> None:
    """The load failure is logged once, naming require_sha256 and how to pin the file."""
    lines = [
        line
        for line in server.log_lines()
        if line["event"] == "model_load_failed" and line["model"] == name
    ]
    assert len(lines) == 1
    assert "require_sha256 is on" in str(lines[0]["reason"])
    assert "sha256sum iris." in str(lines[0]["reason"])
