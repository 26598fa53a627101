"""What a new user meets first, against real processes: zero-config flags and --strict output."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import RunningServer, write_config

pytestmark = pytest.mark.e2e

SETOSA = [5.1, 3.5, 1.4, 0.2]
LABELS = "setosa,versicolor,virginica"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def test_zero_config_torchscript_with_width_and_labels(
    serve_modelserve: Callable[..., RunningServer], demo_models_dir: Path
) -> None:
    """`serve iris.pt --n-features 4 --labels ...` serves the TorchScript file with its labels."""
    server = serve_modelserve(demo_models_dir / "iris.pt", "--n-features", "4", "--labels", LABELS)
    response = httpx.post(server.base_url + "/predict", json={"features": SETOSA})
    assert (response.status_code, response.json()["prediction"]) == (200, "setosa")


def test_zero_config_feature_names_accept_named_rows(
    serve_modelserve: Callable[..., RunningServer], demo_models_dir: Path
) -> None:
    """`--feature-names` lets a zero-config model take `{"features": {name: value}}`."""
    server = serve_modelserve(
        demo_models_dir / "iris.joblib", "--feature-names", ",".join(FEATURES), "--labels", LABELS
    )
    named = dict(zip(FEATURES, SETOSA, strict=True))
    response = httpx.post(server.base_url + "/predict", json={"features": named})
    assert (response.status_code, response.json()["prediction"]) == (200, "setosa")


def test_strict_failure_is_one_line_per_model_without_traceback(
    serve_modelserve: Callable[..., RunningServer],
    demo_models_dir: Path,
    fake_models_dir: Path,
    tmp_path: Path,
) -> None:
    """--strict with two broken versions: each reason once, then one summary, no traceback."""
    models = [
        {"name": "corrupt", "path": str(fake_models_dir / "corrupt.joblib")},
        {"name": "absent", "path": str(tmp_path / "absent.joblib")},
        {"name": "iris", "path": str(demo_models_dir / "iris.joblib")},
    ]
    server = serve_modelserve(write_config(tmp_path, {"models": models}), "--strict", wait=None)
    assert server.proc.wait(timeout=60) != 0
    text = server.log_path.read_text()
    assert "Traceback" not in text
    failed = [line for line in server.log_lines() if line.get("event") == "model_load_failed"]
    assert sorted(str(line["model"]) for line in failed) == ["absent", "corrupt"]
    summaries = [line for line in server.log_lines() if "--strict" in str(line)]
    assert len(summaries) == 1, summaries
    assert "2 model version(s) failed to load" in str(summaries[0])


def test_demo_canary_config_answers_labels_from_both_versions(
    serve_modelserve: Callable[..., RunningServer], demo_models_dir: Path
) -> None:
    """The README's canary (demo canary.yaml): 300 sticky callers, named features, real labels."""
    server = serve_modelserve(demo_models_dir / "canary.yaml")
    named = dict(zip(FEATURES, SETOSA, strict=True))
    seen: dict[str, set[str]] = {}
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        for caller in range(300):
            response = client.post(
                "/predict", json={"features": named}, headers={"X-Client-ID": f"caller-{caller}"}
            )
            assert response.status_code == 200, response.text
            body = response.json()
            seen.setdefault(body["model_version"], set()).add(body["prediction"])
    assert set(seen) == {"1", "2"}
    assert set().union(*seen.values()) == {"setosa"}
