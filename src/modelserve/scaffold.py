"""`modelserve init NAME`: a model class, a config that serves it, and a pytest test for it.

The scaffold works as written (a small logistic model whose parameters sit in
``artifacts/params.json``), passes ``modelserve check`` and its own test, and says in comments
where a data scientist's own model goes (``joblib.load`` in ``load``, the calls in
``predict_proba``/``predict``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
FEATURES = ["feature_1", "feature_2", "feature_3"]
CLASSES = ["negative", "positive"]
PARAMS = {"mean": [0.0, 0.0, 0.0], "scale": [1.0, 1.0, 1.0], "weights": [0.8, -0.4, 0.2]}

MODULE = '''"""{name}: a model class that modelserve serves (`format: python` in modelserve.yaml).

Make it yours: load your trained model in load(), for instance
    self.model = joblib.load(artifacts_dir / "model.joblib")
(put the file in artifacts/), and call it in predict_proba() and predict(). Keep
`classes` in the order of your model's probability columns and `feature_names` in the order
of its input columns. Run `pytest` and `modelserve check --config modelserve.yaml` after
each change, then `modelserve serve --config modelserve.yaml`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


class {cls}:
    """A logistic model over standardized features (replace it with your own)."""

    classes = {classes!r}
    feature_names = {features!r}

    def load(self, artifacts_dir: Path) -> None:
        """Called once per load (and per hot reload) with the configured artifacts folder."""
        params = json.loads((artifacts_dir / "params.json").read_text())
        self.mean = np.asarray(params["mean"], dtype=float)
        self.scale = np.asarray(params["scale"], dtype=float)
        self.weights = np.asarray(params["weights"], dtype=float)

    def preprocess(self, batch: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Each batch of rows (n, n_features) before the model sees it."""
        return (batch - self.mean) / self.scale

    def predict_proba(self, batch: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """One probability per class and row, columns in `classes` order."""
        positive = 1 / (1 + np.exp(-(batch @ self.weights)))
        return np.column_stack([1 - positive, positive])

    def predict(self, batch: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """The class of each row (modelserve labels answers from predict_proba's argmax)."""
        return self.predict_proba(batch).argmax(axis=1)
'''

CONFIG = """# Serve it: modelserve serve --config modelserve.yaml
# Check it:  modelserve check --config modelserve.yaml
models:
  - name: {name}
    format: python
    path: {module}:{cls}  # package.module:ClassName, found beside this file
    artifacts: artifacts  # the folder load() gets
    warmup_input: [[0.0, 0.0, 0.0]]
"""

TEST = '''"""Tests of {cls}: run with `pytest` in this folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from {module} import {cls}

HERE = Path(__file__).resolve().parent
ROWS = np.array([[0.5, 1.0, -0.2], [-1.0, 0.3, 2.0]])


def loaded() -> {cls}:
    model = {cls}()
    model.load(HERE / "artifacts")
    return model


def test_probabilities_are_one_column_per_class_summing_to_one() -> None:
    model = loaded()
    probabilities = model.predict_proba(model.preprocess(ROWS))
    assert probabilities.shape == (len(ROWS), len(model.classes))
    assert np.allclose(probabilities.sum(axis=1), 1.0)


def test_predict_agrees_with_the_most_probable_class() -> None:
    model = loaded()
    batch = model.preprocess(ROWS)
    assert (model.predict(batch) == model.predict_proba(batch).argmax(axis=1)).all()


def test_modelserve_check_loads_and_warms_up_the_config() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelserve", "check", "--config", str(HERE / "modelserve.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
'''


def identifier(name: str) -> str:
    """The module-safe form of a model name (``churn-v2`` → ``churn_v2``)."""
    return name.replace("-", "_").lower()


def class_name(name: str) -> str:
    """``churn-v2`` → ``ChurnV2Model``."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[-_]", name)) + "Model"


def scaffold(name: str, folder: Path) -> list[Path]:
    """Write the model module, its artifacts, its config and its test into ``folder``.

    Refuses a name that is no model name and a folder that exists and is not empty (nothing
    is overwritten). Returns the files written.
    """
    if not NAME.match(name):
        raise ValueError(
            f"{name!r} is not a model name: a letter, then letters, digits, '_' or '-'"
        )
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ValueError(f"{folder} exists and is not an empty folder; nothing was written")
    module, cls = f"{identifier(name)}_model", class_name(name)
    files = {
        f"{module}.py": MODULE.format(name=name, cls=cls, classes=CLASSES, features=FEATURES),
        "artifacts/params.json": json.dumps(PARAMS, indent=2) + "\n",
        "modelserve.yaml": CONFIG.format(name=name, module=module, cls=cls),
        f"test_{module}.py": TEST.format(module=module, cls=cls),
    }
    written = []
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
