"""Annotated dependencies for FastAPI-decorated routes, read from ``app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from modelserve.inference.core import InferenceCore


def _core(request: Request) -> InferenceCore:
    core: InferenceCore = request.app.state.core
    return core


CoreDep = Annotated[InferenceCore, Depends(_core)]
