"""The one settings tree, read from flags > ``MODELSERVE_*`` environment > YAML file > defaults.

Nested sections are plain models; the root is a ``BaseSettings`` so that
``MODELSERVE_SERVER__PORT=9000`` overrides ``server.port``. Build it with :func:`load_settings`.
"""

from __future__ import annotations

import ipaddress
import math
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from limits import parse_many
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

CLASS_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
"""``package.module:ClassName``, the path of a ``format: python`` model."""
ModelFormat = Literal[
    "auto",
    "sklearn",
    "skops",
    "onnx",
    "torchscript",
    "xgboost",
    "lightgbm",
    "catboost",
    "mlflow",
    "python",
]
TaskKind = Literal["auto", "classifier", "regressor"]
Scope = Literal["predict", "admin"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=False)


class BatchingConfig(_Section):
    """Dynamic batching and backpressure for one model version."""

    enabled: bool = True
    """Coalesce concurrent requests into one model call. Off: each request is its own call."""
    max_batch_size: int = Field(64, ge=1, le=100_000)
    """Most rows in one model call coalesced from several requests."""
    max_request_rows_per_call: int = Field(1024, ge=1, le=100_000)
    """A request of more than `max_batch_size` rows is computed alone, in model calls of up to
    this many rows (at least `max_batch_size`) rather than split into batches. Set it to
    `max_batch_size` for a model that cannot take larger calls."""
    max_delay_ms: float = Field(2.0, ge=0, le=10_000)
    """Longest a queued row waits for companions once the model is free (never when idle)."""
    max_queue_rows: int = Field(2048, ge=1)
    """Rows allowed to wait; beyond it requests are refused at once with 503 overloaded."""
    timeout_ms: float = Field(10_000, gt=0)
    """Deadline of a request from enqueue to result: 504 queue_timeout or inference_timeout.
    Rows that would be computed past 30 % of it, at the recent rate, get 503 overloaded."""
    inference_threads: int = Field(1, ge=1, le=64)
    """Threads running model calls for this version (batches in flight at once)."""


class PreprocessorConfig(_Section):
    """A fitted transformer applied server-side before the model (clients send raw features)."""

    path: Path
    """joblib/pickle or .skops file of a fitted sklearn transformer or Pipeline."""
    sha256: str | None = None
    """Pinned digest, verified before the file is deserialized."""
    skops_trusted_types: list[str] = Field(default_factory=list)
    """Types a .skops pre-processor may instantiate beyond skops' safe defaults."""


FeatureType = Literal["float", "int", "bool", "string", "category"]


class FeatureConfig(_Section):
    """One named input of a model with typed features (see Typed features)."""

    name: str = Field(min_length=1, max_length=256)
    """Column name, as the model was trained on it."""
    type: FeatureType = "float"
    """`float`, `int` (whole numbers), `bool`, `string` or `category` (one of `categories`)."""
    categories: list[str | int] | None = None
    """Allowed values of a `category` feature, in the training order."""
    unknown: Literal["error", "ignore"] = "error"
    """A `category` value outside `categories`: refused (400), or passed on as missing."""
    nullable: bool = False
    """`null` (or leaving the feature out) is accepted and passed as NaN/None."""
    range: tuple[float, float] | None = None
    """Expected [min, max] of a number; values outside are served but logged."""

    @model_validator(mode="after")
    def _check_categories(self) -> FeatureConfig:
        if (self.type == "category") != (self.categories is not None):
            raise ValueError("categories go with type: category, and it needs them")
        if self.categories is not None and not self.categories:
            raise ValueError(f"feature {self.name}: categories must not be empty")
        if self.range is not None and self.type not in ("float", "int"):
            raise ValueError(f"feature {self.name}: only float and int features take a range")
        return self


class ModelConfig(_Section):
    """One served model version."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    """Name used in the API (`?model=`)."""
    version: str = Field("1", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
    """Version label used in the API (`?model_version=`)."""
    path: Path
    """Model file or MLflow model directory; `format: python`: `package.module:ClassName`.
    Only configured paths are loaded; requests cannot."""
    format: ModelFormat = "auto"
    """Runtime; `auto`: a folder with an MLmodel file is mlflow, else by extension (see Formats)."""
    sha256: str | None = None
    """Pinned hex digest of the file (of a directory: its manifest); a mismatch refuses to load."""
    default: bool = False
    """This version answers when a request names none (else the first listed version)."""
    required: bool = True
    """Readiness waits for this version; a failed optional version does not fail /ready."""
    task: TaskKind = "auto"
    """classifier (labels + probabilities) or regressor (numbers); `auto` asks the model."""
    labels: list[str] | None = None
    """Names of the classes in model output order; default: the model's own classes."""
    feature_names: list[str] | None = None
    """Enables `{"features": {"name": value}}` and names columns in errors and logs."""
    feature_ranges: dict[str, tuple[float, float]] | None = None
    """Expected [min, max] per feature name; values outside are served but logged."""
    n_features: int | None = Field(None, ge=1)
    """Input width when the artifact does not declare it (TorchScript)."""
    features: list[FeatureConfig] | None = None
    """Typed features in the model's column order: requests send named values of these types
    and the model gets a pandas DataFrame. Default: read from a fitted scikit-learn Pipeline
    or ColumnTransformer when it has string, categorical or imputed columns."""
    load_timeout_s: float = Field(300.0, gt=0)
    """Longest a load plus warm-up may take; past it the version fails to load (503 with the
    reason) while the others serve. Separate from the request deadline `batching.timeout_ms`."""
    warmup_input: list[list[float]] | None = None
    """Rows used for the warm-up call; default: one row of zeros (ranges' midpoints if given)."""
    skops_trusted_types: list[str] = Field(default_factory=list)
    """Types a .skops file may instantiate beyond skops' safe defaults."""
    torch_device: Literal["cpu", "cuda", "auto"] = "cpu"
    """TorchScript device; `auto` uses CUDA when available."""
    torch_output: Literal["auto", "logits", "probabilities", "raw"] = "auto"
    """How to read a TorchScript output: logits get a softmax, raw values are regression."""
    label_from: Literal["argmax", "predict"] = "argmax"
    """Label from argmax of probabilities (one model call) or from a separate predict() call."""
    top_k: int | None = Field(None, ge=1)
    """Default number of probabilities returned (all when unset); `?top_k=` overrides."""
    output_round: int | None = Field(None, ge=0, le=12)
    """Round regression outputs to this many decimals."""
    output_clip: tuple[float, float] | None = None
    """Clip regression outputs to [min, max]."""
    preprocessor: PreprocessorConfig | None = None
    """Optional server-side feature transformer (not with `format: python`: use its hooks)."""
    artifacts: Path | None = None
    """`format: python`: folder handed to the class's `load(artifacts_dir)` (else `None`)."""
    artifacts_sha256: str | None = None
    """`format: python`: pinned digest of the `artifacts` folder (its manifest, as for an
    MLflow directory); a mismatch refuses to load."""
    code_dir: Path | None = None
    """`format: python`: folder the class's module is imported from when no installed package
    has it; default: the config file's folder."""
    profile: Path | None = None
    """Reference profile JSON (made by `modelserve profile`) for drift signals."""
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    """Batching and backpressure."""
    isolation: Literal["thread", "process"] = "thread"
    """Where model calls run: `thread`, the serving process's inference threads; `process`, a
    child process per inference thread, built from the verified bytes, so a model whose
    predict holds the GIL (a scikit-learn forest) leaves the event loop its own core. Float
    features only; not with `format: python`."""

    @field_validator("sha256", "artifacts_sha256")
    @classmethod
    def _check_digest(cls, value: str | None) -> str | None:
        if value is not None and (
            len(value) != 64 or any(c not in "0123456789abcdef" for c in value.lower())
        ):
            raise ValueError("sha256 must be 64 hexadecimal characters")
        return value.lower() if value else value

    @model_validator(mode="after")
    def _check_python(self) -> ModelConfig:
        if self.format != "python":
            if self.artifacts is not None or self.artifacts_sha256 or self.code_dir is not None:
                raise ValueError("artifacts, artifacts_sha256 and code_dir are for format python")
            return self
        if self.isolation == "process":
            raise ValueError("format python loads its own files: isolation process needs a file")
        if not CLASS_PATH.match(str(self.path)):
            raise ValueError(f"format python needs path package.module:ClassName, not {self.path}")
        if self.preprocessor is not None:
            raise ValueError("format python takes no preprocessor: give the class preprocess()")
        if self.artifacts_sha256 and self.artifacts is None:
            raise ValueError("artifacts_sha256 pins the artifacts folder: set artifacts too")
        return self

    @field_validator("name")
    @classmethod
    def _check_name_not_reserved(cls, value: str) -> str:
        reason = RESERVED_MODEL_NAMES.get(value)
        if reason is not None:
            raise ValueError(f"the model name {value!r} is reserved: {reason}; choose another")
        return value


RESERVED_MODEL_NAMES: dict[str, str] = {
    "stats": "GET /v2/models/stats is the Open Inference Protocol's statistics of every "
    "model, so that model's metadata could never be reached there",
}
"""Names a model cannot take, because a fixed path of the API would shadow its own."""


class RoutingConfig(_Section):
    """How requests that name no version are spread over a model's versions."""

    weights: dict[str, float] | None = None
    """Canary split, e.g. {"1.0": 90, "2.0": 10}; unset: everything to the default version."""
    sticky: bool = False
    """Hash the caller (API key or X-Client-ID) so one caller always gets one version."""
    shadow: str | None = None
    """Version that gets a copy of live traffic off the request path; its answers are compared."""
    shadow_tolerance: float = Field(0.0, ge=0)
    """Regressors: a shadow answer within this absolute difference of the live one agrees."""
    shadow_max_pending: int = Field(64, ge=1, le=100_000)
    """Shadow requests of this model in progress at once; more are dropped and counted."""

    @field_validator("weights")
    @classmethod
    def _check_weights(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None and (any(w < 0 for w in value.values()) or sum(value.values()) <= 0):
            raise ValueError("weights must be non-negative and not all zero")
        if value is not None and not all(math.isfinite(w) for w in value.values()):
            raise ValueError("weights must be finite numbers")
        return value


class ServerSettings(_Section):
    """HTTP serving and process lifecycle."""

    host: str = "127.0.0.1"
    """Interface to bind. Beyond loopback, `serve` needs auth on or `allow_unauthenticated`."""
    allow_unauthenticated: bool = False
    """Serve on a non-loopback address with auth off (something in front authenticates)."""
    port: int = Field(8000, ge=0, le=65535)
    """TCP port (0 picks a free one)."""
    workers: int = Field(1, ge=1, le=64)
    """Processes; more than 1 runs gunicorn with uvicorn workers."""
    log_format: Literal["json", "console"] = "json"
    """JSON lines for machines, console for humans."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Lowest level written."""
    access_log: bool = True
    """One log line per request (HTTP and gRPC)."""
    grpc_port: int | None = Field(None, ge=0, le=65535)
    """Serve the Open Inference Protocol over gRPC on this port too (0 picks a free one;
    unset: no gRPC)."""
    access_log_probes: bool = True
    """Include /health and /ready (and gRPC ServerLive, ServerReady, ModelReady) in the access
    log; false quiets only the probes."""
    max_body_bytes: int | None = Field(None, ge=1024)
    """Largest request body (HTTP) or message (gRPC); larger ones get 413 or
    RESOURCE_EXHAUSTED. Unset: twice what `max_batch_rows` JSON rows of the widest model take,
    plus 64 KiB (a width the config does not declare counts as 100 features)."""
    max_batch_rows: int = Field(1000, ge=1, le=100_000)
    """Most rows in one /predict-batch or Open Inference Protocol request. A /predict-batch
    body with more rows, or more values than this many rows of the widest model, is refused
    before it is parsed (declare `n_features` for models wider than 100 that do not say)."""
    max_inflight_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    """Request body bytes handled at once (by Content-Length); beyond, 503 overloaded at once."""
    grace_period_s: float = Field(25.0, ge=0)
    """After SIGTERM: longest time to finish accepted requests before exiting (requests still
    waiting for a model call 0.5 s before it ends are answered 503 `shutting_down`)."""
    prestop_delay_s: float = Field(0.0, ge=0)
    """After SIGTERM: keep serving this long with /ready at 503 before draining."""
    strict: bool = False
    """Exit non-zero at startup when any model fails to load, instead of serving 503 for it."""
    metrics_enabled: bool = True
    """Serve Prometheus metrics on /metrics."""
    docs_enabled: bool = True
    """Serve /docs (Swagger UI, assets from the package) and /openapi.json."""
    max_requests: int = Field(0, ge=0)
    """Recycle a gunicorn worker after this many requests (0: never)."""
    probe_port: int | None = Field(None, ge=0, le=65535)
    """Port of the probe listener (/health, /ready, /metrics answered off the serving loop,
    by the gunicorn master with workers); unset: probes only on the main port."""
    liveness_stall_s: float = Field(30.0, gt=0)
    """Probe port: /health fails once the serving loop has not reported for this long."""
    header_timeout_s: float = Field(10.0, gt=0)
    """Close a connection whose request line and headers have not all arrived this long after
    it opened (or after a kept-alive request's first byte)."""
    body_timeout_s: float = Field(30.0, gt=0)
    """Answer 408 `body_timeout` and close the connection when a request body has not all
    arrived this long after its headers (checked every 0.1 s)."""
    keep_alive_s: int = Field(75, ge=1)
    """Close a kept-alive connection idle this long. Longer than clients keep idle
    connections (httpx: 5 s), so a client never reuses one the server is closing: with both at
    5 s a loaded server closed connections its clients were already sending on (a reset)."""
    max_connections: int = Field(1024, ge=1)
    """Open connections (and requests in progress) per process; requests beyond it get 503
    overloaded with Retry-After, before they are read."""
    max_loop_lag_ms: float = Field(500.0, gt=0)
    """While the event loop runs this far behind, requests with a body get 503 overloaded
    with Retry-After before they are read; probes and bodiless requests are still served."""
    max_accept_queue: int = Field(64, ge=1)
    """While more connections than this wait to be accepted (Linux), requests with a body
    get 503 overloaded with Retry-After before they are read, as for `max_loop_lag_ms`."""
    watch_config: bool = False
    """Re-read the config file when it changes (an edit, or a Kubernetes ConfigMap's symlink
    swap) and serve its models and routing: new versions load and warm up before they take
    traffic, removed ones drain; a file that does not load is rejected and the old one keeps
    serving. SIGHUP does the same on demand, watched or not."""
    watch_interval_s: float = Field(1.0, gt=0, le=300)
    """How often a watched config file is checked for a change (its inode, mtime and size)."""


class ControlSettings(_Section):
    """How admin changes reach every process of the service (see the README, "Running a fleet")."""

    store: Literal["auto", "redis", "local"] = "auto"
    """Where the desired state lives: `redis` (at `redis_url`, shared by every replica and
    worker), `local` (a file in the server's run directory, shared by its gunicorn workers;
    in memory for one process); `auto`: redis when `redis_url` is set, else local."""
    redis_prefix: str = Field("modelserve:control:", min_length=1, max_length=128)
    """Prefix of the control keys and channel in Redis (separates deployments sharing one)."""
    wait_s: float = Field(2.0, ge=0, le=60)
    """How long an admin call waits for the other processes to apply its change before it
    answers with how many did (the rest are pending, and converge later)."""
    poll_interval_s: float = Field(0.1, gt=0, le=10)
    """How often a process checks the local state file for a change (an mtime check)."""
    reconcile_interval_s: float = Field(1.0, gt=0, le=300)
    """How often a process re-reads the desired state even without a notification, so a
    missed Redis message or a reconnect still converges."""
    heartbeat_s: float = Field(1.0, gt=0, le=60)
    """How often a process reports the state version it applied; a process silent for three
    heartbeats no longer counts as part of the service."""


class CacheSettings(_Section):
    """Prediction cache keyed by model, version and the validated row's bytes."""

    backend: Literal["none", "memory", "redis"] = "memory"
    """`memory` is per process; `redis` is shared by every replica."""
    maxsize: int = Field(10_000, ge=1)
    """Entries kept by the memory backend (LRU beyond it)."""
    ttl_s: float = Field(300.0, gt=0)
    """Lifetime of an entry."""
    redis_timeout_ms: float = Field(50.0, gt=0)
    """Slower Redis answers are treated as misses; the request never fails for the cache."""
    redis_prefix: str = "modelserve:cache:"
    """Prefix of every cache key in Redis (separates deployments sharing one Redis)."""
    key_secret: SecretStr | None = None
    """Secret the cache keys derive from, so they cannot be computed from the config (at least
    32 characters; needed by `redis`, the same on every replica; memory: random per process)."""

    @field_validator("key_secret")
    @classmethod
    def _check_key_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("cache.key_secret must be at least 32 characters")
        return value


class RateLimitSettings(_Section):
    """Per-caller request limits (the `limits` package)."""

    enabled: bool = False
    """Off by default."""
    storage: Literal["memory", "redis"] = "memory"
    """`redis` shares the counters between replicas."""
    strategy: Literal["moving-window", "fixed-window"] = "moving-window"
    """Counting strategy."""
    predict: str = "100/minute"
    """Limit of the `predict` operation (POST /predict)."""
    predict_batch: str = "10/minute"
    """Limit of the `predict_rows` operation (POST /predict-batch)."""
    admin: str = "60/minute"
    """Limit of the `admin` operation (every admin API call)."""
    count_rows: bool = False
    """Count `predict_rows` by rows instead of requests (1 before the body is read, the rest
    after)."""
    trusted_proxies: list[str] = Field(default_factory=list)
    """Addresses/CIDRs whose X-Forwarded-For is honoured; list the proxies themselves (/32)."""
    fail_open: bool = True
    """When storage is unreachable: allow (true) or refuse with 503 (false)."""
    redis_timeout_ms: float = Field(100.0, gt=0)
    """Slower Redis answers count as unreachable (then `fail_open` decides)."""
    redis_prefix: str = "modelserve:ratelimit"
    """Prefix of every rate-limit key in Redis."""

    @field_validator("predict", "predict_batch", "admin")
    @classmethod
    def _check_limit(cls, value: str) -> str:
        try:
            parse_many(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit like '100/minute': {value!r}") from exc
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"trusted_proxies: {item!r} is not an address or CIDR") from exc
        return value


class ApiKeyConfig(_Section):
    """One API key, stored as its sha256 so the config never holds the secret."""

    name: str
    """Who holds it (appears in logs instead of the key)."""
    sha256: str | None = None
    """sha256 hex digest of the key."""
    key: SecretStr | None = None
    """The key itself (prefer sha256; useful from a secret-mounted env var)."""
    scopes: list[Scope] = Field(default_factory=lambda: list[Scope](["predict"]))
    """What the key may do."""

    @field_validator("sha256")
    @classmethod
    def _check_key_digest(cls, value: str | None) -> str | None:
        if value is not None and (
            len(value) != 64 or any(c not in "0123456789abcdef" for c in value.lower())
        ):
            raise ValueError("sha256 must be the 64 hexadecimal characters of the key's digest")
        return value.lower() if value else value

    @model_validator(mode="after")
    def _one_of(self) -> ApiKeyConfig:
        if (self.sha256 is None) == (self.key is None):
            raise ValueError(f"API key {self.name!r}: give exactly one of sha256 or key")
        return self


class AuthSettings(_Section):
    """API keys. Off unless keys are configured and enabled."""

    enabled: bool = False
    """Require a key on prediction and admin routes."""
    keys: list[ApiKeyConfig] = Field(default_factory=list)
    """Accepted keys."""
    protect_probes: bool = False
    """Require a key (any scope) on /health and /ready too."""
    protect_metrics: bool = True
    """Require a key (any scope) on /metrics, /stats, /dashboard and the V2 statistics routes
    (/v2/models/stats, /v2/models/{name}/stats, /v2/models/{name}/versions/{version}/stats),
    with auth on."""
    failed_auth_limit: str = "30/minute"
    """Failed authentications allowed per client address; then 429 until the window ends.
    Counted once per server (every port, every worker)."""
    failed_auth_store: Literal["auto", "redis", "server"] = "auto"
    """Where failed authentications are counted: `redis` (at `redis_url`, one count for every
    replica; `rate_limit.fail_open` and `redis_timeout_ms` decide when it is unreachable),
    `server` (shared by the processes of one server only); `auto`: redis when `redis_url` is
    set."""

    @field_validator("failed_auth_limit")
    @classmethod
    def _check_failed_auth_limit(cls, value: str) -> str:
        try:
            items = parse_many(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit like '30/minute': {value!r}") from exc
        if len(items) != 1:
            raise ValueError(f"one limit like '30/minute', got {value!r}")
        return value


class DriftSettings(_Section):
    """Live drift signals against each version's reference profile."""

    window: int = Field(1000, ge=10, le=1_000_000)
    """Rows in each version's rolling drift window (and latencies kept for latency_stats)."""
    min_rows: int = Field(100, ge=1)
    """Rows the window needs before PSI is computed (fewer rows give noisy PSI)."""
    psi_threshold: float = Field(0.2, gt=0)
    """PSI above which a `drift_detected` warning is logged (once per crossing)."""
    interval_s: float = Field(30.0, gt=0)
    """Period of the `drift_stats` and `latency_stats` log lines, per process."""


class TracingSettings(_Section):
    """OpenTelemetry spans (needs the `tracing` extra)."""

    enabled: bool = False
    """Emit spans for request, queue wait and inference."""
    service_name: str = "modelserve"
    """Resource service.name."""


class Settings(BaseSettings):
    """Everything modelserve reads. See the README's configuration reference."""

    model_config = SettingsConfigDict(
        env_prefix="MODELSERVE_",
        env_nested_delimiter="__",
        extra="forbid",
        use_attribute_docstrings=True,
    )

    server: ServerSettings = Field(default_factory=ServerSettings)
    """HTTP serving and lifecycle."""
    models: list[ModelConfig] = Field(default_factory=list)
    """Served model versions."""
    default_model: str | None = None
    """Model answering requests that name none (default: the first listed)."""
    routing: dict[str, RoutingConfig] = Field(default_factory=dict)
    """Per-model version routing (canary weights, stickiness, shadow)."""
    require_sha256: bool = False
    """Refuse to load a pickle/joblib or TorchScript file (formats whose loading runs code from
    the file) unless its `sha256` is pinned, and a `format: python` model unless its module's
    source (`sha256`) and its `artifacts` folder (`artifacts_sha256`) are; ONNX and .skops load
    unpinned."""
    redis_url: SecretStr | None = None
    """Redis for the shared cache, rate limits and control state, e.g. redis://redis:6379/0."""
    cache: CacheSettings = Field(default_factory=CacheSettings)
    """Prediction cache."""
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    """Rate limits."""
    auth: AuthSettings = Field(default_factory=AuthSettings)
    """API keys."""
    drift: DriftSettings = Field(default_factory=DriftSettings)
    """Drift signals."""
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    """Tracing."""
    control: ControlSettings = Field(default_factory=ControlSettings)
    """Propagation of admin changes to every process."""

    _config_data: ClassVar[dict[str, Any] | None] = None
    _source: tuple[Path | None, dict[str, Any]] | None = None
    """How load_settings built this tree (file and overrides), so pins and the whole file can
    be re-read."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._config_data is not None:
            sources.append(InitSettingsSource(settings_cls, init_kwargs=cls._config_data))
        return tuple(sources)

    def body_limit_bytes(self) -> int:
        """``server.max_body_bytes``, or the limit derived from the rows and the widest model.

        A JSON value costs at most ~24 bytes (``-1.2345678901234567e-300,``) plus, in named
        rows, its quoted name; the limit doubles that for whitespace and adds 64 KiB.
        """
        if self.server.max_body_bytes is not None:
            return self.server.max_body_bytes
        per_row = max((_row_bytes(model) for model in self.models), default=_row_bytes(None))
        return 2 * self.server.max_batch_rows * per_row + _BODY_HEADROOM_BYTES

    def widest_model(self) -> int:
        """The most features any configured model declares (100 for one that declares none)."""
        return max((_width(model) for model in self.models), default=_UNDECLARED_WIDTH)

    @model_validator(mode="after")
    def _check_models(self) -> Settings:
        seen: set[tuple[str, str]] = set()
        for model in self.models:
            key = (model.name, model.version)
            if key in seen:
                raise ValueError(f"model {model.name!r} version {model.version!r} is listed twice")
            seen.add(key)
        names = {m.name for m in self.models}
        if self.default_model is not None and self.default_model not in names:
            raise ValueError(f"default_model {self.default_model!r} is not a configured model")
        for name, route in self.routing.items():
            versions = {m.version for m in self.models if m.name == name}
            if name not in names:
                raise ValueError(f"routing for unknown model {name!r}")
            named = set(route.weights or {}) | ({route.shadow} if route.shadow else set())
            if unknown := named - versions:
                raise ValueError(f"routing for {name!r} names unknown versions {sorted(unknown)}")
        for name in names:
            defaults = [m for m in self.models if m.name == name and m.default]
            if len(defaults) > 1:
                raise ValueError(f"model {name!r} has more than one default version")
        if self.server.probe_port is not None and self.server.probe_port == self.server.port != 0:
            raise ValueError("server.probe_port must differ from server.port")
        if self.auth.enabled and not self.auth.keys:
            raise ValueError(
                "auth.enabled needs at least one key in auth.keys "
                "(in the file, or as JSON in MODELSERVE_AUTH__KEYS)"
            )
        if self.redis_url is None:
            if self.cache.backend == "redis":
                raise ValueError("cache.backend is 'redis' but redis_url is not set")
            if self.rate_limit.enabled and self.rate_limit.storage == "redis":
                raise ValueError("rate_limit.storage is 'redis' but redis_url is not set")
            if self.control.store == "redis":
                raise ValueError("control.store is 'redis' but redis_url is not set")
            if self.auth.failed_auth_store == "redis":
                raise ValueError("auth.failed_auth_store is 'redis' but redis_url is not set")
        if self.cache.backend == "redis" and self.cache.key_secret is None:
            raise ValueError(
                "cache.backend redis needs cache.key_secret (MODELSERVE_CACHE__KEY_SECRET), "
                "the same on every replica, e.g. from `openssl rand -hex 32`"
            )
        return self


_VALUE_BYTES = 24
_UNDECLARED_WIDTH = 100
_BODY_HEADROOM_BYTES = 64 * 1024


def _row_bytes(model: ModelConfig | None) -> int:
    """The most bytes one tightly written JSON row of ``model`` needs."""
    if model is None:
        return _UNDECLARED_WIDTH * _VALUE_BYTES
    if model.feature_names:
        return sum(_VALUE_BYTES + len(name) + 4 for name in model.feature_names)
    return _width(model) * _VALUE_BYTES


def _width(model: ModelConfig) -> int:
    if model.feature_names:
        return len(model.feature_names)
    width = model.n_features or (len(model.warmup_input[0]) if model.warmup_input else None)
    return width or _UNDECLARED_WIDTH


def unauthenticated_exposure(settings: Settings) -> str | None:
    """Why serving ``settings`` would expose an unauthenticated API, or ``None`` when it is fine.

    Loopback addresses (and ``localhost``) are fine with auth off; any other address needs
    auth on or an explicit ``server.allow_unauthenticated``.
    """
    server = settings.server
    if settings.auth.enabled or server.allow_unauthenticated or _is_loopback(server.host):
        return None
    return (
        f"refusing to serve on {server.host} with auth off: anyone who can reach that address "
        "could use the API. Either turn auth on (auth.enabled: true with auth.keys, e.g. "
        "MODELSERVE_AUTH__ENABLED=true and MODELSERVE_AUTH__KEYS), or, when something in front "
        "of modelserve authenticates, pass --allow-unauthenticated "
        "(server.allow_unauthenticated: true)"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another host name: it may resolve to any interface


_PROBLEMS = {
    "extra_forbidden": "unknown setting (misspelt?)",
    "missing": "required setting is missing",
}


def describe_invalid_settings(exc: ValidationError) -> str:
    """One line per problem, each naming its key (``models[0].path: ...``)."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        key = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]
        ).lstrip(".")
        message = _PROBLEMS.get(error["type"], error["msg"].removeprefix("Value error, "))
        lines.append(f"{key}: {message}" if key else message)
    return "invalid configuration:\n" + "\n".join(f"  {line}" for line in lines)


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build settings with precedence flags (``overrides``) > env > YAML file > defaults.

    Overrides use the same nested shape as the file (``server={"port": 9000}``) and are merged
    into the file's sections rather than replacing them. Relative model paths in a file are
    resolved against the file's directory, so a config can travel with its models.
    """
    path = Path(config_file).resolve() if config_file is not None else None
    if path is not None and not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    Settings._config_data = _read_yaml(path) if path is not None else None
    try:
        base = Settings()
        merged = _deep_merge(base.model_dump(exclude_unset=True), overrides)
        settings = Settings(**merged) if overrides else base
    finally:
        Settings._config_data = None
    if path is not None:
        _resolve_paths(settings, path.parent)
    # The path as given, not resolved: a Kubernetes ConfigMap swaps the symlink behind it, and
    # reading it again must follow the swap (see modelserve.control.config_watch).
    settings._source = (Path(config_file).absolute() if config_file else None, overrides)
    return settings


def reread_pins(settings: Settings, config: ModelConfig) -> ModelConfig:
    """``config`` with the sha256 pins (model and pre-processor) that its source says now.

    The settings are built again exactly as :func:`load_settings` built them (same file, same
    environment, same overrides), so a pin edited in the YAML file is seen without a restart.
    Only the pins are taken: every other field keeps its running value. Settings not made by
    ``load_settings`` keep their pins. Raises ValueError when the source no longer lists it.
    """
    if settings._source is None:
        return config
    path, overrides = settings._source
    fresh = load_settings(path, **overrides)
    found = next(
        (m for m in fresh.models if (m.name, m.version) == (config.name, config.version)), None
    )
    if found is None:
        raise ValueError(f"the configuration no longer lists {config.name}:{config.version}")
    update: dict[str, Any] = {"sha256": found.sha256, "artifacts_sha256": found.artifacts_sha256}
    if config.preprocessor is not None:
        pin = found.preprocessor.sha256 if found.preprocessor is not None else None
        update["preprocessor"] = config.preprocessor.model_copy(update={"sha256": pin})
    return config.model_copy(update=update)


def _read_yaml(path: Path) -> dict[str, Any]:
    """The file's mapping; a ValueError naming the file when it is not YAML or not a mapping."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of settings, not a {type(data).__name__}")
    return data


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _resolve_paths(settings: Settings, root: Path) -> None:
    for model in settings.models:
        if model.format == "python":  # a class path; its module is found from code_dir
            model.code_dir = _under(root, model.code_dir or Path())
            if model.artifacts is not None:
                model.artifacts = _under(root, model.artifacts)
        else:
            model.path = _under(root, model.path)
        if model.preprocessor is not None:
            model.preprocessor.path = _under(root, model.preprocessor.path)
        if model.profile is not None:
            model.profile = _under(root, model.profile)


def _under(root: Path, path: Path) -> Path:
    return path if path.is_absolute() else (root / path).resolve()
