"""The probe listener of a single serving process, in a small process of its own.

A listener thread inside the serving process shares its GIL with the event loop and the
inference threads: every step of a probe (accept, read, answer, send) waits for the GIL behind
them, up to a switch interval each (5 ms) and far longer behind one C call that holds it
(README, "Reliability": p99 117 ms at 256 single-row connections, 1 s behind a large body's
parse). The gunicorn master never had that cost, as it serves no requests; this gives one
process the same shape. Before the app is built, the serving process binds the probe port and
forks this process, which answers from the files the serving process writes into a directory
private to the run:

* the probe snapshot, ``worker-<pid>.json`` (:class:`~modelserve.probes.SnapshotDirectory`,
  written by the serving loop when it changes and at least every second);
* the ``/metrics`` rendering, ``metrics.prom``, written every second by a thread of the
  serving process while ``metrics.wanted`` (touched by every scrape) is under
  :data:`IDLE_AFTER_S` old; a scrape that finds no rendering under :data:`FRESH_S` old waits
  for the next one.

The probe process ignores SIGINT and SIGTERM (the serving process drains, and readiness must
say so until it exits), is killed by the serving process when it exits, and ends by itself
within 0.25 s when the serving process dies.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from modelserve.api.auth import ApiKeyring, AuthGate
from modelserve.api.lockout import FailedAuthLimiter
from modelserve.probes import (
    KeptRendering,
    ProbeAnswers,
    ProbeListener,
    Render,
    SnapshotDirectory,
    gate_authorizer,
)
from modelserve.settings import Settings

log = structlog.get_logger(__name__)

RENDER_INTERVAL_S = 1.0
"""How often the serving process renders /metrics while it is scraped."""
FRESH_S = 2.5 * RENDER_INTERVAL_S
"""A rendering older than this is not served (the renderer is behind, or was idle)."""
IDLE_AFTER_S = 600.0
"""No scrape for this long: the serving process stops rendering until the next one."""
_RENDER_POLL_S = 0.25
"""How soon the renderer notices the first scrape after an idle spell."""
_METRICS_FILE = "metrics.prom"
_WANTED_FILE = "metrics.wanted"


class MetricsFile:
    """The /metrics rendering shared through a file: written by the serving process's renderer
    thread, read by the probe process (first line: the content type)."""

    def __init__(self, directory: Path) -> None:
        self._path = directory / _METRICS_FILE
        self._wanted = directory / _WANTED_FILE

    def read(self) -> tuple[bytes, str] | None:
        """The latest fresh rendering, or None (and a request for one)."""
        self._wanted.touch()
        try:
            if time.time() - self._path.stat().st_mtime > FRESH_S:
                return None
            content_type, _, body = self._path.read_bytes().partition(b"\n")
        except OSError:
            return None
        return body, content_type.decode("latin-1")

    def wanted(self) -> bool:
        try:
            return time.time() - self._wanted.stat().st_mtime < IDLE_AFTER_S
        except OSError:
            return False

    def write(self, body: bytes, content_type: str) -> None:
        temporary = self._path.with_suffix(".tmp")
        temporary.write_bytes(content_type.encode("latin-1") + b"\n" + body)
        os.replace(temporary, self._path)


class MetricsRenderer:
    """A thread of the serving process: renders /metrics into :class:`MetricsFile` every
    :data:`RENDER_INTERVAL_S` while it is scraped; a failure keeps the last rendering and is
    logged once until rendering works again."""

    def __init__(self, render: Render, file: MetricsFile) -> None:
        self._render = render
        self._file = file
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-renderer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(5)

    def _run(self) -> None:
        rendering, rendered_at = KeptRendering(self._render, self._file.write), 0.0
        while not self._stopped.wait(_RENDER_POLL_S):
            if time.monotonic() - rendered_at < RENDER_INTERVAL_S or not self._file.wanted():
                continue
            rendered_at = time.monotonic()
            rendering.refresh()


class ProbeProcess:
    """The forked probe listener of one serving process (see the module docstring)."""

    def __init__(self, settings: Settings, directory: Path, failed_auth: FailedAuthLimiter) -> None:
        self.snapshots = SnapshotDirectory(directory)
        self.metrics_file = MetricsFile(directory)
        server = settings.server
        assert server.probe_port is not None  # noqa: S101 (the caller checks)
        self._settings = settings
        self._failed_auth = failed_auth
        # Bound here, before the fork: a port in use fails the serving process at once.
        self._listener = ProbeListener(server.host, server.probe_port, self._answers(), None)
        self._pid: int | None = None

    def _answers(self) -> ProbeAnswers:
        server = self._settings.server
        parent = os.getpid()
        return ProbeAnswers(
            lambda: self.snapshots.read({parent}),
            expected=1,
            stall_s=server.liveness_stall_s,
            metrics=self.metrics_file.read if server.metrics_enabled else None,
        )

    def start(self) -> None:
        """Fork the probe process (call it before any other thread starts)."""
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            self._serve_in_child(lambda: os.getppid() != parent)
        self._pid = pid
        self._listener.close_in_child()  # the child owns the socket from now on
        log.info("probe_listener_started", port=self._listener.port, pid=pid)

    def _serve_in_child(self, orphaned: Callable[[], bool]) -> None:
        code = 0
        try:
            # Everything inherited is the serving process's: never scanned by this process's
            # collector (a full collection of it took tens of milliseconds, a probe's wait).
            gc.freeze()
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            # The serving process's count (shared memory): guesses here count there too.
            gate = AuthGate(ApiKeyring(self._settings.auth), self._failed_auth)
            self._listener.authorize = gate_authorizer(gate)
            self._listener.serve(until=orphaned)
        except BaseException as exc:
            log.error("probe_listener_failed", exc_info=exc)
            code = 1
        finally:
            os._exit(code)  # never run the serving process's exit handlers here

    def stop(self) -> None:
        if self._pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self._pid, 0)
        self._pid = None
