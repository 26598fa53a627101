"""GET /models: every configured model version and its state."""

from __future__ import annotations

from fastapi import APIRouter

from modelserve.api.deps import RegistryDep
from modelserve.api.schemas import ModelsResponse, ModelVersionResponse

router = APIRouter(tags=["models"])


@router.get("/models", response_model=ModelsResponse, summary="List model versions")
async def list_models(registry: RegistryDep) -> ModelsResponse:
    """Every model version with its format, input width, feature names, labels and status.

    `is_default`, `traffic_percent` and `shadow` show the model's routing as it is now.
    """
    routers = registry.routers
    return ModelsResponse(
        default_model=registry.default_model,
        models=[
            ModelVersionResponse(
                name=v.info.name,
                version=v.info.version,
                format=v.info.format,
                status=v.info.status.value,
                reason=v.info.reason,
                is_default=v.version == routers[v.name].default_version,
                traffic_percent=round(routers[v.name].share(v.version) * 100, 6),
                shadow=v.version == routers[v.name].shadow,
                task=v.info.task,
                n_features=v.info.n_features,
                feature_names=v.info.feature_names,
                labels=v.info.labels,
                load_ms=v.info.load_ms,
                warmup_ms=v.info.warmup_ms,
            )
            for v in registry.versions()
        ],
    )
