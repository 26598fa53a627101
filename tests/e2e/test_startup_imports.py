"""A real server imports only what its config needs: every start-up (and every gunicorn
worker) pays for each library it imports, and scikit-learn alone costs seconds."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import IRIS_ONNX, RunningServer

pytestmark = pytest.mark.e2e

IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \| ( *)(\S+)$")


@pytest.fixture(scope="module")
def imported(
    serve_modelserve_module: Callable[..., RunningServer], demo_models_dir: Path
) -> set[str]:
    """The top-level packages a server of one ONNX model (memory cache, no rate limits)
    imported by the time it answered a prediction, from the interpreter's own import log."""
    server = serve_modelserve_module(
        demo_models_dir / IRIS_ONNX, env={"PYTHONPROFILEIMPORTTIME": "1"}
    )
    response = httpx.post(
        server.base_url + "/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}, timeout=10
    )
    assert response.status_code == 200, response.text
    lines = server.log_path.read_text(errors="replace").splitlines()
    modules = [match.group(2) for line in lines if (match := IMPORT_LINE.match(line))]
    assert "onnxruntime" in modules  # the log is the import log
    return {module.split(".")[0] for module in modules}


def test_server_without_redis_never_imports_redis_py(imported: set[str]) -> None:
    """With no Redis in its config, the server never imports redis-py."""
    assert "redis" not in imported


def test_onnx_server_never_imports_scikit_learn(imported: set[str]) -> None:
    """A server of ONNX models never imports scikit-learn, SciPy or pandas."""
    assert not {"sklearn", "scipy", "pandas"} & imported
