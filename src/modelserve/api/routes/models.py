"""GET /models: every configured model version and its state."""

from __future__ import annotations

from modelserve.api.deps import CoreDep
from modelserve.api.schemas import ModelsResponse, ModelVersionResponse
from modelserve.inference.metadata import platform_of


async def list_models(core: CoreDep) -> ModelsResponse:
    """Every model version with its format, input width, feature names, labels and status.

    `is_default`, `traffic_percent` and `shadow` show the model's routing as it is now.
    """
    repository = core.repository
    return ModelsResponse(
        default_model=repository.default_model,
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
