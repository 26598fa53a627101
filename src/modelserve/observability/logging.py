"""structlog configuration: JSON lines (orjson) to stdout, or a console renderer for humans.

JSON lines are rendered and written by :mod:`modelserve.observability.log_writer`'s thread:
the caller-side processors (context variables, level, the moment as a number, the exception)
run where a line is logged, the rest off the request path. The access line, one per request,
skips even those calls when the JSON pipeline is the one configured
(:func:`log_request_completed`).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, Literal

import orjson
import structlog

from modelserve.observability.log_writer import LogWriter, start_writer

LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
LOG_LEVELS["error"] = logging.ERROR


_second_text: tuple[int, str] = (0, "")


def utc_timestamp(now: float | None = None) -> str:
    """``now`` (default: this moment) as ISO-8601 UTC with microseconds
    (``2026-11-25T17:00:00.000000Z``).

    The text up to the second is formatted once a second: datetime formatting per log line and
    per response was a few percent of the single-row /predict path.
    """
    global _second_text
    if now is None:
        now = time.time()
    second = int(now)
    if second != _second_text[0]:
        text = dt.datetime.fromtimestamp(second, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second_text = (second, text)
    return f"{_second_text[1]}.{int((now - second) * 1_000_000):06d}Z"


def add_timestamp(
    logger: object, method_name: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """structlog processor: the ``timestamp`` key, as :func:`utc_timestamp`."""
    event_dict["timestamp"] = utc_timestamp()
    return event_dict


def _add_time(
    logger: object, method_name: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """structlog processor: the ``timestamp`` key as a number, formatted by the writer."""
    event_dict["timestamp"] = time.time()
    return event_dict


def _pass_on(
    logger: object, method_name: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """The last processor: the event goes to the writer's queue as it is (rendered there)."""
    return event_dict


_render_json = structlog.processors.JSONRenderer(serializer=orjson.dumps)
_CONTEXT_PREFIX = "structlog_"
"""The name prefix of structlog's context variables (``structlog.contextvars``)."""
_access_log = structlog.get_logger("modelserve.access")
_direct: tuple[list[structlog.types.Processor], LogWriter | None] | None = None
"""The JSON pipeline's processors and writer (None: info lines are off)."""


def log_request_completed(fields: dict[str, Any]) -> None:
    """Log the ``request_completed`` line with ``fields`` (and the request's context).

    With the JSON pipeline configured, the line is built here as one dict, exactly as the
    pipeline's processors would build it (fields, event, context variables, level, moment),
    and queued for the writer: this runs once per request, and structlog's bound logger, its
    processor calls and the keyword repacking were most of the access line's cost on the
    request path. Otherwise (console format, a test capturing logs, another configuration) it
    goes through structlog.
    """
    direct = _direct
    if (
        direct is None
        or structlog.get_config()["processors"] is not direct[0]
        or direct[0][-1] is not _pass_on
    ):
        _access_log.info("request_completed", **fields)
        return
    writer = direct[1]
    if writer is None:
        return
    fields["event"] = "request_completed"
    for var, value in contextvars.copy_context().items():
        if value is not Ellipsis and var.name.startswith(_CONTEXT_PREFIX):
            fields.setdefault(var.name[len(_CONTEXT_PREFIX) :], value)
    fields["level"] = "info"
    fields["timestamp"] = time.time()
    writer.put(fields)


def render_json_line(event: dict[str, object]) -> bytes:
    """One JSON line, as structlog's JSONRenderer with orjson writes it (without newline)."""
    stamp = event.get("timestamp")
    if isinstance(stamp, float):
        event["timestamp"] = utc_timestamp(stamp)
    line = _render_json(None, "", event)
    return line if isinstance(line, bytes) else line.encode()


def configure_logging(
    log_format: Literal["json", "console"] = "json",
    level: Literal["debug", "info", "warning", "error"] = "info",
) -> None:
    """Configure structlog once per process; every line has ``timestamp`` and ``level``."""
    global _direct
    _direct = None
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
    ]
    if log_format == "json":
        processors: list[structlog.types.Processor] = [
            *shared,
            _add_time,
            # Tracebacks without local variables: frames hold request features and secrets.
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            _pass_on,
        ]
        writer = start_writer(sys.stdout.buffer, render_json_line)
        factory: Callable[..., Any] = lambda *args: writer  # noqa: E731 (structlog's factory)
        _direct = (processors, writer if LOG_LEVELS[level] <= logging.INFO else None)
    else:
        processors = [
            *shared,
            add_timestamp,
            structlog.processors.format_exc_info,
            structlog.dev.ConsoleRenderer(),
        ]
        factory = structlog.PrintLoggerFactory(sys.stdout)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LOG_LEVELS[level]),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    _route_stdlib_logging(LOG_LEVELS[level])


def _route_stdlib_logging(level: int) -> None:
    """Send uvicorn's and gunicorn's own records through structlog so every line is JSON."""
    handler = logging.Handler()
    handler.emit = _emit  # type: ignore[method-assign]
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    # Python warnings (e.g. scikit-learn unpickling a model from another version) would
    # otherwise go to stderr as plain text; route them through logging as JSON lines.
    logging.captureWarnings(True)
    for name in ("uvicorn", "uvicorn.error", "gunicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    # uvicorn's own access log duplicates ours; ours carries request ids.
    logging.getLogger("uvicorn.access").handlers = []
    logging.getLogger("uvicorn.access").propagate = False
    logging.getLogger("gunicorn.access").propagate = False


_stdlib_log = structlog.get_logger("modelserve.server")


def _emit(record: logging.LogRecord) -> None:
    method = {
        logging.DEBUG: _stdlib_log.debug,
        logging.INFO: _stdlib_log.info,
        logging.WARNING: _stdlib_log.warning,
    }.get(record.levelno, _stdlib_log.error)
    method("server_message", logger=record.name, message=record.getMessage())
