"""A ``format: python`` model class in a real server: its preprocessing, answers on every
transport, warm-up, metrics, drift, a failing class, and a hot reload after its source is
edited."""

from __future__ import annotations

import json
import math
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from modelserve.inference.artifact import directory_sha256, file_sha256
from modelserve.observability.profile import build_profile
from tests import prometheus
from tests.e2e.conftest import RunningServer, write_config

pytestmark = pytest.mark.e2e

OPS_KEY = "e2e-python-models-ops-5c1e9a7b3d"
AUTH = {"Authorization": f"Bearer {OPS_KEY}"}
WEIGHTS = [0.8, -0.5]
ROWS = [[1.0, 2.0], [3.0, 0.5], [-1.0, 4.0], [2.5, 2.5], [0.0, -3.0], [4.0, 1.0]]
SCORER = '''
import json
from pathlib import Path

import numpy as np

OFFSET = 0.0


class Scorer:
    """Logistic score of the shifted row against weights read from the artifacts."""

    classes = ["stays", "churns"]
    feature_names = ["tenure", "calls"]

    def load(self, artifacts_dir):
        self.weights = np.array(json.loads((Path(artifacts_dir) / "weights.json").read_text()))

    def preprocess(self, batch):
        return batch - OFFSET

    def predict_proba(self, batch):
        p = 1 / (1 + np.exp(-(batch @ self.weights)))
        return np.column_stack([1 - p, p])
'''
EXPLODING = """
class Exploding:
    def predict(self, batch):
        if (batch[:, 0] > 100).any():
            raise ValueError("secret detail from /srv/private/features.db")
        return batch[:, 0] * 2
"""


def expected(rows: list[list[float]], offset: float) -> np.ndarray:
    """What Scorer answers: the churn probability of each row."""
    p = 1 / (1 + np.exp(-((np.array(rows) - offset) @ np.array(WEIGHTS))))
    return np.column_stack([1 - p, p])


@dataclass
class Project:
    folder: Path
    server: RunningServer

    def predict(self, row: list[float]) -> dict[str, Any]:
        response = httpx.post(
            f"{self.server.base_url}/predict?model=scorer",
            json={"features": dict(zip(["tenure", "calls"], row, strict=True))},
            headers=AUTH,
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    def predict_batch(self, rows: list[list[float]]) -> dict[str, Any]:
        response = httpx.post(
            f"{self.server.base_url}/predict-batch?model=scorer&probabilities=true",
            json={"batch": rows},
            headers=AUTH,
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    def reload(self) -> httpx.Response:
        return httpx.post(
            f"{self.server.base_url}/admin/models/scorer/versions/1/reload",
            headers=AUTH,
            json={},
            timeout=60,
        )

    def v2_infer(self, rows: list[list[float]]) -> dict[str, list[Any]]:
        tensor = {
            "name": "input",
            "shape": [len(rows), 2],
            "datatype": "FP64",
            "data": [v for row in rows for v in row],
        }
        response = httpx.post(
            f"{self.server.base_url}/v2/models/scorer/infer",
            json={"inputs": [tensor]},
            headers=AUTH,
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return {o["name"]: o["data"] for o in response.json()["outputs"]}


def write_project(folder: Path) -> Path:
    """The scorer and the exploding class beside their config, with a drift profile."""
    folder.mkdir()
    (folder / "scoring.py").write_text(textwrap.dedent(SCORER))
    (folder / "exploding.py").write_text(textwrap.dedent(EXPLODING))
    (folder / "artifacts").mkdir()
    (folder / "artifacts" / "weights.json").write_text(json.dumps(WEIGHTS))
    probabilities = expected(ROWS, 0.0)
    profile = build_profile(
        np.array(ROWS),
        ["tenure", "calls"],
        [["stays", "churns"][i] for i in probabilities.argmax(axis=1)],
        probabilities.max(axis=1).tolist(),
    )
    (folder / "scorer.profile.json").write_bytes(profile.to_json())
    return write_config(
        folder,
        {
            "server": {"access_log": False},
            "cache": {"backend": "none"},
            "drift": {"min_rows": 3, "interval_s": 1},
            "auth": {
                "enabled": True,
                "keys": [{"name": "ops", "key": OPS_KEY, "scopes": ["predict", "admin"]}],
            },
            "models": [
                {
                    "name": "scorer",
                    "format": "python",
                    "path": "scoring:Scorer",
                    "artifacts": "artifacts",
                    "profile": "scorer.profile.json",
                    "batching": {"max_batch_size": 4, "max_request_rows_per_call": 4},
                },
                {"name": "exploding", "format": "python", "path": "exploding:Exploding",
                 "n_features": 2},
            ],
        },
    )  # fmt: skip


@pytest.fixture
def project(tmp_path: Path, serve_modelserve: Callable[..., RunningServer]) -> Project:
    """A project and its server of the test's own: the test may edit the files and reload."""
    config = write_project(tmp_path / "project")
    return Project(tmp_path / "project", serve_modelserve(config))


@pytest.fixture(scope="module")
def shared_project(
    tmp_path_factory: pytest.TempPathFactory,
    serve_modelserve_module: Callable[..., RunningServer],
) -> Project:
    """One project server for the tests that never edit its files (they compare metric
    deltas)."""
    folder = tmp_path_factory.mktemp("shared") / "project"
    return Project(folder, serve_modelserve_module(write_project(folder)))


def test_python_model_answers_through_every_transport(shared_project: Project) -> None:
    """/predict, /predict-batch and V2 infer answer what the class computes after its
    preprocessing, with its own class names."""
    want = expected(ROWS, 0.0)
    labels = [["stays", "churns"][i] for i in want.argmax(axis=1)]
    single = shared_project.predict(ROWS[0])
    assert single["prediction"] == labels[0]
    assert single["probabilities"] == pytest.approx({"stays": want[0, 0], "churns": want[0, 1]})
    batch = shared_project.predict_batch(ROWS)
    assert batch["predictions"] == labels
    churns = [p["churns"] for p in batch["probabilities"]]
    assert churns == pytest.approx(want[:, 1].tolist())
    v2 = shared_project.v2_infer(ROWS)
    assert v2["label"] == labels
    assert v2["probabilities"] == pytest.approx(want.ravel().tolist())


def test_python_model_hot_reload_serves_the_edited_source(project: Project) -> None:
    """Editing the module and reloading the version serves the new code on every transport."""
    assert project.predict(ROWS[0])["probabilities"]["churns"] == pytest.approx(
        expected(ROWS[:1], 0.0)[0, 1]
    )
    module = project.folder / "scoring.py"
    module.write_text(module.read_text().replace("OFFSET = 0.0", "OFFSET = 2.0"))
    response = project.reload()
    assert response.status_code == 200, response.text
    assert response.json()["changed"] is True
    want = expected(ROWS, 2.0)
    assert project.predict(ROWS[0])["probabilities"]["churns"] == pytest.approx(want[0, 1])
    churns = [p["churns"] for p in project.predict_batch(ROWS)["probabilities"]]
    assert churns == pytest.approx(want[:, 1].tolist())
    assert project.v2_infer(ROWS)["probabilities"] == pytest.approx(want.ravel().tolist())


def test_python_model_broken_reload_keeps_the_old_code_serving(project: Project) -> None:
    """A syntax error written into the module fails the reload (409 with the reason) and the
    version keeps answering with the code it had."""
    module = project.folder / "scoring.py"
    module.write_text(module.read_text() + "\ndef broken(:\n")
    response = project.reload()
    assert response.status_code == 409, response.text
    assert "SyntaxError" in response.json()["detail"]
    assert project.predict(ROWS[1])["probabilities"]["churns"] == pytest.approx(
        expected(ROWS[1:2], 0.0)[0, 1]
    )


def test_python_model_that_raises_answers_prediction_failed(shared_project: Project) -> None:
    """A class raising in predict gets the documented 500 with no detail; others still serve."""
    response = httpx.post(
        f"{shared_project.server.base_url}/predict?model=exploding",
        json={"features": [500.0, 1.0]},
        headers=AUTH,
        timeout=30,
    )
    assert response.status_code == 500
    body = response.json()
    assert body["code"] == "prediction_failed"
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    fine = httpx.post(
        f"{shared_project.server.base_url}/predict?model=exploding",
        json={"features": [5.0, 1.0]},
        headers=AUTH,
        timeout=30,
    )
    assert fine.json()["prediction"] == 10.0


def scrape(server: RunningServer) -> prometheus.Samples:
    response = httpx.get(server.base_url + "/metrics", headers=AUTH, timeout=10)
    assert response.status_code == 200
    return prometheus.parse(response.text)


def test_python_model_is_warmed_up_metered_and_drift_monitored(shared_project: Project) -> None:
    """Warm-up before ready, batch metrics of a request split into calls of at most 4 rows
    (max_request_rows_per_call), and drift gauges against its profile: as for every format."""
    labels = {"model": "scorer", "model_version": "1"}
    before = scrape(shared_project.server)
    assert prometheus.value(before, "modelserve_model_warmup_seconds", **labels) > 0
    assert prometheus.value(before, "modelserve_model_info", **labels, format="python",
                            status="ready") == 1.0  # fmt: skip
    shared_project.predict_batch(ROWS)
    after = scrape(shared_project.server)
    assert prometheus.moved(before, after, "modelserve_rows_predicted_total", **labels) == len(ROWS)
    assert prometheus.moved(before, after, "modelserve_batch_rows_count", **labels) == 2
    deadline = time.monotonic() + 30
    while True:  # the drift gauges are refreshed on the monitor's tick
        samples = scrape(shared_project.server)
        window = samples.get(("modelserve_drift_window_rows", frozenset(labels.items())), 0)
        if window >= len(ROWS) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert window >= len(ROWS)
    psi = prometheus.value(samples, "modelserve_drift_feature_psi", **labels, feature="tenure")
    assert math.isfinite(psi)
    assert psi >= 0


def test_python_model_pins_are_enforced_by_a_real_server(
    tmp_path: Path, serve_modelserve: Callable[..., RunningServer]
) -> None:
    """With require_sha256, a class whose source and artifacts are pinned serves; one with a
    wrong source pin, or no artifacts pin, does not load and /models says why."""
    folder = tmp_path / "project"
    write_project(folder)
    source = file_sha256(folder / "scoring.py")
    artifacts = directory_sha256(folder / "artifacts")
    base = {"format": "python", "path": "scoring:Scorer", "artifacts": "artifacts"}
    config = write_config(
        folder,
        {
            "require_sha256": True,
            "models": [
                {"name": "pinned", **base, "sha256": source, "artifacts_sha256": artifacts},
                {"name": "wrong-pin", **base, "required": False, "sha256": "0" * 64,
                 "artifacts_sha256": artifacts},
                {"name": "artifacts-unpinned", **base, "required": False, "sha256": source},
            ],
        },
        name="pinned.yaml",
    )  # fmt: skip
    server = serve_modelserve(config)
    models = httpx.get(f"{server.base_url}/models", timeout=10).json()["models"]
    by_name = {m["name"]: m for m in models}
    assert by_name["pinned"]["status"] == "ready"
    assert by_name["wrong-pin"]["status"] == "failed"
    assert "configuration pins" in by_name["wrong-pin"]["reason"]
    assert by_name["artifacts-unpinned"]["status"] == "failed"
    assert "artifacts_sha256" in by_name["artifacts-unpinned"]["reason"]
    answer = httpx.post(
        f"{server.base_url}/predict?model=pinned", json={"features": ROWS[0]}, timeout=30
    )
    assert answer.status_code == 200, answer.text


CITY_MODEL = """
class CityModel:
    def predict(self, frame):
        return [len(city) + age for city, age in zip(frame["city"], frame["age"], strict=True)]
"""


def test_python_model_with_typed_features_gets_a_dataframe(
    tmp_path: Path, serve_modelserve: Callable[..., RunningServer]
) -> None:
    """With `features:` configured, the class receives one DataFrame of the typed columns."""
    folder = tmp_path / "typed"
    folder.mkdir()
    (folder / "city_model.py").write_text(textwrap.dedent(CITY_MODEL))
    features = [{"name": "city", "type": "string"}, {"name": "age", "type": "int"}]
    config = write_config(
        folder,
        {"models": [{"name": "city", "format": "python", "path": "city_model:CityModel",
                     "features": features}]},
    )  # fmt: skip
    server = serve_modelserve(config)
    response = httpx.post(
        f"{server.base_url}/predict",
        json={"features": {"city": "Oslo", "age": 41}},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["prediction"] == 45.0
