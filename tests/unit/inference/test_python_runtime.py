"""``format: python``: user model classes imported afresh, pinned, hooked into the pipeline."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from modelserve.errors import ChecksumMismatchError, ModelLoadError, PinRequiredError
from modelserve.inference.artifact import directory_sha256, file_sha256
from modelserve.inference.loader import load_runtime
from modelserve.inference.runtimes.python import PythonRuntime
from modelserve.inference.version import build_version
from modelserve.settings import ModelConfig, load_settings

THRESHOLD_MODEL = '''
from pathlib import Path

import numpy as np


class Threshold:
    """Class 1 when the scaled first feature passes a threshold read from the artifacts."""

    classes = ["low", "high"]

    def load(self, artifacts_dir):
        self.seen_dir = artifacts_dir
        self.threshold = float((Path(artifacts_dir) / "threshold.txt").read_text())

    def preprocess(self, batch):
        return batch * SCALE

    def predict_proba(self, batch):
        high = (batch[:, 0] > self.threshold).astype(float)
        return np.column_stack([1 - high, high])

    def predict(self, batch):
        return (batch[:, 0] > self.threshold).astype(int)


SCALE = 10.0
'''


def write_project(directory: Path, source: str = THRESHOLD_MODEL, **model: Any) -> Path:
    """A config folder with ``threshold_model.py``, ``artifacts/`` and ``modelserve.yaml``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "threshold_model.py").write_text(textwrap.dedent(source))
    (directory / "artifacts").mkdir(exist_ok=True)
    (directory / "artifacts" / "threshold.txt").write_text("5")
    entry = {
        "name": "custom",
        "format": "python",
        "path": "threshold_model:Threshold",
        "artifacts": "artifacts",
        "n_features": 2,
        **model,
    }
    config = directory / "modelserve.yaml"
    config.write_text(yaml.safe_dump({"models": [entry]}))
    return config


def configured(config: Path, **overrides: Any) -> tuple[ModelConfig, bool]:
    settings = load_settings(config, **overrides)
    return settings.models[0], settings.require_sha256


def runtime_of(config: Path, **overrides: Any) -> PythonRuntime:
    model, require = configured(config, **overrides)
    runtime = load_runtime(model, require_sha256=require).runtime
    assert isinstance(runtime, PythonRuntime)
    return runtime


def test_python_runtime_runs_preprocess_then_predict_proba(tmp_path: Path) -> None:
    """The class is found beside the config, loads its artifacts, and its hooks run in order."""
    runtime = runtime_of(write_project(tmp_path / "project"))
    out = runtime.predict(np.array([[0.4, 0.0], [0.6, 0.0]]))
    assert out.probabilities is not None
    assert out.probabilities.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert runtime.metadata.classes == ["low", "high"]
    assert runtime.metadata.is_classifier


def test_python_runtime_version_answers_with_class_labels(tmp_path: Path) -> None:
    """A built version names its probability columns after the class's ``classes``."""
    model, require = configured(write_project(tmp_path / "project"))
    prepared = build_version(model, require_sha256=require)
    assert prepared.spec.class_labels == ["low", "high"]
    assert prepared.info.platform == "python_class"
    outputs = prepared.postprocessor.apply(prepared.runtime.predict(np.array([[0.9, 1.0]])))
    assert outputs.labels == ["high"]


def test_python_runtime_postprocess_applies_to_each_output(tmp_path: Path) -> None:
    """``postprocess`` gets what predict returned (a regressor here) before modelserve does."""
    source = """
        class Doubling:
            def predict(self, batch):
                return batch.sum(axis=1)

            def postprocess(self, output):
                return output * 2
    """
    config = write_project(tmp_path / "p", source, path="threshold_model:Doubling")
    out = runtime_of(config).predict(np.array([[1.0, 2.0]]))
    assert out.values is not None
    assert out.values.tolist() == [6.0]


def test_python_runtime_executes_the_edited_source_on_each_load(tmp_path: Path) -> None:
    """A second load runs the file as it is now, not the module cached by the first."""
    config = write_project(tmp_path / "project")
    first = runtime_of(config)
    module = tmp_path / "project" / "threshold_model.py"
    module.write_text(module.read_text().replace("SCALE = 10.0", "SCALE = 1.0"))
    second = runtime_of(config)
    row = np.array([[0.6, 0.0]])
    assert first.predict(row).probabilities.tolist() == [[0.0, 1.0]]  # type: ignore[union-attr]
    assert second.predict(row).probabilities.tolist() == [[1.0, 0.0]]  # type: ignore[union-attr]


def test_python_runtime_config_folder_leaves_the_import_path(tmp_path: Path) -> None:
    """The config's folder is on ``sys.path`` only while the module is imported."""
    runtime_of(write_project(tmp_path / "project"))
    assert str(tmp_path / "project") not in sys.path


def test_python_runtime_config_folder_never_shadows_the_standard_library(tmp_path: Path) -> None:
    """A ``json.py`` beside the config is not what ``json:...`` imports."""
    config = write_project(tmp_path / "project", path="json:Threshold")
    (tmp_path / "project" / "json.py").write_text(THRESHOLD_MODEL)
    model, _ = configured(config)
    with pytest.raises(ModelLoadError, match="defines no class Threshold"):
        load_runtime(model, require_sha256=False)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def broken(:\n    pass", "SyntaxError"),
        ("raise RuntimeError('bad import')", "RuntimeError: bad import"),
        (
            "class Threshold:\n    def load(self, d):\n        raise ValueError('no weights')\n"
            "    def predict(self, b):\n        return b",
            "failed to load: ValueError: no weights",
        ),
        ("class Threshold:\n    pass", "has no predict\\(self, batch\\) or predict_proba"),
        ("Threshold = 3", "defines no class Threshold"),
    ],
    ids=["syntax-error", "import-raises", "load-raises", "no-predict", "not-a-class"],
)
def test_python_runtime_user_code_failures_refuse_the_load(
    tmp_path: Path, source: str, message: str
) -> None:
    """A class that cannot be imported or loaded is a load failure naming the reason."""
    model, _ = configured(write_project(tmp_path / "project", source))
    with pytest.raises(ModelLoadError, match=message):
        load_runtime(model, require_sha256=False)


def _pins(project: Path) -> dict[str, str]:
    return {
        "sha256": file_sha256(project / "threshold_model.py"),
        "artifacts_sha256": directory_sha256(project / "artifacts"),
    }


def test_python_runtime_pinned_source_and_artifacts_load(tmp_path: Path) -> None:
    """Both pins right: loads, and ``load`` gets a verified private copy of the artifacts."""
    project = tmp_path / "project"
    write_project(project)
    config = write_project(project, **_pins(project))
    runtime = runtime_of(config, require_sha256=True)
    seen = Path(runtime._model.seen_dir)
    assert seen != project / "artifacts"
    assert (seen / "threshold.txt").read_text() == "5"


@pytest.mark.parametrize(
    ("drop", "error", "message"),
    [
        ("sha256", PinRequiredError, "threshold_model.py .*`sha256`"),
        ("artifacts_sha256", PinRequiredError, "artifacts.*`artifacts_sha256`"),
    ],
    ids=["source-unpinned", "artifacts-unpinned"],
)
def test_python_runtime_require_sha256_refuses_unpinned_parts(
    tmp_path: Path, drop: str, error: type[Exception], message: str
) -> None:
    """With require_sha256, the module source and the artifacts folder must both be pinned."""
    project = tmp_path / "project"
    write_project(project)
    pins = {k: v for k, v in _pins(project).items() if k != drop}
    model, _ = configured(write_project(project, **pins))
    with pytest.raises(error, match=message):
        load_runtime(model, require_sha256=True)


@pytest.mark.parametrize(
    "edited", ["threshold_model.py", "artifacts/threshold.txt"], ids=["source", "artifacts"]
)
def test_python_runtime_pin_mismatch_refuses_the_load(tmp_path: Path, edited: str) -> None:
    """An edited source or artifact no longer matches its pin: refused, saying which."""
    project = tmp_path / "project"
    write_project(project)
    model, _ = configured(write_project(project, **_pins(project)))
    (project / edited).write_text((project / edited).read_text() + "\n")
    with pytest.raises(ChecksumMismatchError, match=Path(edited).parts[0]):
        load_runtime(model, require_sha256=False)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"format": "python", "path": "model.py"}, "package.module:ClassName"),
        (
            {"format": "python", "path": "m:C", "preprocessor": {"path": "p.pkl"}},
            "no preprocessor",
        ),
        ({"path": "model.joblib", "artifacts": "artifacts"}, "for format python"),
        ({"format": "python", "path": "m:C", "artifacts_sha256": "a" * 64}, "set artifacts"),
    ],
    ids=["file-path", "preprocessor", "artifacts-elsewhere", "pin-without-folder"],
)
def test_python_model_config_refuses_impossible_fields(
    fields: dict[str, Any], message: str
) -> None:
    """Mistakes in a python model's config are caught when the config is read."""
    with pytest.raises(ValueError, match=message):
        ModelConfig(name="m", **fields)


def test_python_runtime_config_labels_rename_the_class_classes(tmp_path: Path) -> None:
    """Configured labels name the probability columns instead of the class's ``classes``."""
    model, require = configured(write_project(tmp_path / "project", labels=["below", "above"]))
    prepared = build_version(model, require_sha256=require)
    assert prepared.spec.class_labels == ["below", "above"]


def test_python_runtime_imports_a_package_module_beside_the_config(tmp_path: Path) -> None:
    """``package.module:ClassName`` finds a package in the config's folder."""
    project = tmp_path / "project"
    config = write_project(project, path="scoringpkg_e1.models:Threshold")
    (project / "scoringpkg_e1").mkdir()
    (project / "scoringpkg_e1" / "__init__.py").write_text("")
    (project / "scoringpkg_e1" / "models.py").write_text(textwrap.dedent(THRESHOLD_MODEL))
    out = runtime_of(config).predict(np.array([[0.6, 0.0]]))
    assert out.probabilities is not None
    assert out.probabilities.tolist() == [[0.0, 1.0]]
