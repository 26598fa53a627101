"""The probe listener: /health, /ready and /metrics on ``server.probe_port``, off the serving loop.

Why a listener of its own: on the main port a probe waits in the same event loop as every
prediction. Measured with 64 connections of 1000-row batches, ``GET /health`` there took a
median of hundreds of milliseconds (README, "Reliability"), and Kubernetes restarts a pod whose
liveness probe misses its timeout exactly when it is busiest. Here a probe is answered by a
small listener in a process that serves no requests, from the :class:`ProbeSnapshot` each
serving process writes to a file in a directory private to the run (its loop publishes every
tick, 0.1 s): the answer never waits for parsing, batching, model calls, or the serving
process's GIL.

Where it runs:

* one process (uvicorn): a small process forked before the app starts
  (:mod:`modelserve.probe_process`), which also serves the ``/metrics`` text the serving
  process renders every second while it is scraped;
* gunicorn: a thread of the master, which only sleeps between signals. The master answers
  ``/ready`` 200 only when every expected worker is alive and ready, so a killed worker (and
  its replacement's warm-up) shows on readiness, and ``/metrics`` aggregates every worker's
  multiprocess files, rendered by a thread of its own every second once scraped.

Liveness stays trivial but not blind: ``/health`` fails when no snapshot was published for
``server.liveness_stall_s`` (the serving loop is wedged), and while the process starts.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import cast

import orjson
import structlog

from modelserve.api.auth import AuthGate
from modelserve.api.errors import http_headers, http_status
from modelserve.api.route_table import Access
from modelserve.errors import ModelserveError

log = structlog.get_logger(__name__)

MAX_HEADER_BYTES = 8192
READ_TIMEOUT_S = 2.0
DEFER_LIMIT_S = 5.0
"""How long a scrape waits for a fresh rendering before a 503 (well under Prometheus's 10 s)."""
_DEFERRED_POLL_S = 0.02
MAX_CONNECTIONS = 64
"""Probe connections handled at once; more are closed at once (probes come one at a time)."""
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden"}
_REASONS |= {404: "Not Found", 405: "Method Not Allowed", 429: "Too Many Requests"}
_REASONS |= {503: "Service Unavailable"}


@dataclass(frozen=True, slots=True)
class ProbeSnapshot:
    """What one serving process says about itself, published by its event loop."""

    pid: int
    ready: bool
    reasons: list[str]
    draining: bool
    models: dict[str, str]
    uptime_s: float
    published_at: float = field(default_factory=time.time)
    """Wall-clock time, so that another process (the gunicorn master) can judge its age."""

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> ProbeSnapshot:
        return cls(**orjson.loads(data))


@dataclass(frozen=True, slots=True)
class ProbeAnswer:
    """One probe response."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


Authorize = Callable[[str, list[tuple[bytes, bytes]], str], ProbeAnswer | None]
"""Given path, headers and the client's address: None to go on, or the refusal to send
(401/403, or 429 for an address over ``auth.failed_auth_limit``)."""
Render = Callable[[], tuple[bytes, str]]
"""The /metrics exposition text and its content type."""
MetricsSource = Callable[[], tuple[bytes, str] | None]
"""The /metrics text to answer now, or None when none is fresh yet: the listener then holds
the scrape and asks again (:data:`DEFER_LIMIT_S` at most)."""


def _json(status: int, content: object) -> ProbeAnswer:
    return ProbeAnswer(status, orjson.dumps(content))


def _error(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> ProbeAnswer:
    body = {"detail": detail, "code": code, "request_id": None}
    return ProbeAnswer(status, orjson.dumps(body), headers=headers or {})


class KeptRendering:
    """Renders /metrics into a sink on each :meth:`refresh`; a failing render leaves the sink
    with the last good rendering and is logged once until rendering works again.

    The one shape of both renderers: the gunicorn master's (:class:`PrerenderedMetrics`) and
    the single serving process's, which writes for its probe process
    (:class:`~modelserve.probe_process.MetricsRenderer`).
    """

    def __init__(self, render: Render, sink: Callable[[bytes, str], None]) -> None:
        self._render = render
        self._sink = sink
        self._failing = False

    def refresh(self) -> None:
        try:
            self._sink(*self._render())
        except Exception as exc:  # keep serving the last good rendering; log once
            if not self._failing:
                log.error("metrics_render_failed", exc_info=exc)
            self._failing = True
        else:
            self._failing = False


class PrerenderedMetrics:
    """The /metrics text rendered every ``interval_s`` by a thread of its own, once scraped.

    Rendering is a few milliseconds of Python; beside a saturated serving loop it waits for the
    GIL and took over 100 ms, so a scrape gets the latest rendering (at most ``interval_s``
    old) at once. The first scrape renders in place and starts the renderer.
    """

    def __init__(self, render: Render, interval_s: float = 1.0) -> None:
        self._render = render
        self._interval_s = interval_s
        self._latest: tuple[bytes, str] | None = None
        self._lock = threading.Lock()

    def __call__(self) -> tuple[bytes, str]:
        latest = self._latest
        if latest is not None:
            return latest
        with self._lock:
            if self._latest is None:
                self._latest = self._render()
                threading.Thread(target=self._run, name="probe-metrics", daemon=True).start()
            return self._latest

    def _run(self) -> None:
        rendering = KeptRendering(self._render, self._keep)
        while True:
            time.sleep(self._interval_s)
            rendering.refresh()

    def _keep(self, body: bytes, content_type: str) -> None:
        self._latest = (body, content_type)


class ProbeAnswers:
    """Turns snapshots into /health, /ready and /metrics answers (one process or a master)."""

    def __init__(
        self,
        snapshots: Callable[[], list[ProbeSnapshot] | None],
        *,
        expected: int,
        stall_s: float,
        metrics: MetricsSource | None,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self._snapshots = snapshots
        self._expected = expected
        self._stall_s = stall_s
        self._metrics = metrics
        self._stopping = stopping

    def answer(self, path: str) -> ProbeAnswer | None:
        """The answer to ``path``; None for a scrape with no fresh rendering yet."""
        if path == "/health":
            return self.health()
        if path == "/ready":
            return self.ready()
        if path == "/metrics" and self._metrics is not None:
            rendered = self._metrics()
            return None if rendered is None else ProbeAnswer(200, *rendered)
        return _error(404, "not_found", "the probe port serves /health, /ready and /metrics")

    def health(self) -> ProbeAnswer:
        """200 while serving processes publish their state; 503 while starting or wedged."""
        snapshots = self._snapshots()
        if not snapshots:
            return _json(503, {"status": "starting", "workers": {}})
        now = time.time()
        stalled = [s.pid for s in snapshots if now - s.published_at > self._stall_s]
        body = {
            "status": "stalled" if stalled else "ok",
            "draining": self._stopping() or any(s.draining for s in snapshots),
            "uptime_s": round(max(s.uptime_s for s in snapshots), 3),
            "models": snapshots[0].models,
            "workers": {str(s.pid): s.models for s in snapshots},
        }
        # With workers, a wedged one is gunicorn's to replace (its timeout); alone, it is ours.
        return _json(503 if stalled and len(snapshots) == 1 else 200, body)

    def ready(self) -> ProbeAnswer:
        """200 only when every expected process is ready, fresh, and not draining."""
        snapshots = self._snapshots() or []
        reasons = ["shutting down"] if self._stopping() else []
        group_reasons, ready_count = group_readiness(
            snapshots, expected=self._expected, stall_s=self._stall_s
        )
        reasons += group_reasons
        if reasons:
            return _error(503, "not_ready", "; ".join(dict.fromkeys(reasons)))
        return _json(200, {"ready": True, "reasons": [], "workers": ready_count})


def group_readiness(
    snapshots: list[ProbeSnapshot], *, expected: int, stall_s: float
) -> tuple[list[str], int]:
    """Why a group of ``expected`` processes is not ready (none: it is), and how many are.

    A process whose snapshot is older than ``stall_s`` counts as not ready, and so does one
    missing from ``snapshots`` (dead, or still starting).
    """
    now = time.time()
    reasons: list[str] = []
    for snapshot in snapshots:
        if now - snapshot.published_at > stall_s:
            reasons.append(f"worker {snapshot.pid} has not reported for {stall_s:g} s")
        elif not snapshot.ready:
            reasons.extend(snapshot.reasons)
    ready_count = sum(s.ready and now - s.published_at <= stall_s for s in snapshots)
    if len(snapshots) < expected:
        reasons.append(f"{ready_count} of {expected} workers ready")
    return reasons, ready_count


class ProcessGroup:
    """The readiness of every worker of one gunicorn master, as one worker sees it.

    The main port's ``/ready`` answers from whichever worker took the connection; with this
    it answers for the whole group, from the snapshots every worker writes (the probe
    listener's own source), so a dead, wedged or still-loading sibling fails it too.
    """

    def __init__(self, directory: SnapshotDirectory, expected: int, stall_s: float) -> None:
        self._directory = directory
        self._expected = expected
        self._stall_s = stall_s

    def readiness(self) -> tuple[list[str], int]:
        return group_readiness(
            self._directory.read_all(), expected=self._expected, stall_s=self._stall_s
        )


class ProbeListener:
    """A minimal HTTP/1.1 server for GET probes: one daemon thread, non-blocking sockets.

    Each connection carries one request and is closed (``Connection: close``); a request head
    is bounded in size and time, and at most ``MAX_CONNECTIONS`` are open at once. Plain
    ``selectors`` rather than asyncio: the gunicorn master forks workers while this thread
    runs, and :meth:`close_in_child` must close every descriptor the listener owns. A scrape
    with no fresh rendering yet is held (up to :data:`DEFER_LIMIT_S`) and asked again.
    """

    def __init__(
        self,
        host: str,
        port: int,
        answers: ProbeAnswers,
        authorize: Authorize | None = None,
    ) -> None:
        self._answers = answers
        self.authorize = authorize
        self._sock = socket.create_server((host, port), backlog=MAX_CONNECTIONS)
        self._sock.setblocking(False)
        if hasattr(socket, "TCP_DEFER_ACCEPT"):
            # Linux: a connection is handed over once its request has arrived, so one wake-up
            # accepts, reads and answers it.
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
        self.port: int = self._sock.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._sock, selectors.EVENT_READ)
        self._pending: dict[socket.socket, tuple[bytearray, float, str]] = {}
        self._deferred: dict[socket.socket, tuple[str, float]] = {}
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Serve from a daemon thread until :meth:`stop` (or the process ends)."""
        self._thread = threading.Thread(target=self._run, name="probe-listener", daemon=True)
        self._thread.start()
        log.info("probe_listener_started", port=self.port)

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(5)
        self.close_in_child()

    def close_in_child(self) -> None:
        """Close this listener's descriptors (in a forked worker, where no thread runs it)."""
        for conn in list(self._pending):
            conn.close()
        self._pending.clear()
        self._deferred.clear()
        self._selector.close()
        self._sock.close()

    def serve(self, until: Callable[[], bool] = lambda: False) -> None:
        """Serve in this thread until :meth:`stop` or ``until()`` (checked every 0.25 s)."""
        while not self._stopped.is_set() and not until():
            try:
                timeout = _DEFERRED_POLL_S if self._deferred else 0.25
                for key, _ in self._selector.select(timeout=timeout):
                    if key.fileobj is self._sock:
                        self._accept()
                    else:
                        self._read(cast(socket.socket, key.fileobj))
                self._answer_deferred()
                self._expire()
            except Exception as exc:  # never let one probe end the listener
                log.error("probe_failed", exc_info=exc)

    def _run(self) -> None:
        self.serve()

    def _accept(self) -> None:
        for _ in range(MAX_CONNECTIONS):  # every connection waiting, within a bound
            try:
                conn, peer = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            if len(self._pending) >= MAX_CONNECTIONS:
                conn.close()
                continue
            conn.setblocking(False)
            self._pending[conn] = (bytearray(), time.monotonic() + READ_TIMEOUT_S, str(peer[0]))
            self._selector.register(conn, selectors.EVENT_READ)
            self._read(conn)  # its request is nearly always there already: answer it now

    def _read(self, conn: socket.socket) -> None:
        buffer, _, address = self._pending[conn]
        try:
            chunk = conn.recv(MAX_HEADER_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        buffer += chunk
        if b"\r\n\r\n" in buffer:
            head = bytes(buffer.split(b"\r\n\r\n", 1)[0])
            answer = self._answer(head, address)
            if answer is None:
                self._defer(conn, head)
            else:
                self._reply(conn, answer)
        elif not chunk:
            self._close(conn)
        elif len(buffer) > MAX_HEADER_BYTES:
            self._reply(conn, _error(400, "bad_request", "request head too large"))

    def _defer(self, conn: socket.socket, head: bytes) -> None:
        target = _target(head.split(b"\r\n", 1)[0])
        self._selector.unregister(conn)  # its request is complete: nothing more to read
        self._deferred[conn] = (target, time.monotonic() + DEFER_LIMIT_S)

    def _answer_deferred(self) -> None:
        now = time.monotonic()
        for conn, (target, give_up_at) in list(self._deferred.items()):
            answer = self._answers.answer(target)
            if answer is None and now > give_up_at:
                answer = _error(503, "metrics_unavailable", "no fresh metrics rendering yet")
            if answer is not None:
                self._reply(conn, answer)

    def _expire(self) -> None:
        now = time.monotonic()
        for conn, (_, deadline, _) in list(self._pending.items()):
            if now > deadline and conn not in self._deferred:
                self._close(conn)  # a prober that never finished its request head

    def _reply(self, conn: socket.socket, answer: ProbeAnswer) -> None:
        data = _encode(answer)
        try:
            try:
                sent = conn.send(data)  # probe answers are small: one send, nearly always
            except BlockingIOError:
                sent = 0
            if sent < len(data):
                conn.settimeout(READ_TIMEOUT_S)
                conn.sendall(data[sent:])
        except OSError:
            pass  # the prober went away: nothing to answer
        self._close(conn)

    def _close(self, conn: socket.socket) -> None:
        if self._deferred.pop(conn, None) is None:
            self._selector.unregister(conn)
        del self._pending[conn]
        conn.close()

    def _answer(self, head: bytes, address: str) -> ProbeAnswer | None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return _error(400, "bad_request", "malformed request line")
        method, target = parts[0], _target(lines[0])
        if method != b"GET":
            return _error(405, "method_not_allowed", "probes are GET requests")
        if self.authorize is not None:
            refusal = self.authorize(target, [_header(line) for line in lines[1:]], address)
            if refusal is not None:
                return refusal
        return self._answers.answer(target)


def _target(request_line: bytes) -> str:
    """The path of a request line (``GET /ready?x HTTP/1.1`` → ``/ready``)."""
    parts = request_line.split(b" ")
    return parts[1].decode("latin-1").split("?", 1)[0] if len(parts) > 1 else ""


def _header(line: bytes) -> tuple[bytes, bytes]:
    name, _, value = line.partition(b":")
    return name.strip().lower(), value.strip()


def _encode(answer: ProbeAnswer) -> bytes:
    head = (
        f"HTTP/1.1 {answer.status} {_REASONS.get(answer.status, 'Error')}\r\n"
        f"content-type: {answer.content_type}\r\n"
        f"content-length: {len(answer.body)}\r\n"
        "cache-control: no-store\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in answer.headers.items())
        + "connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + answer.body


class SnapshotDirectory:
    """Worker snapshots as ``worker-<pid>.json`` files in a directory private to one run.

    A reader keeps each snapshot it parsed with the file's identity (inode, modification time,
    size) and parses again only when a ``stat`` shows another file: a probe then costs one
    ``stat`` per worker instead of an open, a read and a parse (a writer replaces the file,
    so a new snapshot is always a new inode).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._written: bytes | None = None
        self._written_at = 0.0
        self._parsed: dict[int, tuple[tuple[int, int, int], ProbeSnapshot]] = {}

    def publish(self, snapshot: ProbeSnapshot) -> None:
        """Write when the content changes, and at least every second (the file's age is read)."""
        content = orjson.dumps({**asdict(snapshot), "published_at": 0})
        now = time.monotonic()
        if content == self._written and now - self._written_at < 1.0:
            return
        path = self.directory / f"worker-{snapshot.pid}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(snapshot.to_json())
        os.replace(temporary, path)
        self._written, self._written_at = content, now

    def read(self, pids: set[int]) -> list[ProbeSnapshot]:
        """The snapshots of the live workers ``pids`` (files of dead workers are ignored)."""
        found = []
        parsed: dict[int, tuple[tuple[int, int, int], ProbeSnapshot]] = {}
        directory = str(self.directory)
        for pid in sorted(pids):
            path = os.path.join(directory, f"worker-{pid}.json")
            try:
                stat = os.stat(path)
                identity = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
                kept = self._parsed.get(pid)
                if kept is not None and kept[0] == identity:
                    snapshot = kept[1]
                else:
                    with open(path, "rb") as file:
                        snapshot = ProbeSnapshot.from_json(file.read())
            except (OSError, ValueError, TypeError):
                continue  # not written yet, or being replaced: that worker is not ready
            # Replaced between the stat and the read: the next stat differs, and reads again.
            parsed[pid] = (identity, snapshot)
            found.append(snapshot)
        self._parsed = parsed
        return found

    def read_all(self) -> list[ProbeSnapshot]:
        """Every worker snapshot in the directory (the master removes a dead worker's)."""
        pids = set()
        for path in self.directory.glob("worker-*.json"):
            with contextlib.suppress(ValueError):
                pids.add(int(path.stem.removeprefix("worker-")))
        return self.read(pids)

    def forget(self, pid: int) -> None:
        with contextlib.suppress(OSError):
            (self.directory / f"worker-{pid}.json").unlink()


_ACCESS = {"/health": Access.PROBE, "/ready": Access.PROBE, "/metrics": Access.METRICS}
"""Who may call each path of the probe port: the same access as on the main port."""


def gate_authorizer(gate: AuthGate) -> Authorize | None:
    """The main port's rules on the probe port (:class:`AuthGate`): a key when probes or
    metrics are protected, and the failed-authentication limit per client address."""
    if not gate.keyring.enabled:
        return None

    def authorize(
        path: str, headers: list[tuple[bytes, bytes]], address: str
    ) -> ProbeAnswer | None:
        try:
            gate.admit(_ACCESS.get(path), headers, lambda: address)
        except ModelserveError as exc:
            return _error(http_status(exc), exc.code, str(exc.detail), http_headers(exc))
        return None

    return authorize
