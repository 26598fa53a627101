"""The config file reloads itself: edits, a Kubernetes ConfigMap symlink swap, broken edits,
and SIGHUP, against a real ``modelserve serve --workers 2``."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests import iris_versions as iv
from tests.e2e.conftest import RunningServer, wait_for_log_events
from tests.e2e.test_fleet_control import (
    ADMIN_KEY,
    KEY_HEADER,
    default_version,
    models,
    wait_until_every_process_shows,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WORKERS = 2


def config_document(directory: Path, versions: list[str], default: str) -> dict[str, Any]:
    """iris versions from ``directory/v<n>.joblib`` (1: setosa, 2: versicolor), ``default``
    the default, auth on with the admin key, no cache."""
    ops = {"name": "ops", "key": ADMIN_KEY, "scopes": ["predict", "admin"]}
    return {
        "server": {"access_log": False, "watch_interval_s": 0.2},
        "models": [
            iv.version_entry("iris", v, directory / f"v{v}.joblib", default=v == default)
            for v in versions
        ],
        "cache": {"backend": "none"},
        "auth": {"enabled": True, "keys": [ops]},
    }


class ConfigMapVolume:
    """A directory laid out as the kubelet mounts a ConfigMap: ``modelserve.yaml`` is a
    symlink to ``..data/modelserve.yaml``, and an update swaps ``..data`` to a new directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = 0
        root.mkdir(parents=True, exist_ok=True)

    @property
    def path(self) -> Path:
        return self.root / "modelserve.yaml"

    def publish(self, text: str) -> None:
        self.generation += 1
        target = self.root / f"..2026_12_02_{self.generation:02d}"
        target.mkdir()
        (target / "modelserve.yaml").write_text(text)
        staging = self.root / "..data_tmp"
        staging.symlink_to(target.name)
        os.replace(staging, self.root / "..data")  # the atomic swap the kubelet does
        if not self.path.is_symlink():
            self.path.symlink_to("..data/modelserve.yaml")


def predict_default(server: RunningServer) -> str:
    response = httpx.post(
        server.base_url + "/predict",
        json={"features": iv.SETOSA_ROW},
        headers=KEY_HEADER,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["prediction"])


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    directory = tmp_path / "models"
    iv.dump(iv.logistic(), directory / "v1.joblib")
    iv.dump(iv.shifted(), directory / "v2.joblib")
    return directory


def test_configmap_swaps_reconcile_every_worker_and_broken_files_are_rejected(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path, artifacts: Path
) -> None:
    """A ConfigMap swap adding version 2 as the default is applied by both workers; a swap
    to invalid YAML and one naming a missing artifact are rejected with a reason while the
    last good configuration serves; a swap removing version 1 drains it everywhere."""
    volume = ConfigMapVolume(tmp_path / "config")
    document = config_document(artifacts, ["1"], default="1")
    document["server"]["watch_config"] = True
    volume.publish(yaml.safe_dump(document))
    server = serve_modelserve(volume.path, "--workers", str(WORKERS))
    assert predict_default(server) == "setosa"

    document["models"] = config_document(artifacts, ["1", "2"], default="2")["models"]
    volume.publish(yaml.safe_dump(document))
    reloaded = wait_for_log_events(server, WORKERS, event="config_reloaded")
    assert all(line["added"] == ["iris:2"] for line in reloaded)
    wait_until_every_process_shows(server, WORKERS, 1, "2")
    assert predict_default(server) == "versicolor"

    volume.publish("models: [\n")
    rejected = wait_for_log_events(server, WORKERS, event="config_reload_rejected")
    assert all("not valid YAML" in str(line["reason"]) for line in rejected)
    broken = config_document(artifacts, ["1", "2", "3"], default="2")
    broken["server"]["watch_config"] = True
    volume.publish(yaml.safe_dump(broken))
    rejected = wait_for_log_events(server, 2 * WORKERS, event="config_reload_rejected")
    assert all("iris:3" in str(line["reason"]) for line in rejected[WORKERS:])
    assert default_version(models(server)) == "2"
    assert predict_default(server) == "versicolor"

    document["models"] = config_document(artifacts, ["2"], default="2")["models"]
    volume.publish(yaml.safe_dump(document))
    removed = wait_for_log_events(server, 2 * WORKERS, event="config_reloaded")
    assert all(line["removed"] == ["iris:1"] for line in removed[WORKERS:])
    shown = wait_until_every_process_shows(server, WORKERS, 2, "2")
    assert len(shown) == WORKERS
    assert [m["version"] for m in models(server)["models"]] == ["2"]


def test_sighup_rereads_an_edited_config_in_every_worker(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path, artifacts: Path
) -> None:
    """Without watch_config an edit waits for SIGHUP: the master forwards it and both workers
    serve the edited file."""
    path = tmp_path / "modelserve.yaml"
    path.write_text(yaml.safe_dump(config_document(artifacts, ["1", "2"], default="1")))
    server = serve_modelserve(path, "--workers", str(WORKERS))
    path.write_text(yaml.safe_dump(config_document(artifacts, ["1", "2"], default="2")))
    assert [line for line in server.log_lines() if line.get("event") == "config_reloaded"] == []
    server.proc.send_signal(signal.SIGHUP)
    wait_for_log_events(server, WORKERS, event="config_reloaded")
    wait_until_every_process_shows(server, WORKERS, 1, "2")
    assert predict_default(server) == "versicolor"


def test_sighup_rereads_the_config_of_a_single_process(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path, artifacts: Path
) -> None:
    """One uvicorn process: SIGHUP serves the edited file; a second SIGHUP with nothing
    changed logs config_unchanged and changes nothing."""
    path = tmp_path / "modelserve.yaml"
    path.write_text(yaml.safe_dump(config_document(artifacts, ["1", "2"], default="1")))
    server = serve_modelserve(path)
    path.write_text(yaml.safe_dump(config_document(artifacts, ["1", "2"], default="2")))
    server.proc.send_signal(signal.SIGHUP)
    wait_for_log_events(server, 1, event="config_reloaded")
    assert default_version(models(server)) == "2"
    server.proc.send_signal(signal.SIGHUP)
    wait_for_log_events(server, 1, event="config_unchanged")
    assert predict_default(server) == "versicolor"
    assert server.proc.poll() is None
