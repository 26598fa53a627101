"""Annotated dependencies for FastAPI-decorated routes, read from ``app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from modelserve.inference.registry import ModelRegistry
from modelserve.inference.service import PredictionService
from modelserve.settings import Settings


def _registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.registry
    return registry


def _service(request: Request) -> PredictionService:
    service: PredictionService = request.app.state.service
    return service


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


RegistryDep = Annotated[ModelRegistry, Depends(_registry)]
ServiceDep = Annotated[PredictionService, Depends(_service)]
SettingsDep = Annotated[Settings, Depends(_settings)]
