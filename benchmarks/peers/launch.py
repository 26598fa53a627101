"""Install and describe the peer servers: LitServe and MLServer's scikit-learn runtime.

Both serve the harness's joblib files with their own dynamic batching set like modelserve's
(at most 64 requests per batch, 5 ms to fill one). Each gets scikit-learn pinned to the
harness's own version, so the files load exactly as they do in modelserve.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import sklearn

from benchmarks.models import ModelFile
from benchmarks.peers import PeerVenv, ensure_venv
from benchmarks.processes import free_port, free_ports
from benchmarks.servers import ServerSpec

LITSERVE_VERSION = "0.2.19"
MLSERVER_VERSION = "1.7.1"
MAX_BATCH_SIZE = 64
BATCH_TIMEOUT_S = 0.005
_LITSERVE_SCRIPT = Path(__file__).resolve().parent / "litserve_server.py"


def litserve_venv() -> PeerVenv:
    return ensure_venv(
        "litserve",
        [f"litserve=={LITSERVE_VERSION}", f"scikit-learn=={sklearn.__version__}", "joblib"],
    )


def mlserver_venv() -> PeerVenv:
    return ensure_venv(
        "mlserver",
        [
            f"mlserver=={MLSERVER_VERSION}",
            f"mlserver-sklearn=={MLSERVER_VERSION}",
            f"scikit-learn=={sklearn.__version__}",
            # MLServer 1.7.1's inference workers call asyncio.get_event_loop() with no loop
            # set, which uvloop 0.22+ turns into a RuntimeError at start-up.
            "uvloop<0.22",
        ],
    )


def litserve_spec(venv: PeerVenv, model: ModelFile) -> ServerSpec:
    """One LitServe server per model (its route is fixed at /predict)."""
    port = free_port()
    return ServerSpec(
        key="litserve",
        label=f"LitServe {LITSERVE_VERSION}, batching {MAX_BATCH_SIZE} / 5 ms",
        argv=[
            str(venv.python),
            str(_LITSERVE_SCRIPT),
            "--model-path",
            str(model.path),
            "--port",
            str(port),
            "--max-batch-size",
            str(MAX_BATCH_SIZE),
            "--batch-timeout",
            str(BATCH_TIMEOUT_S),
        ],
        port=port,
        ready_path="/health",
        models=(model.name,),
        predict_path="/predict",
    )


def mlserver_spec(venv: PeerVenv, files: dict[str, ModelFile], work_dir: Path) -> ServerSpec:
    """One MLServer serving every model from a model repository written under ``work_dir``."""
    repo = work_dir / "mlserver"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    http_port, grpc_port, metrics_port = free_ports(3)
    settings = {
        "debug": False,
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "model_repository_root": str(repo),
        "load_models_at_startup": True,
    }
    (repo / "settings.json").write_text(json.dumps(settings, indent=2))
    for f in files.values():
        model_dir = repo / f.name
        model_dir.mkdir()
        model_settings = {
            "name": f.name,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "max_batch_size": MAX_BATCH_SIZE,
            "max_batch_time": BATCH_TIMEOUT_S,
            "parameters": {"uri": str(f.path), "version": "1"},
        }
        (model_dir / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    return ServerSpec(
        key="mlserver",
        label=f"MLServer {MLSERVER_VERSION} sklearn runtime, adaptive batching 64 / 5 ms",
        argv=[str(venv.bin("mlserver")), "start", str(repo)],
        port=http_port,
        ready_path="/v2/health/ready",
        extra_ready_paths=tuple(f"/v2/models/{name}/ready" for name in files),
        models=tuple(files),
        predict_path="/v2/models/{model}/infer",
        predict_script="v2_infer.lua",
        sample_body=json.dumps(
            {
                "inputs": [
                    {
                        "name": "input-0",
                        "shape": [1, 4],
                        "datatype": "FP64",
                        "data": [5.1, 3.5, 1.4, 0.2],
                    }
                ],
                "outputs": [{"name": "predict_proba"}],
            }
        ).encode(),
        cwd=repo,
    )
