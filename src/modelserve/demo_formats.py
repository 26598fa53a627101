"""Demo models of the optional formats, one per installed library, fitted on iris.

Each writer returns the config entry fields of what it wrote (name, path, extra settings),
or a message saying which extra to install when its library is missing.
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

SEED = 42
_TREES = 20


@dataclass(frozen=True)
class DemoModel:
    name: str
    filename: str
    extra: dict[str, Any] = field(default_factory=dict)


def write_optional_formats(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.int64], pipeline: Any, out: Path
) -> tuple[list[DemoModel], list[str]]:
    """XGBoost, LightGBM and CatBoost files and an MLflow directory of ``pipeline``."""
    written: list[DemoModel] = []
    skipped: list[str] = []
    for module, writer in (
        ("xgboost", _xgboost),
        ("lightgbm", _lightgbm),
        ("catboost", _catboost),
        ("mlflow", _mlflow),
    ):
        if importlib.util.find_spec(module) is None:
            skipped.append(f"skipped the {module} demo: pip install 'modelserve[{module}]'")
            continue
        written.append(writer(x, y, pipeline, out))
    return written, skipped


def _xgboost(x: Any, y: Any, pipeline: Any, out: Path) -> DemoModel:
    import xgboost

    model = xgboost.XGBClassifier(n_estimators=_TREES, max_depth=3, random_state=SEED)
    model.fit(x, y).save_model(out / "iris-xgboost.json")
    return DemoModel("iris-xgboost", "iris-xgboost.json")


def _lightgbm(x: Any, y: Any, pipeline: Any, out: Path) -> DemoModel:
    import lightgbm

    model = lightgbm.LGBMClassifier(n_estimators=_TREES, random_state=SEED, verbose=-1)
    model.fit(x, y).booster_.save_model(out / "iris-lightgbm.txt")
    return DemoModel("iris-lightgbm", "iris-lightgbm.txt")


def _catboost(x: Any, y: Any, pipeline: Any, out: Path) -> DemoModel:
    import catboost

    model = catboost.CatBoostClassifier(
        iterations=_TREES,
        depth=3,
        random_seed=SEED,
        verbose=0,
        thread_count=1,
        allow_writing_files=False,
    )
    model.fit(x, y).save_model(str(out / "iris-catboost.cbm"))
    return DemoModel("iris-catboost", "iris-catboost.cbm")


def _mlflow(x: Any, y: Any, pipeline: Any, out: Path) -> DemoModel:
    """The demo pipeline as an MLflow directory (sklearn flavour, skops, named signature)."""
    import shutil

    with warnings.catch_warnings():  # mlflow warns on import and about serialization
        warnings.simplefilter("ignore")
        import mlflow.sklearn
        import pandas as pd
        from mlflow.models import infer_signature

        from modelserve.demo import FEATURES

        target = out / "iris-mlflow"
        shutil.rmtree(target, ignore_errors=True)
        signature = infer_signature(pd.DataFrame(x, columns=FEATURES), y)
        mlflow.sklearn.save_model(pipeline, target, signature=signature, pip_requirements=[])
    return DemoModel("iris-mlflow", "iris-mlflow", {"feature_names": None})
