"""The desired state of every process, its version, and what each process reports.

Both are JSON documents that come back from Redis or from a shared file: nothing read is
trusted. :func:`parse_state` and :func:`parse_report` bound the size before parsing and
validate every field (names as the configuration allows them, finite bounded weights, a
bounded number of models and versions); a document that fails is refused with the reason.
"""

from __future__ import annotations

import math
import time
from typing import Annotated, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from modelserve.inference.coordination import ConfigAction, ControlAction, RoutingAction
from modelserve.settings import RoutingConfig

MAX_DOCUMENT_BYTES = 1024 * 1024
"""Largest state or report document read; a larger one is refused unparsed."""
MAX_MODELS = 1024
MAX_VERSIONS = 256
MAX_ERRORS = 32
_MAX_VERSION = 2**53  # exact in every JSON reader
T = TypeVar("T", bound=BaseModel)

ModelName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
VersionLabel = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")]
ProcessId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,160}$")]
Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class VersionIntent(_Document):
    """What every process should do with one version."""

    loaded: bool = True
    reload_generation: int = Field(0, ge=0, le=_MAX_VERSION)
    """Raised by each admin reload: a process that applied a lower one reloads the artifact."""


class ModelIntent(_Document):
    """One model's desired routing (None: as configured) and versions (absent: loaded)."""

    default_version: VersionLabel | None = None
    routing: RoutingConfig | None = None
    versions: dict[VersionLabel, VersionIntent] = Field(
        default_factory=dict, max_length=MAX_VERSIONS
    )

    @field_validator("routing")
    @classmethod
    def _bounded_routing(cls, value: RoutingConfig | None) -> RoutingConfig | None:
        weights = value.weights if value is not None else None
        if weights is not None:
            if len(weights) > MAX_VERSIONS:
                raise ValueError(f"more than {MAX_VERSIONS} weights")
            if any(not math.isfinite(w) or w > 1e9 for w in weights.values()):
                raise ValueError("weights must be finite and at most 1e9")
            if any(not isinstance(k, str) or len(k) > 32 for k in weights):
                raise ValueError("weights name versions of at most 32 characters")
        return value


class DesiredState(_Document):
    """The whole service's desired state at ``version`` (0: nothing changed since start-up)."""

    version: int = Field(0, ge=0, le=_MAX_VERSION)
    models: dict[ModelName, ModelIntent] = Field(default_factory=dict, max_length=MAX_MODELS)
    config_sha256: Digest | None = None
    """The configuration file whose models and routing this state last started from."""

    def with_action(self, action: ControlAction, floor: int = 0) -> DesiredState:
        """This state with ``action`` applied, at a version above both this one and ``floor``.

        ``floor`` is the writer's own applied version: a store that lost its state (a Redis
        without persistence restarted) never sends the service backwards. A configuration
        already recorded (by another process that read the same file) changes nothing.
        """
        if isinstance(action, ConfigAction):
            if action.config_sha256 == self.config_sha256:
                return self
            return DesiredState(
                version=max(self.version, floor) + 1,
                models={name: _generations_only(m) for name, m in self.models.items()},
                config_sha256=action.config_sha256,
            )
        intent = self.models.get(action.model, ModelIntent())
        if isinstance(action, RoutingAction):
            intent = intent.model_copy(
                update={"default_version": action.default_version, "routing": action.config}
            )
        else:
            current = intent.versions.get(action.version, VersionIntent())
            if action.verb == "reload":
                changed = VersionIntent(reload_generation=current.reload_generation + 1)
            else:
                changed = current.model_copy(update={"loaded": action.verb == "load"})
            intent = intent.model_copy(
                update={"versions": {**intent.versions, action.version: changed}}
            )
        return DesiredState(
            version=max(self.version, floor) + 1,
            models={**self.models, action.model: intent},
            config_sha256=self.config_sha256,
        )

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


def _generations_only(intent: ModelIntent) -> ModelIntent:
    """A model as its configuration says, keeping the reload generations (so a later admin
    reload still counts above what each process applied)."""
    return ModelIntent(
        versions={
            version: VersionIntent(reload_generation=wanted.reload_generation)
            for version, wanted in intent.versions.items()
            if wanted.reload_generation
        }
    )


class ProcessReport(_Document):
    """What one process says about itself: the state version it applied, and what failed."""

    process: ProcessId
    applied_version: int = Field(ge=0, le=_MAX_VERSION)
    """The last state version this process applied in full."""
    seen_version: int = Field(ge=0, le=_MAX_VERSION)
    """The last state version it tried to apply (above ``applied_version`` when it failed)."""
    errors: list[Annotated[str, StringConstraints(max_length=1000)]] = Field(
        default_factory=list, max_length=MAX_ERRORS
    )
    config_sha256: Digest | None = None
    """The configuration file this process serves (None: started without one)."""
    reported_at: float = Field(default_factory=time.time, ge=0)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


class RefusedDocumentError(ValueError):
    """A stored document that is too large or does not validate; the message says why."""


def parse_state(raw: bytes) -> DesiredState:
    """Validate a stored desired state (see the module docstring)."""
    return _parse(DesiredState, raw)


def parse_report(raw: bytes) -> ProcessReport:
    return _parse(ProcessReport, raw)


def _parse(kind: type[T], raw: bytes) -> T:
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise RefusedDocumentError(f"larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        return kind.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "document"
        raise RefusedDocumentError(
            f"{exc.error_count()} invalid field(s), first {where}: {first['msg']}"
        ) from None
