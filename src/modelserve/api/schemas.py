"""Request and response bodies of the HTTP API (Pydantic; used for validation and /docs)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, Strict
from pydantic.config import JsonDict

from modelserve.settings import RoutingConfig

# Strict: "5.1" or true are type errors (422), not silently coerced numbers. JSON NaN,
# Infinity and 1e999 parse here and are refused by the inference layer with their position.
Number = Annotated[float, Strict()]
TYPED_VALUE_EXPECTED = "a number, a string, a boolean or null"


def _typed_value(value: object) -> object:
    if value is None or isinstance(value, str | int | float):  # bool is an int
        return value
    raise ValueError(TYPED_VALUE_EXPECTED)


TypedValue = Annotated[
    object, PlainValidator(_typed_value, json_schema_input_type=str | float | bool | None)
]
"""A typed feature's JSON value (a scalar); the model's schema checks it (see Typed features)."""
# Left to right: a row of numbers takes the float path as before (floats, validated natively);
# only a row with a string, boolean or null is read as typed values.
FeatureRow = Annotated[
    list[Number] | dict[str, Number] | dict[str, TypedValue], Field(union_mode="left_to_right")
]


class PredictRequest(BaseModel):
    """One row of features, positional or by name."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"features": [5.1, 3.5, 1.4, 0.2]}]},
    )

    features: FeatureRow = Field(
        description="Feature values in the model's order, or an object keyed by feature name."
    )


class PredictResponse(BaseModel):
    """The answer for one row."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "prediction": "setosa",
                    "confidence": 0.979,
                    "probabilities": {"setosa": 0.979, "versicolor": 0.021, "virginica": 0.0},
                    "model": "iris",
                    "model_version": "1",
                    "latency_ms": 0.41,
                    "timestamp": "2026-11-25T17:00:00.000000Z",
                    "request_id": "4f1c0e1b9a0a4d4e8d1f3f7f3c2a9b10",
                }
            ]
        }
    )

    prediction: str | float | list[float] = Field(
        description="Label for classifiers, number for regressors."
    )
    confidence: float | None = Field(None, description="Top-1 probability (classifiers).")
    probabilities: dict[str, float] | None = Field(None, description="Probability per label.")
    model: str
    model_version: str
    latency_ms: float = Field(description="Server time for this request.")
    timestamp: str = Field(description="UTC ISO-8601 time of the answer.")
    request_id: str


class BatchPredictRequest(BaseModel):
    """Several rows at once (1 to `server.max_batch_rows`)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"batch": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}]},
    )

    batch: list[FeatureRow] = Field(description="Rows of features, positional or by name.")


class BatchPredictResponse(BaseModel):
    """Answers for every row, in request order."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "predictions": ["setosa", "virginica"],
                    "confidences": [0.979, 0.944],
                    "model": "iris",
                    "model_version": "1",
                    "latency_ms": 0.52,
                    "timestamp": "2026-11-25T17:00:00.000000Z",
                    "request_id": "4f1c0e1b9a0a4d4e8d1f3f7f3c2a9b10",
                }
            ]
        }
    )

    predictions: list[str | float | list[float]]
    confidences: list[float] | None = Field(None, description="Top-1 probability per row.")
    probabilities: list[dict[str, float]] | None = Field(
        None, description="Per-row probabilities, only when `?probabilities=true`."
    )
    model: str
    model_version: str
    latency_ms: float
    timestamp: str
    request_id: str


class ErrorBody(BaseModel):
    """Every error response has this shape."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "detail": "expected 4 features, got 3",
                    "code": "wrong_feature_count",
                    "request_id": "4f1c0e1b9a0a4d4e8d1f3f7f3c2a9b10",
                }
            ]
        }
    )

    detail: str | list[Any] = Field(description="Human-readable message, or a list of problems.")
    code: str = Field(description="Stable machine-readable error code.")
    request_id: str | None = None
    model: str | None = Field(
        None, description="The model whose version answered, when a version had been chosen."
    )
    model_version: str | None = Field(
        None, description="That version (also in the `X-Model-Version` header)."
    )


_MODEL_VERSION_EXAMPLE: JsonDict = {
    "name": "iris",
    "version": "1",
    "format": "sklearn",
    "status": "ready",
    "reason": None,
    "is_default": True,
    "traffic_percent": 100.0,
    "shadow": False,
    "task": "classifier",
    "n_features": 4,
    "feature_names": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
    "labels": ["setosa", "versicolor", "virginica"],
    "load_ms": 12.3,
    "warmup_ms": 0.8,
}


class ModelVersionResponse(BaseModel):
    """One model version as GET /models shows it."""

    model_config = ConfigDict(json_schema_extra={"examples": [_MODEL_VERSION_EXAMPLE]})

    name: str
    version: str
    format: str
    platform: str | None = Field(
        None, description="Artifact kind once loaded, e.g. xgboost_json or mlflow_sklearn."
    )
    status: str = Field(description="loading, ready, failed or unloaded.")
    reason: str | None = Field(None, description="Why the version is not ready.")
    is_default: bool
    traffic_percent: float = Field(
        0.0, description="Share of the requests naming no version that this version answers."
    )
    shadow: bool = Field(False, description="Receives a copy of live traffic (shadow mode).")
    task: str | None
    n_features: int | None
    feature_names: list[str] | None
    feature_types: list[str] | None = Field(
        None, description="Declared input types, e.g. from an MLflow signature (double, long)."
    )
    labels: list[str] | None
    load_ms: float | None
    warmup_ms: float | None


class ControlView(BaseModel):
    """Which shared control state the answering process applied."""

    version: int = Field(description="The control state version this process applied in full.")
    process: str = Field(description="The answering process, `<host>:<pid>`.")


class ModelsResponse(BaseModel):
    """Every configured model version."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "default_model": "iris",
                    "models": [_MODEL_VERSION_EXAMPLE],
                    "control": {"version": 3, "process": "pod-a:812"},
                }
            ]
        }
    )

    default_model: str | None
    models: list[ModelVersionResponse]
    control: ControlView | None = None


class ProcessStatusBody(BaseModel):
    """A process that has not applied a control state version, and why (when it failed)."""

    process: str
    applied_version: int
    errors: list[str]


class ProcessReportBody(BaseModel):
    """What one live process reports about the control state."""

    process: str = Field(description="`<host>:<pid>`.")
    applied_version: int = Field(description="The last control state version applied in full.")
    seen_version: int = Field(description="The last version it tried (higher when it failed).")
    errors: list[str] = Field(description="What it could not apply of `seen_version`.")
    config_sha256: str | None = Field(description="The config file it serves (sha256).")


class ControlStateResponse(BaseModel):
    """The shared desired state's version and where every live process stands against it."""

    version: int = Field(description="The desired state's version (0: no change yet).")
    config_sha256: str | None = Field(
        description="The config file the desired state last started from."
    )
    in_sync: bool = Field(description="Every live process applied `version` in full.")
    processes: list[ProcessReportBody]


class FleetStatusBody(BaseModel):
    """How far an admin change got across the processes of the service."""

    version: int = Field(description="The control state version that holds the change.")
    processes: int = Field(description="Live processes of the service (reporting).")
    applied: int = Field(description="Processes that applied this version in full.")
    failed: list[ProcessStatusBody] = Field(
        description="Processes that tried this version and could not apply all of it."
    )
    pending: list[ProcessStatusBody] = Field(
        description="Processes that have not reached it yet (within `control.wait_s`)."
    )


class HealthResponse(BaseModel):
    """Liveness: the process serves. Says which model versions are ready."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ok",
                    "draining": False,
                    "uptime_s": 42.5,
                    "models": {"iris:1": "ready", "iris-onnx:1": "loading"},
                }
            ]
        }
    )

    status: str
    draining: bool
    uptime_s: float
    models: dict[str, str] = Field(description="`name:version` → status.")


class ReadyResponse(BaseModel):
    """Readiness: every required model is loaded and warmed, and the server is not draining."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"ready": True, "reasons": []}]})

    ready: bool
    reasons: list[str] = Field(default_factory=list)
    workers: int | None = Field(
        None, description="Under gunicorn: the workers ready (every one must be)."
    )


class RoutingRequest(RoutingConfig):
    """A model's complete new routing: the `routing.<model>` config section plus `default`.

    Omitted fields take their defaults (no weights, not sticky, no shadow), except `default`,
    which keeps the current default version when omitted.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"default": "1", "weights": {"1": 90, "2": 10}, "sticky": True},
                {"default": "1", "shadow": "2"},
            ]
        }
    )

    default: str | None = None
    """Version answering requests that name none when no weights are set (and the fallback)."""


class RoutingPatch(RoutingRequest):
    """Part of a model's routing: only the fields sent change, the others keep their values.

    `{"weights": null}` rolls a canary back and leaves `sticky` and `shadow` as they are.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"weights": None}, {"weights": {"1": 50, "2": 50}}, {"shadow": None}]
        }
    )


class RoutingResponse(BaseModel):
    """A model's routing as it is now."""

    model: str
    default: str
    weights: dict[str, float] | None
    sticky: bool
    shadow: str | None
    shadow_tolerance: float
    shadow_max_pending: int
    traffic_percent: dict[str, float] = Field(
        description="Share of the requests naming no version, per version, in percent."
    )
    control: FleetStatusBody | None = Field(
        None, description="After a change: how many processes applied it."
    )


class VersionActionResponse(BaseModel):
    """A model version after an admin load, reload or unload."""

    model: str
    version: str
    action: Literal["load", "reload", "unload"]
    status: str = Field(description="loading, ready, failed or unloaded.")
    changed: bool = Field(description="False when the version already was in the asked state.")
    load_ms: float | None = None
    warmup_ms: float | None = None
    control: FleetStatusBody | None = Field(
        None, description="How many processes of the service applied the change."
    )
