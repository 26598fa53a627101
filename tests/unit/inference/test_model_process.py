"""ProcessRuntime with real child processes: built from bytes alone, stopped when released."""

from __future__ import annotations

import gc
import hashlib
import io
import time
from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from modelserve.inference.artifact import Artifact
from modelserve.inference.loader import VerifiedFiles
from modelserve.inference.model_process import ProcessRuntime
from modelserve.settings import ModelConfig

NOWHERE = Path("/nonexistent/model.joblib")


def _files() -> tuple[VerifiedFiles, LogisticRegression]:
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(x, y)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    data = buffer.getvalue()
    artifact = Artifact(NOWHERE, data, hashlib.sha256(data).hexdigest())
    return VerifiedFiles("sklearn", artifact, None), model


def _wait_exited(runtime_pids: list[int], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while any(Path(f"/proc/{pid}").exists() and _state(pid) not in "ZX" for pid in runtime_pids):
        assert time.monotonic() < deadline, f"still running: {runtime_pids}"
        time.sleep(0.02)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "X"


def test_process_runtime_builds_from_the_bytes_it_is_handed() -> None:
    """The child never opens the path: a file that does not exist still serves its bytes,
    with the in-process model's probabilities to the last bit."""
    files, model = _files()
    config = ModelConfig(name="m", path=NOWHERE, isolation="process")
    runtime = ProcessRuntime.start(files, config)
    try:
        rows = load_iris().data[:20]
        output = runtime.predict(rows)
        assert output.probabilities is not None
        assert output.probabilities.tobytes() == model.predict_proba(rows).tobytes()
        assert runtime.metadata.n_features == 4
    finally:
        runtime.close()


def test_process_runtime_nobody_holds_stops_its_child() -> None:
    """A runtime dropped without close() (a load that timed out) still stops its child."""
    files, _ = _files()
    runtime = ProcessRuntime.start(files, ModelConfig(name="m", path=NOWHERE, isolation="process"))
    pids = runtime.pids
    del runtime
    gc.collect()
    _wait_exited(pids)
