"""The log writer: lines rendered and written off the caller's thread, none lost silently."""

from __future__ import annotations

import io
import threading

import orjson

from modelserve.observability.log_writer import LogWriter
from modelserve.observability.logging import render_json_line
from modelserve.observability.metrics import LOG_LINES_DROPPED


class StalledStream(io.BytesIO):
    """A stdout whose reader stopped: ``write`` blocks until released."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.entered.set()
        assert self.release.wait(10), "the test never released the stream"
        return super().write(data)


def _lines(stream: io.BytesIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_log_writer_writes_every_line_once_in_order_when_closed() -> None:
    """Lines logged from several calls come out once each, in order, by the time it closes."""
    stream = io.BytesIO()
    writer = LogWriter(stream, render_json_line, flush_interval_s=0.001)

    for n in range(500):
        writer.info(event="request_completed", n=n, level="info", timestamp=1_700_000_000.25)
    writer.close()

    lines = _lines(stream)
    assert [line["n"] for line in lines] == list(range(500))
    assert lines[0]["timestamp"] == "2023-11-14T22:13:20.250000Z"


def test_log_writer_writes_synchronously_after_close() -> None:
    """A line logged after close (late shutdown messages) is written at once."""
    stream = io.BytesIO()
    writer = LogWriter(stream, render_json_line)
    writer.close()

    writer.warning(event="worker_exiting", level="warning")

    assert _lines(stream) == [{"event": "worker_exiting", "level": "warning"}]


def test_log_writer_counts_and_reports_lines_dropped_while_its_reader_stalls() -> None:
    """With the stream blocked, logging never blocks: lines past the queue's capacity are
    dropped, counted in the metric, and the next write says how many."""
    stream = StalledStream()
    writer = LogWriter(stream, render_json_line, capacity=3, flush_interval_s=0.001)
    before = LOG_LINES_DROPPED._value.get()

    writer.info(event="first", level="info")
    assert stream.entered.wait(5)  # the writer thread is stuck writing "first"
    for n in range(5):
        writer.info(event="queued", n=n, level="info")
    stream.release.set()
    writer.close()

    lines = _lines(stream)
    assert [line["event"] for line in lines] == [
        "first",
        "log_lines_dropped",
        "queued",
        "queued",
        "queued",
    ]
    assert lines[1]["dropped"] == 2
    assert [line.get("n") for line in lines[2:]] == [0, 1, 2]
    assert LOG_LINES_DROPPED._value.get() - before == 2
