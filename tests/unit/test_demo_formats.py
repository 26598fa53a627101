"""`modelserve demo` writes one model per installed optional format and skips the others."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from modelserve.demo import build_pipeline
from modelserve.demo_formats import write_optional_formats


def test_demo_skips_a_format_whose_library_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without xgboost the demo writes the LightGBM, CatBoost and MLflow models, no XGBoost
    file, and says which extra to install."""
    monkeypatch.setitem(sys.modules, "xgboost", None)  # importing it now fails, as if absent
    pipeline, x, y = build_pipeline()
    written, skipped = write_optional_formats(x, y, pipeline, tmp_path)
    assert [model.name for model in written] == ["iris-lightgbm", "iris-catboost", "iris-mlflow"]
    assert skipped == ["skipped the xgboost demo: pip install 'modelserve[xgboost]'"]
    assert not (tmp_path / "iris-xgboost.json").exists()
    assert all((tmp_path / model.filename).exists() for model in written)
