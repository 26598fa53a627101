"""The log of a real server from start to SIGTERM: JSON lines with the promised fields."""

from __future__ import annotations

import datetime as dt
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import joblib
import orjson
import pytest
import sklearn

from modelserve.demo import FEATURES, LABELS
from tests.e2e.conftest import RunningServer, write_config

pytestmark = pytest.mark.e2e

SETOSA = [5.1, 3.5, 1.4, 0.2]
Line = dict[str, object]


@dataclass
class Session:
    """What the module's server was asked, what it answered, and everything it logged."""

    answers: dict[str, httpx.Response]
    lines: list[Line]
    raw: list[bytes]
    exit_code: int


@pytest.fixture(scope="module")
def session(
    serve_modelserve_module: Callable[..., RunningServer],
    demo_models_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Session:
    """Start a server, send one request of each kind, stop it with SIGTERM, keep its log."""
    model = {
        "name": "iris",
        "path": str(demo_models_dir / "iris.joblib"),
        "labels": LABELS,
        "feature_names": FEATURES,
        "feature_ranges": {"sepal_length": [4.0, 8.0]},
    }
    directory = tmp_path_factory.mktemp("logging")
    old = {"name": "old", "path": str(_old_sklearn_pickle(demo_models_dir, directory))}
    config = write_config(directory, {"models": [model, old], "cache": {"backend": "none"}})
    server = serve_modelserve_module(config)
    url = server.base_url
    answers = {
        "predict": httpx.post(
            url + "/predict", json={"features": SETOSA}, headers={"X-Request-ID": "log-predict"}
        ),
        "batch": httpx.post(
            url + "/predict-batch",
            json={"batch": [SETOSA] * 4},
            headers={"X-Request-ID": "log-batch"},
        ),
        "out_of_range": httpx.post(
            url + "/predict",
            json={"features": [42.0, 3.5, 1.4, 0.2]},
            headers={"X-Request-ID": "log-range"},
        ),
        "error": httpx.post(url + "/predict", json={"features": [1.0]}),
        "anonymous": httpx.get(url + "/health"),
    }
    exit_code = server.stop()
    raw = [line for line in server.log_path.read_bytes().splitlines() if line.strip()]
    return Session(answers, server.log_lines(), raw, exit_code)


def _old_sklearn_pickle(demo_models_dir: Path, directory: Path) -> Path:
    """The demo pipeline as if pickled by another scikit-learn: unpickling it warns."""
    data = pickle.dumps(joblib.load(demo_models_dir / "iris.joblib"))
    current = sklearn.__version__.encode()
    other = (b"1" if current.startswith(b"0") else b"0") + current[1:]
    path = directory / "old.pkl"
    path.write_bytes(data.replace(current, other))
    return path


def access_line(session: Session, request_id: str) -> Line:
    (line,) = [
        line
        for line in session.lines
        if line["event"] == "request_completed" and line.get("request_id") == request_id
    ]
    return line


def events(session: Session, name: str) -> list[Line]:
    return [line for line in session.lines if line["event"] == name]


def test_every_line_is_json_with_timestamp_and_level(session: Session) -> None:
    """Each line the process wrote, stderr included, is a JSON object with timestamp and level."""
    assert len(session.raw) > 5
    for raw in session.raw:
        line = orjson.loads(raw)
        assert isinstance(line, dict), raw
        assert line["level"] in ("debug", "info", "warning", "error", "critical"), raw
        stamp = dt.datetime.fromisoformat(str(line["timestamp"]))
        assert stamp.utcoffset() == dt.timedelta(0), raw


def test_library_warnings_are_json_lines(session: Session) -> None:
    """A Python warning (an old scikit-learn pickle loading) is a JSON warning line, not stderr."""
    warnings = [line for line in session.lines if "InconsistentVersionWarning" in str(line)]
    assert warnings, "the old pickle did not warn"
    assert all(line["level"] == "warning" for line in warnings)


def test_access_line_has_request_fields(session: Session) -> None:
    """The access line has request_id, method, path, status and latency_ms."""
    line = access_line(session, "log-predict")
    assert (line["method"], line["path"], line["status"]) == ("POST", "/predict", 200)
    assert isinstance(line["latency_ms"], float)


def test_prediction_line_adds_model_fields(session: Session) -> None:
    """A /predict line adds model, model_version, batch_size, prediction and confidence."""
    line = access_line(session, "log-predict")
    body = session.answers["predict"].json()
    assert (line["model"], line["model_version"], line["batch_size"]) == ("iris", "1", 1)
    assert (line["prediction"], line["confidence"]) == (body["prediction"], body["confidence"])


def test_batch_line_adds_per_sample_latency(session: Session) -> None:
    """A /predict-batch line adds its batch size and the average latency per sample."""
    line = access_line(session, "log-batch")
    assert (line["model"], line["batch_size"]) == ("iris", 4)
    assert isinstance(line["avg_latency_per_sample_ms"], float)


def test_error_line_records_status(session: Session) -> None:
    """A refused request is logged with its status."""
    request_id = session.answers["error"].headers["x-request-id"]
    assert access_line(session, request_id)["status"] == 400


def test_request_id_round_trip(session: Session) -> None:
    """A sent X-Request-ID comes back in the header and body and is the log line's id."""
    answer = session.answers["predict"]
    assert answer.headers["x-request-id"] == "log-predict"
    assert answer.json()["request_id"] == "log-predict"
    assert access_line(session, "log-predict")["path"] == "/predict"


def test_request_id_generated_when_absent(session: Session) -> None:
    """Without X-Request-ID the server generates one, returns it and logs it."""
    generated = session.answers["anonymous"].headers["x-request-id"]
    assert len(generated) >= 16
    assert access_line(session, generated)["path"] == "/health"


def test_out_of_range_feature_is_served_and_logged(session: Session) -> None:
    """A value outside its declared range is served normally and logged as a warning."""
    assert session.answers["out_of_range"].status_code == 200
    (warning,) = events(session, "feature_out_of_range")
    assert warning["level"] == "warning"
    assert (warning["feature"], warning["value"]) == ("sepal_length", 42.0)
    assert warning["request_id"] == "log-range"


def test_startup_lines_for_model_load_and_warm_up(session: Session) -> None:
    """Startup logs the model load and warm-up with their durations."""
    (loading, _) = events(session, "model_loading")
    (loaded, _) = events(session, "model_loaded")
    assert (loading["model"], loaded["model"], loaded["model_version"]) == ("iris", "iris", "1")
    assert isinstance(loaded["load_ms"], float)
    assert isinstance(loaded["warmup_ms"], float)


def test_shutdown_line_and_clean_exit(session: Session) -> None:
    """SIGTERM is logged, the drain is logged with its duration, and the process exits 0."""
    assert session.exit_code == 0
    (requested,) = events(session, "shutdown_requested")
    (stopped,) = events(session, "server_stopped")
    assert requested["signal"] == "SIGTERM"
    assert isinstance(stopped["drain_ms"], float)
    assert session.lines.index(stopped) > session.lines.index(requested)
