"""A model whose optional library is not installed fails to load naming the pip install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import joblib
import pytest

from tests import boosted_models as bm
from tests.conftest import pythonpath_env
from tests.e2e.conftest import write_config

pytestmark = pytest.mark.e2e


def run_without(module: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``modelserve ARGS`` in a process where importing ``module`` fails as if uninstalled."""
    shadow = tmp_path / "shadow" / module
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        f"raise ModuleNotFoundError(\"No module named '{module}'\", name={module!r})\n"
    )
    env = pythonpath_env()
    env["PYTHONPATH"] = f"{tmp_path / 'shadow'}:{env['PYTHONPATH']}"
    return subprocess.run(
        [sys.executable, "-m", "modelserve", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def check_without(module: str, tmp_path: Path, model: Path) -> subprocess.CompletedProcess[str]:
    """``modelserve check`` of a config serving ``model``, without ``module``."""
    config = write_config(tmp_path, {"models": [{"name": "m", "path": str(model)}]})
    return run_without(module, tmp_path, "check", "--config", str(config))


@pytest.mark.parametrize(
    ("module", "filename"),
    [
        ("xgboost", "model.json"),
        ("lightgbm", "model.txt"),
        ("catboost", "model.cbm"),
    ],
    ids=["xgboost", "lightgbm", "catboost"],
)
def test_native_file_without_its_library_names_the_extra(
    tmp_path: Path, module: str, filename: str
) -> None:
    """A native model file fails `modelserve check` with the pip install of its extra."""
    model = tmp_path / filename
    model.write_bytes(b"not read: the import fails first")
    result = check_without(module, tmp_path, model)
    assert result.returncode == 1
    assert f"pip install 'modelserve[{module}]'" in result.stdout


def test_pickled_wrapper_without_its_library_names_the_extra(tmp_path: Path) -> None:
    """An XGBClassifier in a joblib file fails to unpickle naming the xgboost extra."""
    model = tmp_path / "model.joblib"
    joblib.dump(bm.xgb_classifier(binary=False), model)
    result = check_without("xgboost", tmp_path, model)
    assert result.returncode == 1
    assert "pip install 'modelserve[xgboost]'" in result.stdout


def test_optimize_without_its_converter_names_the_optimize_extra(tmp_path: Path) -> None:
    """`modelserve optimize` of an XGBoost model without onnxmltools names modelserve[optimize]."""
    model = tmp_path / "model.json"
    bm.xgb_classifier(binary=False).save_model(model)
    out = tmp_path / "optimized.onnx"
    result = run_without("onnxmltools", tmp_path, "optimize", str(model), "--out", str(out))
    assert result.returncode == 1
    assert "pip install 'modelserve[optimize]'" in result.stderr
    assert not out.exists()


def test_python_function_model_without_mlflow_names_the_mlflow_extra(tmp_path: Path) -> None:
    """A python_function-only MLflow directory fails `modelserve check` naming modelserve[mlflow]
    (the native flavours need no mlflow)."""
    model = tmp_path / "pyfunc"
    bm.save_mlflow_pyfunc(model)
    result = check_without("mlflow", tmp_path, model)
    assert result.returncode == 1
    assert "pip install 'modelserve[mlflow]'" in result.stdout
