"""Admin API (``admin`` scope): load, unload and hot-reload versions; change a model's routing.

Artifacts always come from the path configured for the version: no request can name a file.
A load or reload that fails answers 409 ``model_load_failed`` with the reason, and whatever
was serving keeps serving. Every action is logged (``admin_action_completed`` or
``admin_action_failed``) with the caller's key name. These routes are not hot, so they are
ordinary FastAPI routes. Each applies to the process that answers it (see the README on
several workers and replicas).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal

import structlog
from fastapi import APIRouter, Depends, Request

from modelserve.api.auth import require_scope
from modelserve.api.deps import RegistryDep
from modelserve.api.schemas import (
    ErrorBody,
    RoutingRequest,
    RoutingResponse,
    VersionActionResponse,
)
from modelserve.errors import ModelserveError
from modelserve.inference.registry import ModelRegistry, ModelVersion
from modelserve.settings import RoutingConfig

log = structlog.get_logger(__name__)
Action = Literal["load", "reload", "unload"]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    texts = {
        401: "Missing or invalid API key (when auth is enabled).",
        403: "The API key lacks the admin scope.",
        404: "Unknown model or version (`model_not_found`, `version_not_found`).",
        409: "Refused; the detail says why. Nothing changed.",
        422: "Invalid body (for instance negative or all-zero weights).",
    }
    return {code: {"model": ErrorBody, "description": texts[code]} for code in codes}


router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(require_scope("admin"))],
    responses=_errors(401, 403, 404),
)


@contextlib.contextmanager
def _audit(request: Request, action: str, model: str, **fields: Any) -> Iterator[None]:
    """Log the outcome of one admin action, with who asked."""
    caller = getattr(request.state, "caller", None)
    try:
        yield
    except ModelserveError as exc:
        log.warning(
            "admin_action_failed",
            action=action,
            model=model,
            caller=caller,
            code=exc.code,
            detail=exc.detail,
            **fields,
        )
        raise
    log.info("admin_action_completed", action=action, model=model, caller=caller, **fields)


def _version_response(entry: ModelVersion, action: Action, changed: bool) -> VersionActionResponse:
    return VersionActionResponse(
        model=entry.name,
        version=entry.version,
        action=action,
        status=entry.info.status.value,
        changed=changed,
        load_ms=entry.info.load_ms,
        warmup_ms=entry.info.warmup_ms,
    )


@router.post(
    "/models/{name}/versions/{version}/load",
    response_model=VersionActionResponse,
    summary="Load a version",
    responses=_errors(409),
)
async def load_version(
    name: str, version: str, request: Request, registry: RegistryDep
) -> VersionActionResponse:
    """Load a version that is not serving (unloaded, or failed at startup) from its configured
    path, re-reading its sha256 pins from the configuration. A serving version is left as it
    is (`changed: false`); use reload to replace its artifact. 409 `model_load_failed` gives
    the reason when it cannot load."""
    with _audit(request, "load", name, model_version=version):
        entry = registry.get(name, version)
        if entry.ready:
            return _version_response(entry, "load", changed=False)
        entry = await registry.load(name, version, reread=True)
    return _version_response(entry, "load", changed=True)


@router.post(
    "/models/{name}/versions/{version}/reload",
    response_model=VersionActionResponse,
    summary="Hot-reload a version",
    responses=_errors(409),
)
async def reload_version(
    name: str, version: str, request: Request, registry: RegistryDep
) -> VersionActionResponse:
    """Read the version's configured path again and swap the new artifact in atomically.

    The new artifact loads and warms up beside the old one, which keeps serving meanwhile.
    Then new requests go to the new one, and the old one retires once the requests already
    using it have finished; the call answers after that. The sha256 pins are re-read from the
    configuration file first, so a pinned artifact is replaced by editing its pin and then
    reloading; a file that does not match its pin is refused. On any failure (409
    `model_load_failed`, with the reason) the old artifact keeps serving."""
    with _audit(request, "reload", name, model_version=version):
        entry = await registry.load(name, version, reread=True)
    return _version_response(entry, "reload", changed=True)


@router.post(
    "/models/{name}/versions/{version}/unload",
    response_model=VersionActionResponse,
    summary="Unload a version",
    responses=_errors(409),
)
async def unload_version(
    name: str, version: str, request: Request, registry: RegistryDep
) -> VersionActionResponse:
    """Stop serving a version once its requests in flight finish; it then answers 503
    `model_not_ready` until loaded again. 409 `version_in_use` while the model's routing names
    it (default, weighted or shadow version): change the routing first."""
    with _audit(request, "unload", name, model_version=version):
        was_ready = registry.get(name, version).ready
        entry = await registry.unload(name, version)
    return _version_response(entry, "unload", changed=was_ready)


@router.get(
    "/models/{name}/routing", response_model=RoutingResponse, summary="Show a model's routing"
)
async def get_routing(name: str, registry: RegistryDep) -> RoutingResponse:
    """The routing requests that name no version follow now."""
    registry.get(name)  # 404 for an unknown model
    return _routing_response(registry, name)


@router.put(
    "/models/{name}/routing",
    response_model=RoutingResponse,
    summary="Replace a model's routing",
    responses=_errors(409, 422),
)
async def put_routing(
    name: str, body: RoutingRequest, request: Request, registry: RegistryDep
) -> RoutingResponse:
    """Replace the routing of a model at once (one assignment: each request sees the old or
    the new routing). Every version the body names must exist (404 `version_not_found`) and
    be serving (409 `version_not_loaded`). Roll a canary back with `{"default": "1.0"}`."""
    config = RoutingConfig.model_validate(body.model_dump(exclude={"default"}))
    with _audit(request, "set_routing", name, **body.model_dump(exclude_none=True)):
        registry.set_routing(name, config, body.default)
    return _routing_response(registry, name)


def _routing_response(registry: ModelRegistry, name: str) -> RoutingResponse:
    router = registry.routers[name]
    config = router.config
    versions = [v.version for v in registry.versions() if v.name == name]
    return RoutingResponse(
        model=name,
        default=router.default_version,
        weights=config.weights,
        sticky=config.sticky,
        shadow=config.shadow,
        shadow_tolerance=config.shadow_tolerance,
        shadow_max_pending=config.shadow_max_pending,
        traffic_percent={
            v: round(router.share(v) * 100, 6) for v in versions if router.share(v) > 0
        },
    )
