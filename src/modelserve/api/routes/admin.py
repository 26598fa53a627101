"""Admin API (``admin`` scope) over HTTP: the core's repository operations, converted.

Load, unload and hot-reload versions; show or change a model's routing. What each operation
does, and its audit log line, is :mod:`modelserve.inference.repository`'s; these handlers
only convert bodies. A load or reload that fails answers 409 ``model_load_failed`` with the
reason. These routes are not hot, so they are ordinary FastAPI routes; their paths, scope and
docs are declared in :mod:`modelserve.api.routes.table`. They are declared only when auth is
on and a key has the ``admin`` scope (:func:`~modelserve.api.auth.withheld_reason`), and the
calls that change state take ``Content-Type: application/json`` only. A change reaches every
process of the service (:mod:`modelserve.control`); its answer's ``control`` says how many
processes applied it.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import Request

from modelserve.api.deps import CoreDep
from modelserve.api.schemas import (
    ControlStateResponse,
    ErrorBody,
    FleetStatusBody,
    ProcessReportBody,
    ProcessStatusBody,
    RoutingPatch,
    RoutingRequest,
    RoutingResponse,
    VersionActionResponse,
)
from modelserve.control import ControlPlane
from modelserve.inference.coordination import FleetStatus, ProcessStatus
from modelserve.inference.repository import RoutingState, VersionChange
from modelserve.settings import RoutingConfig

Action = Literal["load", "reload", "unload"]


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI error responses of admin routes (declared in the route table)."""
    texts = {
        400: "The body is not valid JSON.",
        401: "Missing or invalid API key (when auth is enabled).",
        403: "The API key lacks the admin scope.",
        404: "Unknown model or version (`model_not_found`, `version_not_found`).",
        409: "Refused; the detail says why. Nothing changed.",
        415: "The request is not declared `Content-Type: application/json`.",
        422: "Invalid body (for instance negative or all-zero weights).",
    }
    return {code: {"model": ErrorBody, "description": texts[code]} for code in codes}


def _caller(request: Request) -> str | None:
    caller: str | None = getattr(request.state, "caller", None)
    return caller


def _version_response(change: VersionChange, action: Action) -> VersionActionResponse:
    info = change.info
    return VersionActionResponse(
        model=info.name,
        version=info.version,
        action=action,
        status=info.status.value,
        changed=change.changed,
        load_ms=info.load_ms,
        warmup_ms=info.warmup_ms,
        control=_fleet_body(change.fleet),
    )


def _fleet_body(fleet: FleetStatus | None) -> FleetStatusBody | None:
    if fleet is None:
        return None
    return FleetStatusBody(
        version=fleet.version,
        processes=fleet.processes,
        applied=fleet.applied,
        failed=[_process_body(p) for p in fleet.failed],
        pending=[_process_body(p) for p in fleet.pending],
    )


def _process_body(status: ProcessStatus) -> ProcessStatusBody:
    return ProcessStatusBody(
        process=status.process, applied_version=status.applied_version, errors=status.errors
    )


async def load_version(
    name: str, version: str, request: Request, core: CoreDep
) -> VersionActionResponse:
    """Load a version that is not serving (unloaded, or failed at startup) from its configured
    path, re-reading its sha256 pins from the configuration. A serving version is left as it
    is (`changed: false`); use reload to replace its artifact. 409 `model_load_failed` gives
    the reason when it cannot load."""
    change = await core.repository.load(name, version, _caller(request))
    return _version_response(change, "load")


async def reload_version(
    name: str, version: str, request: Request, core: CoreDep
) -> VersionActionResponse:
    """Read the version's configured path again and swap the new artifact in atomically.

    The new artifact loads and warms up beside the old one, which keeps serving meanwhile.
    Then new requests go to the new one, and the old one retires once the requests already
    using it have finished; the call answers after that. The sha256 pins are re-read from the
    configuration file first, so a pinned artifact is replaced by editing its pin and then
    reloading; a file that does not match its pin is refused. On any failure (409
    `model_load_failed`, with the reason) the old artifact keeps serving. `changed` is false
    when the reloaded artifact (and its output settings) are the ones that were serving."""
    change = await core.repository.reload(name, version, _caller(request))
    return _version_response(change, "reload")


async def unload_version(
    name: str, version: str, request: Request, core: CoreDep
) -> VersionActionResponse:
    """Stop serving a version once its requests in flight finish; it then answers 503
    `model_not_ready` until loaded again. 409 `version_in_use` while the model's routing names
    it (default, weighted or shadow version): change the routing first."""
    change = await core.repository.unload(name, version, _caller(request))
    return _version_response(change, "unload")


async def get_routing(name: str, core: CoreDep) -> RoutingResponse:
    """The routing requests that name no version follow now."""
    return _routing_response(core.repository.routing(name))


async def put_routing(
    name: str, body: RoutingRequest, request: Request, core: CoreDep
) -> RoutingResponse:
    """Replace the routing of a model at once (one assignment: each request sees the old or
    the new routing). Every version the body names must exist (404 `version_not_found`) and
    be serving (409 `version_not_loaded`). Fields left out take their defaults (`sticky`
    false, no shadow): to change some fields and keep the rest, use PATCH."""
    config = RoutingConfig.model_validate(body.model_dump(exclude={"default"}))
    state = await core.repository.set_routing(name, config, body.default, _caller(request))
    return _routing_response(state)


async def patch_routing(
    name: str, body: RoutingPatch, request: Request, core: CoreDep
) -> RoutingResponse:
    """Merge the fields sent into the current routing and apply the result at once (as PUT
    does). Fields not sent keep their current values: `{"weights": null}` rolls a canary back
    and leaves `sticky` and `shadow` as they were."""
    changes = body.model_dump(exclude_unset=True)
    default = changes.pop("default", None)
    current = core.repository.routing(name).config.model_dump()  # 404 for an unknown model
    config = RoutingConfig.model_validate({**current, **changes})
    state = await core.repository.set_routing(name, config, default, _caller(request))
    return _routing_response(state)


def _routing_response(state: RoutingState) -> RoutingResponse:
    config = state.config
    return RoutingResponse(
        model=state.model,
        default=state.default_version,
        weights=config.weights,
        sticky=config.sticky,
        shadow=config.shadow,
        shadow_tolerance=config.shadow_tolerance,
        shadow_max_pending=config.shadow_max_pending,
        traffic_percent={v: round(share * 100, 6) for v, share in state.traffic_share.items()},
        control=_fleet_body(state.fleet),
    )


async def control_state(request: Request) -> ControlStateResponse:
    """The shared desired state's version and what every live process reports against it:
    the version it applied, what it could not apply, the config file it serves. `in_sync` is
    false while some process differs."""
    control: ControlPlane = request.app.state.control
    desired = await control.desired()
    version = desired.version if desired is not None else 0
    reports = await control.reports()
    return ControlStateResponse(
        version=version,
        config_sha256=desired.config_sha256 if desired is not None else None,
        in_sync=all(r.applied_version >= version and not r.errors for r in reports),
        processes=[
            ProcessReportBody(
                process=r.process,
                applied_version=r.applied_version,
                seen_version=r.seen_version,
                errors=list(r.errors),
                config_sha256=r.config_sha256,
            )
            for r in reports
        ],
    )
