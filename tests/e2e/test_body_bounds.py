"""A real server bounds a batch body before parsing it: bytes, rows and values."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from modelserve.demo import FEATURES
from modelserve.settings import load_settings
from tests.e2e.conftest import IRIS_ONNX, RunningServer, write_config

pytestmark = pytest.mark.e2e

SETOSA = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture(scope="module")
def config(demo_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = {
        "name": "iris",
        "path": str(demo_models_dir / IRIS_ONNX),
        "feature_names": FEATURES,
    }
    return write_config(
        tmp_path_factory.mktemp("bounds"), {"models": [model], "cache": {"backend": "none"}}
    )


@pytest.fixture(scope="module")
def server(serve_modelserve_module: Callable[..., RunningServer], config: Path) -> RunningServer:
    return serve_modelserve_module(config)


def _post(server: RunningServer, body: bytes) -> httpx.Response:
    return httpx.post(
        server.base_url + "/predict-batch",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )


def test_default_body_limit_derives_from_rows_and_width(
    server: RunningServer, config: Path
) -> None:
    """Unset, the limit is 1000 named 4-feature rows with headroom: far below the old 8 MiB."""
    limit = load_settings(config).body_limit_bytes()
    assert limit < 512 * 1024
    full = b'{"batch": [' + b",".join([b"[5.1, 3.5, 1.4, 0.2]"] * 1000) + b"]}"
    assert len(full) < limit
    assert _post(server, full).status_code == 200
    over = _post(server, b'{"batch": [[' + b" " * limit + b"1]]}")
    assert (over.status_code, over.json()["code"]) == (413, "body_too_large")


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"batch": [' + b"[1]," * 20_000 + b"[1]]}", "at most 1000 rows, got more"),
        (b'{"batch": [[' + b"1," * 20_000 + b"1]]}", "at most 1000 rows of 4 features"),
    ],
    ids=["many-rows", "many-values"],
)
def test_oversized_batch_is_refused_before_it_is_parsed(
    server: RunningServer, body: bytes, detail: str
) -> None:
    """Too many rows or values within the byte limit: 413 from a count, not from a parse."""
    response = _post(server, body)
    assert (response.status_code, response.json()["code"]) == (413, "batch_too_large")
    assert detail in response.json()["detail"]
