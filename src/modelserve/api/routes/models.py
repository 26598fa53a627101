"""GET /models: every configured model version and its state."""

from __future__ import annotations

from fastapi import Request

from modelserve.api.deps import CoreDep
from modelserve.api.schemas import ControlView, ModelsResponse, ModelVersionResponse
from modelserve.control import ControlPlane
from modelserve.inference.metadata import platform_of


async def list_models(core: CoreDep, request: Request) -> ModelsResponse:
    """Every model version with its format, input width, feature names, labels and status.

    `is_default`, `traffic_percent` and `shadow` show the model's routing as it is now in the
    answering process; `control` names that process and the control state version it applied
    (every process that applied the same version shows the same routing and versions).
    """
    repository = core.repository
    control: ControlPlane = request.app.state.control
    return ModelsResponse(
        default_model=repository.default_model,
        control=ControlView(version=control.applied_version, process=control.process),
        models=[
            ModelVersionResponse(
                name=state.info.name,
                version=state.info.version,
                format=state.info.format,
                platform=state.info.platform or platform_of(state.info.format),
                status=state.info.status.value,
                reason=state.info.reason,
                is_default=state.is_default,
                traffic_percent=round(state.traffic_share * 100, 6),
                shadow=state.shadow,
                task=state.info.task,
                n_features=state.info.n_features,
                feature_names=state.info.feature_names,
                feature_types=state.info.feature_types,
                labels=state.info.labels,
                load_ms=state.info.load_ms,
                warmup_ms=state.info.warmup_ms,
            )
            for state in repository.index()
        ],
    )
