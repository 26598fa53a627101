"""configure_logging: JSON lines with timestamp and level; tracebacks without local values."""

from __future__ import annotations

import orjson
import pytest
import structlog

from modelserve.observability.log_writer import flush_all
from modelserve.observability.logging import configure_logging


def _fail_with_secret_local() -> None:
    row_value = "feature-value-31337"  # noqa: F841 - must not reach the log
    raise RuntimeError("model exploded")


def test_logging_json_lines_have_timestamp_and_level(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    """A JSON log line carries the event, its fields, an ISO timestamp and the level."""
    configure_logging("json", "info")
    structlog.get_logger("test").info("model_loaded", model="iris")
    flush_all()
    (line,) = capsysbinary.readouterr().out.splitlines()
    record = orjson.loads(line)
    assert record["event"] == "model_loaded"
    assert record["model"] == "iris"
    assert record["level"] == "info"
    assert record["timestamp"].endswith("Z")


def test_logging_tracebacks_omit_local_variables(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    """A logged exception shows its frames but never the values of their local variables."""
    configure_logging("json", "info")
    try:
        _fail_with_secret_local()
    except RuntimeError as exc:
        structlog.get_logger("test").error("batch_failed", exc_info=exc)
    flush_all()
    (line,) = capsysbinary.readouterr().out.splitlines()
    record = orjson.loads(line)
    assert "model exploded" in line.decode()
    assert record["exception"]
    assert b"feature-value-31337" not in line
