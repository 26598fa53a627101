"""ProcessRuntime with real child processes: built from bytes alone, stopped when released."""

from __future__ import annotations

import gc
import hashlib
import io
import os
import signal
import threading
import time
from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from modelserve.inference.artifact import Artifact
from modelserve.inference.loader import VerifiedFiles
from modelserve.inference.model_process import ProcessRuntime
from modelserve.inference.version import build_version
from modelserve.settings import BatchingConfig, ModelConfig
from tests.fakes import CallRecordingClassifier

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


def _callers(calls: Path) -> dict[int, int]:
    counts: dict[int, int] = {}
    for entry in calls.iterdir():
        pid = int(entry.name.split("-")[0])
        counts[pid] = counts.get(pid, 0) + 1
    return counts


def test_every_model_process_answers_the_warm_up(tmp_path: Path) -> None:
    """With two inference threads both children answer the warm-up before the version is
    ready, and a child started again answers it before it serves."""
    calls = tmp_path / "calls"
    calls.mkdir()
    path = tmp_path / "recording.joblib"
    joblib.dump(CallRecordingClassifier(str(calls)).fit(None, None), path)
    config = ModelConfig(
        name="m", path=path, isolation="process", batching=BatchingConfig(inference_threads=2)
    )
    prepared = build_version(config, require_sha256=False)
    try:
        runtime = prepared.runtime
        assert isinstance(runtime, ProcessRuntime)
        first, second = runtime.pids
        assert _callers(calls) == {first: 2, second: 2}  # one row, then a full batch
        back = threading.Event()
        runtime.set_listener(lambda reason: back.set() if reason is None else None)
        os.kill(first, signal.SIGKILL)
        assert back.wait(120)
        (restarted,) = set(runtime.pids) - {first, second}
        assert _callers(calls)[restarted] == 2
    finally:
        prepared.close()
