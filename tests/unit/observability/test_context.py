"""RequestContext: request id, log context, access line and metrics for any transport."""

from __future__ import annotations

import io
import sys

import orjson
import pytest
import structlog
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from modelserve.observability.context import RequestContext, request_id_and_refusal
from modelserve.observability.log_writer import flush_all
from modelserve.observability.logging import configure_logging


@pytest.mark.parametrize(
    ("offered", "kept"),
    [(b"abc-123:x.y", True), (b"bad id", False), (b"x" * 129, False), (None, False)],
    ids=["token", "space", "too-long", "none"],
)
def test_request_id_keeps_only_safe_offered_ids(offered: bytes | None, kept: bool) -> None:
    """A client's id is kept when it is a safe token; otherwise a fresh 32-hex id is made."""
    headers = [] if offered is None else [(b"x-request-id", offered)]
    chosen, refused = request_id_and_refusal(headers)
    assert (chosen.encode() == offered) is kept
    assert (refused is None) is (kept or offered is None)
    if not kept:
        assert len(chosen) == 32


def test_request_context_binds_the_id_for_every_log_line() -> None:
    """Between begin and finish every log line carries the request id; after, none does."""
    log = structlog.get_logger("ctx-test")
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        context = RequestContext.begin([(b"x-request-id", b"req-1")], access_log=False)
        log.info("inside")
        context.finish(route="/ctx", method="GRPC", path="/ctx", status=200)
        log.info("outside")
    assert [e.get("request_id") for e in logs] == ["req-1", None]


def test_request_context_finish_counts_and_logs_the_request() -> None:
    """finish counts the request by route, method and status and writes one access line
    with the transport's extra fields."""
    labels = {"route": "/ctx/{name}", "method": "GRPC", "status": "404"}
    before = REGISTRY.get_sample_value("modelserve_http_requests_total", labels) or 0.0
    in_flight = REGISTRY.get_sample_value("modelserve_http_requests_in_flight")
    with capture_logs() as logs:
        context = RequestContext.begin([], access_log=True)
        assert REGISTRY.get_sample_value("modelserve_http_requests_in_flight") == (
            (in_flight or 0.0) + 1
        )
        context.finish(
            route="/ctx/{name}", method="GRPC", path="/ctx/a", status=404, grpc_code="NOT_FOUND"
        )
    assert REGISTRY.get_sample_value("modelserve_http_requests_total", labels) == before + 1
    assert REGISTRY.get_sample_value("modelserve_http_requests_in_flight") == in_flight
    (line,) = [e for e in logs if e["event"] == "request_completed"]
    assert (line["path"], line["status"], line["grpc_code"]) == ("/ctx/a", 404, "NOT_FOUND")


def _json_lines(monkeypatch: pytest.MonkeyPatch, level: str = "info") -> io.BytesIO:
    """configure_logging's JSON pipeline writing into the returned buffer."""
    stream = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(stream))
    configure_logging("json", level)  # type: ignore[arg-type]
    return stream


def _written(stream: io.BytesIO) -> list[dict[str, object]]:
    flush_all()
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_request_context_access_line_is_the_line_structlog_would_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The access line built directly for the JSON pipeline has the fields, order and values
    of the same line logged through structlog (all but the moment)."""
    stream = _json_lines(monkeypatch)
    context = RequestContext.begin([(b"x-request-id", b"req-7")], access_log=True)
    structlog.contextvars.bind_contextvars(model="m", model_version="2", prediction="setosa")
    structlog.get_logger("modelserve.access").info(
        "request_completed", method="POST", path="/p", status=200, latency_ms=1.5, cached=True
    )
    context.finish(route="/p", method="POST", path="/p", status=200, cached=True)
    via_structlog, direct = _written(stream)
    for line in (via_structlog, direct):
        assert isinstance(line.pop("timestamp"), str)
    via_structlog["latency_ms"] = direct["latency_ms"]
    assert list(direct.items()) == list(via_structlog.items())
    assert direct["request_id"] == "req-7"


def test_request_context_access_line_respects_the_log_level(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the level above info no access line is written, as for any info line."""
    stream = _json_lines(monkeypatch, "warning")
    RequestContext.begin([], access_log=True).finish(
        route="/p", method="POST", path="/p", status=200
    )
    assert _written(stream) == []
