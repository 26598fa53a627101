"""Optional runtime libraries: import one, or fail to load naming the ``pip install`` to run."""

from __future__ import annotations

import importlib
from types import ModuleType

from modelserve.errors import ModelLoadError

EXTRA_OF_MODULE = {
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "catboost": "catboost",
    "mlflow": "mlflow",
    "onnxmltools": "optimize",
    "skl2onnx": "optimize",
}
"""Top-level module → the modelserve extra that installs it."""


def missing_extra_message(module: str, what: str) -> str:
    """The load failure for a model whose library is not installed."""
    top = module.split(".")[0]
    extra = EXTRA_OF_MODULE.get(top, top)
    return f"{what} needs the {top} package: pip install 'modelserve[{extra}]'"


def import_extra(module: str, what: str) -> ModuleType:
    """``importlib.import_module(module)``, or ModelLoadError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelLoadError(missing_extra_message(module, what)) from exc
