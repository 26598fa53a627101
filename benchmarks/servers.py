"""How to launch each server the harness measures, and how to talk to it.

A :class:`ServerSpec` is everything the scenario runner needs: the command line, the
readiness path, and per model the path and wrk script of a single-row prediction.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from benchmarks.models import LABELS, ModelFile

VENV_BIN = Path(sys.executable).parent
MODEL_ISOLATION = {"logreg": "thread", "forest": "process"}
"""Each model's ``isolation`` in the harness's modelserve config (``benchmarks/README.md``
says why: on an idle machine the forest in a model process served 1.70x its rate in a thread,
``python -m benchmarks.forest_sweep --ab``)."""


@dataclass(frozen=True)
class ServerSpec:
    """A server to start, and the requests it understands."""

    key: str
    """Short id used in scenario ids and log names (``modelserve-batched``)."""
    label: str
    """Human name for the report."""
    argv: list[str]
    port: int
    ready_path: str
    models: tuple[str, ...]
    predict_path: str = "/predict?model={model}"
    """Path of a single-row prediction; ``{model}`` is replaced by the model name."""
    predict_script: str = "predict.lua"
    batch_path: str | None = None
    """Path of a multi-row prediction (``{model}`` replaced), when the server has one."""
    sample_body: bytes = b'{"features": [5.1, 3.5, 1.4, 0.2]}'
    """A valid single-row body, sent once before measuring to check the server answers."""
    extra_ready_paths: tuple[str, ...] = ()
    """Further paths that must answer 200 before measuring (per-model readiness)."""
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    probe_port: int | None = None
    """modelserve's probe listener (``--probe-port``), the port the shipped manifests probe."""

    def path_for(self, model: str) -> str:
        return self.predict_path.format(model=model)


def modelserve_config(
    files: dict[str, ModelFile],
    batching: bool,
    path: Path,
    access_log: bool = True,
    batching_options: dict[str, object] | None = None,
    isolation: dict[str, str] | None = None,
) -> Path:
    """Write a modelserve YAML config serving every model, batching on or off
    (``batching_options`` replace the batching defaults: 64 rows, 2 ms; ``isolation`` gives a
    model's ``isolation`` by name, else the default, ``thread``).

    The prediction cache is off: rows repeat over a long run, and a cache hit would measure
    the cache instead of the model.
    """
    batching_cfg: dict[str, object] = (
        {"enabled": True, "max_batch_size": 64, "max_delay_ms": 2, **(batching_options or {})}
        if batching
        else {"enabled": False}
    )
    config = {
        "models": [
            {
                "name": f.name,
                "version": "1",
                "path": str(f.path),
                "labels": list(LABELS),
                "batching": dict(batching_cfg),
                "isolation": (isolation or {}).get(f.name, "thread"),
            }
            for f in files.values()
        ],
        "server": {"access_log": access_log},
        "cache": {"backend": "none"},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def modelserve_spec(
    config: Path, port: int, batching: bool, workers: int = 1, probe_port: int | None = None
) -> ServerSpec:
    argv = [
        str(VENV_BIN / "modelserve"),
        "serve",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    if workers > 1:
        argv += ["--workers", str(workers)]
    if probe_port is not None:
        argv += ["--probe-port", str(probe_port)]
    state = "on" if batching else "off"
    return ServerSpec(
        key=f"modelserve-{'batched' if batching else 'unbatched'}",
        label=f"modelserve, batching {state}" + (f", {workers} workers" if workers > 1 else ""),
        argv=argv,
        port=port,
        ready_path="/ready",
        models=("logreg", "forest"),
        batch_path="/predict-batch?model={model}",
        probe_port=probe_port,
    )


def noop_spec(body_file: Path, port: int) -> ServerSpec:
    return ServerSpec(
        key="noop",
        label="no-op Starlette (HTTP ceiling)",
        argv=[
            sys.executable,
            "-m",
            "benchmarks.apps.noop",
            "--port",
            str(port),
            "--body-file",
            str(body_file),
        ],
        port=port,
        ready_path="/health",
        models=("logreg",),
        batch_path="/predict-batch?model={model}",
        cwd=Path(__file__).resolve().parents[1],
    )


def naive_spec(files: dict[str, ModelFile], port: int) -> ServerSpec:
    argv = [sys.executable, "-m", "benchmarks.apps.naive", "--port", str(port)]
    for f in files.values():
        argv += ["--model", f"{f.name}={f.path}"]
    return ServerSpec(
        key="naive",
        label="naive FastAPI (model on the event loop)",
        argv=argv,
        port=port,
        ready_path="/health",
        models=tuple(files),
        cwd=Path(__file__).resolve().parents[1],
    )
