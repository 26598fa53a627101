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


# Elements the HTML parser opens without ever closing.
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta"})


class _ElementText(HTMLParser):
    """Text pieces inside each element that carries ``attribute`` (nested text included),
    keyed by that attribute's value."""

    def __init__(self, attribute: str) -> None:
        super().__init__()
        self.attribute = attribute
        self.texts: dict[str, list[str]] = {}
        self._open: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            return
        key = dict(attrs).get(self.attribute)
        self._open.append((tag, key))
        if key:
            self.texts[key] = []

    def handle_endtag(self, tag: str) -> None:
        while self._open and self._open.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        if data.strip():
            for _, key in self._open:
                if key:
                    self.texts[key].append(data.strip())


def _texts(dom: str, attribute: str) -> dict[str, list[str]]:
    parser = _ElementText(attribute)
    parser.feed(dom)
    return parser.texts


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

    cards = _texts(dom.stdout, "data-model")
    iris = "|".join(cards["iris:1"])
    onnx = "|".join(cards["iris-onnx:1"])
    assert "iris · v1|ready" in iris
    assert "Total|120" in iris
    assert "setosa" in iris
    assert "none over the threshold" in iris
    assert "iris-onnx · v1|drifting" in onnx
    assert "drifting: petal_length, petal_width" in onnx
    assert 'data-kpi="client_error_rate"' in dom.stdout
    assert "2.4%" in dom.stdout  # 3 bad requests among 124
    assert server.stop() == 0


def test_dashboard_header_and_traffic_tiles_render_in_chromium(
    serve_modelserve: Callable[..., RunningServer],
    demo_models_dir: Path,
    tmp_path: Path,
    chromium: str,
) -> None:
    """At 1280x900 the page says ready, one worker, and every traffic tile holds a figure;
    a screenshot of it is kept under test-artifacts/ for people to look at."""
    server = serve_modelserve(_two_model_config(demo_models_dir, tmp_path))
    _drive_traffic(server.base_url)
    url = server.base_url + "/dashboard"

    dom = _browse(chromium, tmp_path / "chrome", url, "--dump-dom", "--window-size=1280,900")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    _browse(chromium, tmp_path / "chrome", url, f"--screenshot={shot}", "--window-size=1280,900")

    header = _texts(dom.stdout, "id")
    assert header["ready-pill"] == ["ready"]
    up, workers, window, _updated = header["meta"][0].split(" · ")
    assert up.startswith("up ")
    assert workers == "1 worker"
    assert window.startswith("window ")
    tiles = _texts(dom.stdout, "data-kpi")
    label, per_s, total = tiles["requests_per_s"]
    assert label == "Requests / s"
    assert float(per_s) > 0
    assert total == "124 total", tiles  # the dashboard's own page and polling are left out
    assert tiles["error_rate"][:2] == ["5xx errors", "0%"]
    assert tiles["client_error_rate"][:2] == ["4xx errors", "2.4%"]  # 3 of 124
    for name in ("p50", "p95", "p99"):
        assert float(tiles[name][1].removesuffix(" ms")) > 0, tiles
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert server.stop() == 0
