"""The live dashboard in real headless Chromium, after real traffic to a real server."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from sklearn.datasets import load_iris

from tests.conftest import REPO_ROOT
from tests.e2e.conftest import RunningServer

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ARTIFACTS = REPO_ROOT / "test-artifacts"
IRIS = np.asarray(load_iris().data, dtype=np.float64)


class _CardText(HTMLParser):
    """Text of each element carrying ``data-model``, pieces joined by ``|``."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: dict[str, list[str]] = {}
        self._open: list[tuple[str, int]] = []
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._depth += 1
        model = dict(attrs).get("data-model")
        if model:
            self._open.append((model, self._depth))
            self.cards[model] = []

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1][1] == self._depth:
            self._open.pop()
        self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._open and data.strip():
            self.cards[self._open[-1][0]].append(data.strip())


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is not installed; run the suite with `make test` (make services)")
    return binary


def _browse(chromium: str, profile: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on ``url`` once its scripts had 5 s of (virtual) time."""
    return subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def _two_model_config(demo_models_dir: Path, out: Path) -> Path:
    demo = yaml.safe_load((demo_models_dir / "modelserve.yaml").read_text())
    models = [m for m in demo["models"] if m["name"] in ("iris", "iris-onnx")]
    for model in models:
        model["path"] = str(demo_models_dir / model["path"])
        model["profile"] = str(demo_models_dir / model["profile"])
    path = out / "dashboard.yaml"
    path.write_text(yaml.safe_dump({"default_model": "iris", "models": models}))
    return path


def _drive_traffic(base_url: str) -> None:
    """120 iris rows one by one, 3 bad requests, and longer petals for iris-onnx."""
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for row in IRIS[np.arange(120) % 150]:
            assert client.post("/predict", json={"features": row.tolist()}).status_code == 200
        for _ in range(3):
            assert client.post("/predict", json={"features": [1.0, 2.0]}).status_code == 400
        shifted = (IRIS + np.array([0.0, 0.0, 2.0, 0.5])).tolist()
        response = client.post(
            "/predict-batch", params={"model": "iris-onnx"}, json={"batch": shifted}
        )
        assert response.status_code == 200


def test_dashboard_shows_live_numbers_in_chromium(
    serve_modelserve: Callable[..., RunningServer],
    demo_models_dir: Path,
    tmp_path: Path,
    chromium: str,
) -> None:
    """After traffic, the rendered page shows each version's totals, class mix and drift."""
    server = serve_modelserve(_two_model_config(demo_models_dir, tmp_path))
    _drive_traffic(server.base_url)

    dom = _browse(chromium, tmp_path / "chrome", server.base_url + "/dashboard", "--dump-dom")

    parser = _CardText()
    parser.feed(dom.stdout)
    iris = "|".join(parser.cards["iris:1"])
    onnx = "|".join(parser.cards["iris-onnx:1"])
    assert "iris · v1|ready" in iris
    assert "Total|120" in iris
    assert "setosa" in iris
    assert "none over the threshold" in iris
    assert "iris-onnx · v1|drifting" in onnx
    assert "drifting: petal_length, petal_width" in onnx
    assert 'data-kpi="client_error_rate"' in dom.stdout
    assert "2.4%" in dom.stdout  # 3 bad requests among 124
    assert server.stop() == 0


def test_dashboard_screenshot_is_saved(
    serve_modelserve: Callable[..., RunningServer],
    demo_models_dir: Path,
    tmp_path: Path,
    chromium: str,
) -> None:
    """A 1280x900 screenshot of the live page is saved under test-artifacts/."""
    server = serve_modelserve(_two_model_config(demo_models_dir, tmp_path))
    _drive_traffic(server.base_url)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)

    _browse(
        chromium,
        tmp_path / "chrome",
        server.base_url + "/dashboard",
        f"--screenshot={shot}",
        "--window-size=1280,900",
    )

    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 30_000  # a rendered page, not a blank one
    assert server.stop() == 0
