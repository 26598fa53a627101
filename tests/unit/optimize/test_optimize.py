"""`modelserve optimize`: converts tree models, proves the answers held, refuses when not."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from modelserve.cli import main
from modelserve.inference.artifact import Artifact
from modelserve.inference.loader import load_runtime
from modelserve.inference.runtimes.onnx import OnnxRuntime
from modelserve.optimize import command
from modelserve.optimize.convert import Conversion, convert_to_onnx
from modelserve.optimize.verify import draw_sample, verify
from modelserve.settings import ModelConfig
from tests import boosted_models as bm


def save_forest(directory: Path) -> Path:
    path = directory / "forest.joblib"
    joblib.dump(bm.forest(), path)
    return path


def save_xgboost(directory: Path) -> Path:
    path = directory / "xgb.json"
    bm.xgb_classifier(binary=False).save_model(path)
    return path


def save_lightgbm(directory: Path) -> Path:
    path = directory / "lgb.txt"
    bm.lgb_classifier(binary=True).booster_.save_model(path)
    return path


def save_wrapper(make: Callable[[bool], object], binary: bool) -> Callable[[Path], Path]:
    """An XGBClassifier or LGBMClassifier pickled with joblib."""

    def save(directory: Path) -> Path:
        path = directory / "wrapper.joblib"
        joblib.dump(make(binary), path)
        return path

    return save


MODELS: list[Callable[[Path], Path]] = [
    save_forest,
    save_xgboost,
    save_lightgbm,
    save_wrapper(bm.xgb_classifier, True),
    save_wrapper(bm.lgb_classifier, False),
]
IDS = ["forest", "xgboost", "lightgbm", "xgb-classifier-joblib", "lgbm-classifier-joblib"]


def optimize(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["optimize", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize("save", MODELS, ids=IDS)
def test_optimize_converts_verifies_and_times(tmp_path: Path, save: Callable[[Path], Path]) -> None:
    """Each kind converts, passes verification, is timed at batch 1 and 64, and is written."""
    model, out = save(tmp_path), tmp_path / "optimized.onnx"
    code, output = optimize(str(model), "--out", str(out), "--rows", "500")
    assert code == 0, output
    assert "verification passed on 500 rows" in output
    assert "0 rows with a different class" in output
    assert "batch   1:" in output
    assert "batch  64:" in output
    assert out.is_file()


@pytest.mark.parametrize("save", MODELS, ids=IDS)
def test_optimized_model_answers_like_the_original(
    tmp_path: Path, save: Callable[[Path], Path]
) -> None:
    """The written ONNX model, served by modelserve's ONNX runtime, matches the original."""
    model, out = save(tmp_path), tmp_path / "optimized.onnx"
    assert optimize(str(model), "--out", str(out))[0] == 0
    original = load_runtime(ModelConfig(name="original", path=model), require_sha256=False).runtime
    optimized = load_runtime(ModelConfig(name="optimized", path=out), require_sha256=False).runtime
    rows = bm.rows_for(original.metadata.n_features == bm.CANCER_X.shape[1])
    want, got = original.predict(rows).probabilities, optimized.predict(rows).probabilities
    assert want is not None
    assert got is not None
    np.testing.assert_array_equal(want.argmax(axis=1), got.argmax(axis=1))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_optimize_verifies_on_given_data(tmp_path: Path) -> None:
    """--data verifies on the user's rows (a CSV with a header) instead of drawn ones."""
    model, out = save_forest(tmp_path), tmp_path / "optimized.onnx"
    data = tmp_path / "train.csv"
    np.savetxt(data, bm.IRIS_X, delimiter=",", header="a,b,c,d", comments="")
    code, output = optimize(str(model), "--out", str(out), "--data", str(data))
    assert code == 0, output
    assert "sample: 150 rows of train.csv" in output
    assert "verification passed on 150 rows" in output


def test_optimize_refuses_to_write_beyond_the_tolerance(tmp_path: Path) -> None:
    """A tolerance the float32 conversion cannot meet fails, reports the worst difference,
    and leaves no output file."""
    model, out = save_lightgbm(tmp_path), tmp_path / "optimized.onnx"
    code, output = optimize(str(model), "--out", str(out), "--tolerance", "1e-12")
    assert code == 1
    assert "verification FAILED" in output
    assert "worst difference" in output
    assert "was not written" in output
    assert not out.exists()


def as_artifact(onnx_bytes: bytes) -> Artifact:
    return Artifact(Path("converted.onnx"), onnx_bytes, hashlib.sha256(onnx_bytes).hexdigest())


def tamper_leaves(onnx_bytes: bytes) -> bytes:
    """The same model with every leaf weight of class 0 moved to class 1 (a wrong conversion)."""
    model = onnx.load_from_string(onnx_bytes)
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.name == "class_ids":
                attribute.ints[:] = [1 if c == 0 else c for c in attribute.ints]
    tampered: bytes = model.SerializeToString()
    return tampered


def test_verification_refuses_a_tampered_conversion(tmp_path: Path) -> None:
    """A converted forest whose leaves were tampered with fails verification by class."""
    model = save_forest(tmp_path)
    original = load_runtime(ModelConfig(name="original", path=model), require_sha256=False).runtime
    conversion = convert_to_onnx(model, 4)
    tampered = OnnxRuntime(as_artifact(tamper_leaves(conversion.onnx)), classifier_hint=True)
    sample = draw_sample(conversion.onnx, 4, 500, seed=1, on_thresholds=True)
    result = verify(original, tampered, sample, tolerance=1e-5)
    assert not result.passed
    assert result.class_mismatches > 0
    honest = OnnxRuntime(as_artifact(conversion.onnx), classifier_hint=True)
    assert verify(original, honest, sample, tolerance=1e-5).passed


def test_optimize_refuses_a_tampered_conversion_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`modelserve optimize` whose converter answers other classes (its leaves tampered with)
    exits 1, says how many rows changed class, and leaves no output file."""

    def tampered(path: Path, n_features: int, sha256: str | None = None) -> Conversion:
        honest = convert_to_onnx(path, n_features, sha256)
        return dataclasses.replace(honest, onnx=tamper_leaves(honest.onnx))

    monkeypatch.setattr(command, "convert_to_onnx", tampered)
    model, out = save_forest(tmp_path), tmp_path / "optimized.onnx"
    code, output = optimize(str(model), "--out", str(out))
    assert code == 1
    assert "verification FAILED" in output
    changed = re.search(r"(\d+) rows with a different class", output)
    assert changed is not None
    assert int(changed[1]) > 0
    assert "was not written" in output
    assert not out.exists()


def test_optimize_refuses_a_model_it_cannot_convert(tmp_path: Path) -> None:
    """An artifact that is no tree model of a supported library is refused with a reason."""
    model = tmp_path / "model.onnx"
    model.write_bytes(convert_to_onnx(save_forest(tmp_path), 4).onnx)
    code, output = optimize(str(model), "--out", str(tmp_path / "again.onnx"))
    assert code == 1
    assert "optimize converts scikit-learn, XGBoost and LightGBM models" in output
