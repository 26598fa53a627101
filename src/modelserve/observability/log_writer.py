"""JSON log lines rendered and written by a thread, off the request path.

structlog's processors that need the caller (context variables, level, the moment, the
exception being handled) still run where a line is logged; what costs more, rendering the
line with orjson and the ``write`` system call, happens in a writer thread that drains a
bounded queue every ``flush_interval_s`` and writes each batch with one call. One access
line per request and its order among the other lines stay as they were.

A full queue drops the line and counts it: the next batch starts with a
``log_lines_dropped`` warning saying how many, and ``modelserve_log_lines_dropped_total``
counts them, so a stalled log reader (a full pipe) never blocks requests and never loses a
line silently. :meth:`LogWriter.close` (at exit) writes what is queued and makes later lines
synchronous; a fork flushes first, and the child starts its own thread on its first line.
"""

from __future__ import annotations

import atexit
import collections
import os
import threading
import time
from collections.abc import Callable
from typing import Any, BinaryIO

QUEUE_LINES = 10_000
FLUSH_INTERVAL_S = 0.02

Render = Callable[[dict[str, Any]], bytes]


class LogWriter:
    """A structlog logger whose every method queues the event for the writer thread."""

    def __init__(
        self,
        stream: BinaryIO,
        render: Render,
        *,
        capacity: int = QUEUE_LINES,
        flush_interval_s: float = FLUSH_INTERVAL_S,
    ) -> None:
        self._stream = stream
        self._render = render
        self._capacity = capacity
        self._flush_interval_s = flush_interval_s
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.dropped = 0
        self._dropped_reported = 0

    def msg(self, **event: Any) -> None:
        """Queue one event (already through the caller-side processors)."""
        self.put(event)

    def put(self, event: dict[str, Any]) -> None:
        """Queue ``event``, a line's complete fields (the writer owns the dict from here)."""
        if self._closed:
            with self._lock:
                self._write([event])
            return
        if len(self._queue) >= self._capacity:
            self.dropped += 1
            return
        self._queue.append(event)
        if self._thread is None:
            self._start()

    debug = info = warning = warn = error = critical = exception = fatal = log = msg

    def flush(self) -> None:
        """Write every queued line now (from any thread)."""
        with self._lock:
            self._drain()

    def close(self) -> None:
        """Stop the thread, write what is queued; later lines are written as they come."""
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        self.flush()

    def after_fork_in_child(self) -> None:
        """The parent's thread does not exist here: the next line starts this process's."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
        self._queue.clear()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="modelserve-log-writer", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._flush_interval_s)
            with self._lock:
                self._drain()

    def _drain(self) -> None:
        """Write the queue's lines (the caller holds the lock)."""
        queue = self._queue
        events = [queue.popleft() for _ in range(len(queue))]
        dropped = self.dropped - self._dropped_reported
        if dropped:
            self._dropped_reported += dropped
            events.insert(0, _dropped_event(dropped, self._capacity))
            _count_dropped(dropped)
        if events:
            self._write(events)

    def _write(self, events: list[dict[str, Any]]) -> None:
        render = self._render
        try:
            self._stream.write(b"".join([render(event) + b"\n" for event in events]))
            self._stream.flush()
        except (OSError, ValueError):
            pass  # stdout closed or gone: nowhere left to say so


def _dropped_event(count: int, capacity: int) -> dict[str, Any]:
    return {
        "event": "log_lines_dropped",
        "dropped": count,
        "reason": f"the log queue was full ({capacity} lines): its reader is too slow",
        "level": "warning",
        "timestamp": time.time(),
    }


def _count_dropped(count: int) -> None:
    # Imported here: prometheus-client must be first imported after the gunicorn set-up
    # chooses its multiprocess directory, and logging is configured before that.
    from modelserve.observability import metrics

    metrics.record_log_lines_dropped(count)


_writers: list[LogWriter] = []


def start_writer(stream: BinaryIO, render: Render) -> LogWriter:
    """The process's writer, flushed at exit and around forks."""
    writer = LogWriter(stream, render)
    for old in _writers:
        old.close()
    _writers[:] = [writer]
    return writer


def _close_all() -> None:
    for writer in _writers:
        writer.close()


def flush_all() -> None:
    """Write every line queued so far, now."""
    for writer in _writers:
        writer.flush()


def _after_fork_in_child() -> None:
    for writer in _writers:
        writer.after_fork_in_child()


atexit.register(_close_all)
os.register_at_fork(before=flush_all, after_in_child=_after_fork_in_child)
