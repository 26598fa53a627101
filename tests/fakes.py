"""Model doubles. They are real picklable estimators, so e2e servers can load them from files
(the server process imports this module: e2e tests put the repository root on PYTHONPATH)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from modelserve.inference.types import FloatArray, ModelMetadata, RawOutput

LABELS = ["setosa", "versicolor", "virginica"]


class SlowClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Sleeps ``delay_s`` per call, then answers class 0 with certainty."""

    def __init__(self, delay_s: float = 1.0, n_features: int = 4) -> None:
        self.delay_s = delay_s
        self.n_features = n_features

    def fit(self, x: Any, y: Any) -> SlowClassifier:
        self.classes_ = np.arange(3)
        self.n_features_in_ = self.n_features
        return self

    def predict_proba(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        time.sleep(self.delay_s)
        out = np.zeros((len(x), 3))
        out[:, 0] = 1.0
        return out

    def predict(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        return np.asarray(self.predict_proba(x).argmax(axis=1))


class BusyClassifier(SlowClassifier):
    """Computes in Python, holding the GIL, for ``delay_s`` per call (a CPU-bound model)."""

    def predict_proba(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        deadline = time.perf_counter() + self.delay_s
        while time.perf_counter() < deadline:
            pass
        out = np.zeros((len(x), 3))
        out[:, 0] = 1.0
        return out


class FailingClassifier(SlowClassifier):
    """Raises when any row's first feature equals ``poison`` (so one batch fails, not all)."""

    def __init__(self, poison: float = 666.0, n_features: int = 4) -> None:
        super().__init__(0.0, n_features)
        self.poison = poison

    def predict_proba(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if np.any(x[:, 0] == self.poison):
            raise RuntimeError("poisoned row: secret internal detail")
        return super().predict_proba(x)


class StallingClassifier(SlowClassifier):
    """Sleeps ``delay_s`` on a call with a row whose first feature is ``trigger``; other calls
    (the warm-up's zeros, ordinary rows) answer at once. A model call stuck past any deadline."""

    def __init__(self, trigger: float = 99.0, delay_s: float = 60.0, n_features: int = 4) -> None:
        super().__init__(delay_s, n_features)
        self.trigger = trigger

    def predict_proba(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if np.any(x[:, 0] == self.trigger):
            time.sleep(self.delay_s)
        out = np.zeros((len(x), 3))
        out[:, 0] = 1.0
        return out


class SlowLoadingClassifier(SlowClassifier):
    """Takes ``load_delay_s`` to unpickle (a huge artifact), then answers at once."""

    def __init__(self, load_delay_s: float = 60.0, n_features: int = 4) -> None:
        super().__init__(0.0, n_features)
        self.load_delay_s = load_delay_s

    def __setstate__(self, state: dict[str, Any]) -> None:
        time.sleep(state["load_delay_s"])
        self.__dict__.update(state)


class WrongShapeClassifier(SlowClassifier):
    """Answers one row fewer than asked for when any row's first feature is ``trigger``."""

    def __init__(self, trigger: float = 77.0, n_features: int = 4) -> None:
        super().__init__(0.0, n_features)
        self.trigger = trigger

    def predict_proba(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        out = super().predict_proba(x)
        return out[:-1] if np.any(x[:, 0] == self.trigger) else out


class SumRegressor(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """Predicts the sum of the features, so every caller can check its own answer."""

    def __init__(self, n_features: int = 4) -> None:
        self.n_features = n_features

    def fit(self, x: Any, y: Any) -> SumRegressor:
        self.n_features_in_ = self.n_features
        return self

    def predict(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.asarray(x.sum(axis=1))


class EchoRuntime:
    """Runtime returning each row's first feature as its value; records every batch size."""

    format = "fake"

    def __init__(self, n_features: int = 4, delay_s: float = 0.0) -> None:
        self._metadata = ModelMetadata(n_features=n_features, is_classifier=False)
        self.delay_s = delay_s
        self.batch_sizes: list[int] = []
        self._lock = threading.Lock()

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    def predict(self, batch: FloatArray) -> RawOutput:
        with self._lock:
            self.batch_sizes.append(len(batch))
        if self.delay_s:
            time.sleep(self.delay_s)
        return RawOutput(values=batch[:, 0].copy())


class FailingRuntime(EchoRuntime):
    """Fails any batch containing a row whose first feature is negative."""

    def predict(self, batch: FloatArray) -> RawOutput:
        if np.any(batch[:, 0] < 0):
            raise RuntimeError("negative input: internal detail")
        return super().predict(batch)


class Gate:
    """Holds model calls of a :class:`GatedClassifier` until a test opens it (in-process)."""

    def __init__(self) -> None:
        self.armed = False
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.rows_computed = 0

    def hold(self) -> None:
        """From now on, calls wait for :meth:`open` (warm-up calls before this do not)."""
        self.armed = True

    def open(self) -> None:
        self.opened.set()


_GATES: dict[str, Gate] = {}


def gate(name: str) -> Gate:
    """The gate of every GatedClassifier named ``name`` in this process."""
    return _GATES.setdefault(name, Gate())


class GatedClassifier(SlowClassifier):
    """Answers class 0; while its gate holds, a call signals ``entered`` and waits to be let go.

    The gate lives in this module, not in the pickle, so a test and the model it loaded share
    it: the test knows exactly when a call is inside the model instead of sleeping on it.
    """

    def __init__(self, gate_name: str = "default", n_features: int = 4) -> None:
        super().__init__(0.0, n_features)
        self.gate_name = gate_name

    def predict_proba(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        held = gate(self.gate_name)
        if held.armed:
            held.entered.set()
            if not held.opened.wait(30):
                raise RuntimeError("the test never opened the gate")
        held.rows_computed += len(x)
        return super().predict_proba(x)


GATE_HOLD_LIMIT_S = 60.0
"""A held model call gives up after this long, so a test that forgot to open fails instead
of leaving a server stuck."""


class FileGate:
    """Holds the calls of a :class:`FileGatedClassifier` in another process until opened.

    The server process and the test share the gate through files in ``directory``: ``held``
    makes calls wait, each waiting call leaves an ``entered-*`` file, ``open`` lets them go.
    A test knows exactly how many calls are inside the model, without sleeping on it.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def hold(self) -> None:
        """From now on, model calls wait (warm-up calls before this do not)."""
        for marker in [*self.directory.glob("entered-*"), self.directory / "open"]:
            marker.unlink(missing_ok=True)
        (self.directory / "held").touch()

    def open(self) -> None:
        """Let every waiting call go, and the calls after it through."""
        (self.directory / "open").touch()
        (self.directory / "held").unlink(missing_ok=True)

    def entered(self) -> int:
        return len(list(self.directory.glob("entered-*")))

    def wait_entered(self, count: int, timeout_s: float = 30.0) -> None:
        """Wait until ``count`` calls are held inside the model (bounded)."""
        deadline = time.monotonic() + timeout_s
        while self.entered() < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.entered()} of {count} calls reached the model")
            time.sleep(0.01)


class FileGatedClassifier(SlowClassifier):
    """Answers class 0 at once, except while its :class:`FileGate` is held: then a call marks
    that it entered and waits for the gate to open."""

    def __init__(self, gate_dir: str = "", n_features: int = 4) -> None:
        super().__init__(0.0, n_features)
        self.gate_dir = gate_dir

    def predict_proba(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        gate_dir = Path(self.gate_dir)
        if (gate_dir / "held").exists():
            (gate_dir / f"entered-{uuid.uuid4().hex}").touch()
            deadline = time.monotonic() + GATE_HOLD_LIMIT_S
            while not (gate_dir / "open").exists():
                if time.monotonic() > deadline:
                    raise RuntimeError("the test never opened the gate")
                time.sleep(0.005)
        return super().predict_proba(x)


class LoadGatedClassifier(FileGatedClassifier):
    """A :class:`FileGatedClassifier` whose unpickling waits while ``hold-load`` is in its
    gate directory: a test holds a model process's restart and sees the version unready."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        hold = Path(state["gate_dir"]) / "hold-load"
        deadline = time.monotonic() + GATE_HOLD_LIMIT_S
        while hold.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.__dict__.update(state)


class CallRecordingClassifier(SlowClassifier):
    """Answers class 0 at once and leaves a ``<pid>-<uuid>`` file in ``calls_dir`` per call:
    a test sees which processes a model was called in."""

    def __init__(self, calls_dir: str = "", n_features: int = 4) -> None:
        super().__init__(0.0, n_features)
        self.calls_dir = calls_dir

    def predict_proba(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        (Path(self.calls_dir) / f"{os.getpid()}-{uuid.uuid4().hex}").touch()
        return super().predict_proba(x)
