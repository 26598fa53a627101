"""Every README console block marked ``run against SERVER`` runs against a real server.

Servers are started from a copy of the demo folder (what ``make serve`` builds), one per kind,
shared by the module. To add a kind (another config, or keys): add an entry to ``SERVERS``.
Commands get ``$API_KEY`` (predict scope) and ``$ADMIN_KEY`` (predict and admin) in their
environment; servers "with auth" accept exactly those keys.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from modelserve.inference.artifact import file_sha256
from tests import prometheus
from tests.conftest import pythonpath_env
from tests.e2e.conftest import RunningServer, write_config
from tests.readme_examples import (
    Example,
    check_output,
    console_commands,
    missing_lines,
    readme_examples,
)

pytestmark = pytest.mark.e2e

API_KEY = "readme-predict-key"
ADMIN_KEY = "readme-admin-key"
AUTH: dict[str, Any] = {
    "enabled": True,
    "keys": [
        {"name": "readme-client", "key": API_KEY, "scopes": ["predict"]},
        {"name": "readme-ops", "key": ADMIN_KEY, "scopes": ["predict", "admin"]},
    ],
}
SERVERS: dict[str, tuple[str, dict[str, Any]]] = {
    "modelserve.yaml": ("modelserve.yaml", {}),
    "canary.yaml": ("canary.yaml", {}),
    "canary.yaml with auth": ("canary.yaml", {"auth": AUTH}),
}
"""Server kind named in a marker → (demo config it starts from, settings laid over it)."""
RUN_EXAMPLES = [
    e for e in readme_examples() if (m := e.parsed_marker()) is not None and m["server"]
]


@pytest.fixture(scope="module")
def readme_server(
    serve_modelserve_module: Callable[..., RunningServer],
    demo_models_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[str], RunningServer]:
    """``readme_server(kind)``: the module's server of that kind, started on first use."""
    folder = Path(shutil.copytree(demo_models_dir, tmp_path_factory.mktemp("readme") / "models"))
    started: dict[str, RunningServer] = {}

    def get(kind: str) -> RunningServer:
        if kind not in started:
            base, extra = SERVERS[kind]
            config = yaml.safe_load((folder / base).read_text())
            path = folder / f"readme-{len(started)}.yaml"
            path.write_text(yaml.safe_dump({**config, **extra}))
            started[kind] = serve_modelserve_module(path)
        return started[kind]

    return get


def test_readme_run_examples_name_known_servers() -> None:
    """Every `run against` marker names a server this module knows how to start."""
    kinds = {m["server"] for e in RUN_EXAMPLES if (m := e.parsed_marker()) is not None}
    assert kinds <= set(SERVERS), kinds - set(SERVERS)
    assert RUN_EXAMPLES


@pytest.mark.parametrize("example", RUN_EXAMPLES, ids=lambda e: e.id)
def test_readme_console_example_runs(
    example: Example, readme_server: Callable[[str], RunningServer]
) -> None:
    """Each `$ curl` line succeeds against the server, and answers what the README shows."""
    marker = example.parsed_marker()
    assert marker is not None
    server = readme_server(marker["server"])
    commands = console_commands(example.text)
    assert commands
    env = {"PATH": os.environ["PATH"], "API_KEY": API_KEY, "ADMIN_KEY": ADMIN_KEY}
    for command in commands:
        assert command.command.startswith("curl "), command.command
        line = command.command.replace("localhost:8000", f"127.0.0.1:{server.port}")
        line = "curl -sS --fail-with-body --max-time 30 " + line.removeprefix("curl ")
        done = subprocess.run(
            ["bash", "-c", line], capture_output=True, text=True, env=env, timeout=60, check=False
        )
        assert done.returncode == 0, f"{command.command}\n{done.stdout}\n{done.stderr}"
        if command.output.strip():
            assert check_output(command.output, done.stdout) == [], done.stdout


FOLDER_EXAMPLES = [
    e for e in readme_examples() if (m := e.parsed_marker()) is not None and m["folder"]
]


@pytest.mark.parametrize("example", FOLDER_EXAMPLES, ids=lambda e: e.id)
def test_readme_walkthrough_runs_in_a_new_folder(example: Example, tmp_path: Path) -> None:
    """Each command of the walkthrough succeeds in turn and prints what the README shows."""
    env = pythonpath_env()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    cwd = tmp_path
    for command in console_commands(example.text):
        if command.command.startswith("cd "):
            cwd = cwd / command.command.removeprefix("cd ").strip()
            continue
        done = subprocess.run(
            ["bash", "-c", command.command],
            cwd=cwd,
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
            check=False,
        )
        printed = done.stdout + done.stderr
        assert done.returncode == 0, f"{command.command}\n{printed}"
        assert missing_lines(command.output, printed) == [], printed


def test_readme_rollout_recipe_mirrors_every_row_to_the_optimized_forest(
    serve_modelserve: Callable[..., RunningServer], demo_models_dir: Path, tmp_path: Path
) -> None:
    """The README's rollout config, in the demo folder, answers from version 1 while every row
    is mirrored to the optimized version, and every mirrored row agrees."""
    (example,) = [e for e in readme_examples() if "iris-forest.onnx" in e.text]
    folder = Path(shutil.copytree(demo_models_dir, tmp_path / "models"))
    config = yaml.safe_load(example.text)
    for model in config["models"]:
        model["sha256"] = file_sha256(folder / model["path"])
    server = serve_modelserve(write_config(folder, config, "rollout.yaml"))
    rows = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3], [5.9, 3.0, 5.1, 1.8]]
    for row in rows:
        answer = httpx.post(
            f"{server.base_url}/predict", params={"model": "forest"}, json={"features": row},
            timeout=30,
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == "1"
    labels = {"model": "forest", "live_version": "1", "shadow_version": "1-onnx"}
    deadline = time.monotonic() + 30
    while True:  # the shadow copy runs after the answer went out
        samples = prometheus.parse(httpx.get(f"{server.base_url}/metrics", timeout=10).text)
        agreed = samples.get(
            (
                "modelserve_shadow_comparisons_total",
                frozenset({**labels, "result": "agree"}.items()),
            ),
            0.0,
        )
        if agreed >= len(rows) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert agreed == len(rows)
    for result in ("disagree", "error", "dropped"):
        key = frozenset({**labels, "result": result}.items())
        assert samples.get(("modelserve_shadow_comparisons_total", key), 0.0) == 0
