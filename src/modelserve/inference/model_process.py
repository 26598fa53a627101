"""A version's model run in child processes of its own (``isolation: process``).

The serving process reads and verifies the files as for any version, then starts one child
per inference thread (``python -m modelserve.inference.process_child``) and hands it those
exact bytes and the config over a private socket pair (:mod:`.process_wire`); the child builds
the runtime with the same builders and answers predict calls. :class:`ProcessRuntime` is the
:class:`~modelserve.inference.runtimes.base.Runtime` the version serves: the batcher calls it
from its inference threads as it would any runtime, and each thread talks to a child of its
own, so a model that holds the GIL never holds the event loop's.

Lifecycle: a version is ready only once every child has built its model and answered the
warm-up batches. A child that exits while its version serves fails the call it was computing with
:class:`~modelserve.errors.ModelNotReadyError` (503), is counted
(``modelserve_model_process_exits_total``) and logged, and is started again from the same
bytes (with a growing delay while it keeps failing); the version is unready until it has
answered the warm-up batches again.
Stopping the version (reload, unload, removal, shutdown after the drain) stops its children.
A child never outlives the serving process: it exits when its socket reaches end of file,
which happens when the serving process shuts its end down or dies, however it dies. It
ignores SIGINT and SIGTERM, so a signal to the whole process group or service (Ctrl-C,
systemd stopping the unit) reaches only the server, which drains, then stops its children.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

import structlog

from modelserve.errors import InvalidInputError, ModelLoadError, ModelNotReadyError
from modelserve.inference import process_wire as wire
from modelserve.inference.types import Batch, FloatArray, ModelMetadata, RawOutput, is_float
from modelserve.observability import metrics

if TYPE_CHECKING:
    from modelserve.inference.loader import VerifiedFiles
    from modelserve.settings import ModelConfig

log = structlog.get_logger(__name__)

CHILD_MODULE = "modelserve.inference.process_child"
STOP_TIMEOUT_S = 5.0
"""How long a stopped child may take to exit before it is killed."""
RESTART_DELAY_S = 0.5
"""Delay before restarting a child that failed to start again; it doubles up to the max."""
MAX_RESTART_DELAY_S = 30.0
UNAVAILABLE_REASON = "its model process exited and is restarting"
"""What requests and readiness say while a child is down (no exit code, pid or path)."""

AvailabilityListener = Callable[[str | None], None]
"""Called with a reason when a version's children stop answering, with None when they are
back (from a supervising thread)."""


class ModelProcess:
    """One child process: loaded once, then answering one predict call at a time."""

    def __init__(self, proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.proc = proc
        self._sock = sock
        self._conn = Connection(os.dup(sock.fileno()))

    @classmethod
    def launch(cls, load_message: bytes) -> ModelProcess:
        """Start a child and send it the verified files (it builds while others start)."""
        parent_end, child_end = socket.socketpair()
        try:
            proc = subprocess.Popen(  # noqa: S603 (our own interpreter and module, no shell)
                [sys.executable, "-m", CHILD_MODULE, str(child_end.fileno())],
                pass_fds=(child_end.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            parent_end.close()
            raise ModelLoadError(f"cannot start a model process: {exc.strerror}") from exc
        finally:
            child_end.close()
        child = cls(proc, parent_end)
        with contextlib.suppress(OSError):  # it died at once: answered() says so
            child._conn.send_bytes(load_message)
        return child

    def answered(self, timeout_s: float) -> tuple[str, ModelMetadata]:
        """Wait for the child's runtime format and metadata; stop it when it failed."""
        try:
            if not self._conn.poll(timeout_s):
                raise ModelLoadError(
                    f"the model process did not load the model within {timeout_s:g} s"
                )
            return wire.decode_loaded(self._conn.recv_bytes())
        except (EOFError, OSError):
            self.stop()
            raise ModelLoadError(
                f"the model process exited while loading (exit code {self.proc.returncode})"
            ) from None
        except BaseException:
            self.stop()
            raise

    def predict(self, batch: FloatArray) -> RawOutput:
        """One model call; EOFError or OSError when the child died."""
        self._conn.send_bytes(wire.encode_batch(batch))
        return wire.decode_output(self._conn.recv_bytes())

    def stop(self) -> None:
        """Shut the socket down (the child exits at end of file; a thread waiting for an
        answer wakes), SIGKILL the child if it is still there after :data:`STOP_TIMEOUT_S`,
        reap it."""
        with contextlib.suppress(OSError):  # already shut down, or the child closed first
            self._sock.shutdown(socket.SHUT_RDWR)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._conn.close()
        self._sock.close()


@dataclass(eq=False)
class _Slot:
    """One inference thread's child; the lock keeps its calls one at a time."""

    child: ModelProcess
    up: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Supervisor:
    """The children of one version: restarts the ones that exit, stops all on close.

    Kept apart from :class:`ProcessRuntime` so that its threads do not keep the runtime alive:
    a runtime nobody holds any more (a load that timed out) is collected and stops these.
    """

    def __init__(self, config: ModelConfig, load_message: bytes, slots: list[_Slot]) -> None:
        self.model, self.version = config.name, config.version
        self.load_timeout_s = config.load_timeout_s
        self.load_message = load_message
        self.slots = slots
        self.listener: AvailabilityListener | None = None
        self.warmup: list[FloatArray] = []
        """The warm-up batches, which a restarted child answers before it serves."""
        self.closed = threading.Event()
        self._state_lock = threading.Lock()

    def watch(self) -> None:
        for slot in self.slots:
            threading.Thread(
                target=self._watch,
                args=(slot,),
                name=f"model-process-{self.model}-{self.version}",
                daemon=True,
            ).start()

    def _watch(self, slot: _Slot) -> None:
        while True:
            exit_code = slot.child.proc.wait()
            if self.closed.is_set():
                return
            log.error(
                "model_process_exited",
                model=self.model,
                model_version=self.version,
                pid=slot.child.proc.pid,
                exit_code=exit_code,
            )
            metrics.record_model_process_exit(self.model, self.version)
            self._set_up(slot, up=False)
            child = self._restart()
            if child is None:
                return
            with slot.lock:
                slot.child.stop()  # reaps nothing more: closes the dead child's socket
                slot.child = child
            self._set_up(slot, up=True)
            log.info(
                "model_process_restarted",
                model=self.model,
                model_version=self.version,
                pid=child.proc.pid,
            )

    def _restart(self) -> ModelProcess | None:
        delay = RESTART_DELAY_S
        while not self.closed.is_set():
            try:
                child = ModelProcess.launch(self.load_message)
                child.answered(self.load_timeout_s)
                _warm(child, self.warmup)
            except ModelLoadError as exc:
                log.error(
                    "model_process_restart_failed",
                    model=self.model,
                    model_version=self.version,
                    reason=exc.detail,
                    retry_in_s=delay,
                )
                self.closed.wait(delay)
                delay = min(delay * 2, MAX_RESTART_DELAY_S)
                continue
            if self.closed.is_set():
                child.stop()
                return None
            return child
        return None

    def _set_up(self, slot: _Slot, *, up: bool) -> None:
        with self._state_lock:
            was_available = all(s.up for s in self.slots)
            slot.up = up
            available = all(s.up for s in self.slots)
        listener = self.listener
        if listener is not None and available != was_available:
            listener(None if available else UNAVAILABLE_REASON)

    def close(self) -> None:
        self.closed.set()
        for slot in self.slots:
            slot.child.stop()


def _warm(child: ModelProcess, batches: list[FloatArray]) -> None:
    """Have a new child answer the warm-up batches; stop it when it cannot."""
    try:
        for batch in batches:
            child.predict(batch)
    except (EOFError, OSError, wire.ModelProcessError) as exc:
        child.stop()
        raise ModelLoadError(f"the model process failed its warm-up: {exc}") from None


class ProcessRuntime:
    """The runtime of a version whose model runs in child processes: one per inference thread,
    each thread always calling its own (first come, first assigned), calls one at a time."""

    def __init__(
        self, supervisor: _Supervisor, runtime_format: str, metadata: ModelMetadata
    ) -> None:
        self.format = runtime_format
        self._metadata = metadata
        self._supervisor = supervisor
        self._assign = itertools.count()
        self._local = threading.local()
        self._close = weakref.finalize(self, supervisor.close)

    @classmethod
    def start(cls, files: VerifiedFiles, config: ModelConfig) -> ProcessRuntime:
        """Start the version's children with ``files`` and wait until each has loaded."""
        message = wire.encode_load(files, config)
        children: list[ModelProcess] = []
        try:
            for _ in range(config.batching.inference_threads):
                children.append(ModelProcess.launch(message))
            answers = [child.answered(config.load_timeout_s) for child in children]
        except BaseException:
            for child in children:
                child.stop()
            raise
        runtime_format, metadata = answers[0]
        supervisor = _Supervisor(config, message, [_Slot(child) for child in children])
        runtime = cls(supervisor, runtime_format, metadata)
        if metadata.features is not None or config.features is not None:
            runtime.close()
            raise ModelLoadError(
                "isolation process takes float features only; this model takes typed columns"
            )
        for child in children:
            log.info(
                "model_process_started",
                model=config.name,
                model_version=config.version,
                pid=child.proc.pid,
            )
        supervisor.watch()
        return runtime

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    @property
    def pids(self) -> list[int]:
        """The children's process ids, for tests and diagnostics."""
        return [slot.child.proc.pid for slot in self._supervisor.slots]

    def set_listener(self, listener: AvailabilityListener | None) -> None:
        """Who hears when the children stop answering and when they are back."""
        self._supervisor.listener = listener

    def predict(self, batch: FloatArray) -> RawOutput:
        slot = self._slot()
        with slot.lock:
            if not slot.up:
                raise self._unavailable()
            try:
                return slot.child.predict(batch)
            except (EOFError, OSError):
                raise self._unavailable() from None

    def warm_up(self, batch: Batch) -> RawOutput:
        """Predict ``batch`` on every child (the first one's output is returned), and keep it
        for the children started again later."""
        if not is_float(batch):
            raise InvalidInputError(f"expected a float64 batch, got {batch.dtype}")
        self._supervisor.warmup.append(batch)
        outputs = []
        for slot in self._supervisor.slots:
            with slot.lock:
                outputs.append(slot.child.predict(batch))
        return outputs[0]

    def close(self) -> None:
        """Stop every child (idempotent); the version must not be called afterwards."""
        self._close()

    def _slot(self) -> _Slot:
        slot: _Slot | None = getattr(self._local, "slot", None)
        if slot is None:
            slots = self._supervisor.slots
            slot = slots[next(self._assign) % len(slots)]
            self._local.slot = slot
        return slot

    def _unavailable(self) -> ModelNotReadyError:
        return ModelNotReadyError(
            self._supervisor.model, self._supervisor.version, UNAVAILABLE_REASON
        )
