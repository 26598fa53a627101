"""Build the iris demo models (from scikit-learn's bundled data; nothing is downloaded).

Writes, into one folder: ``iris.joblib`` (StandardScaler + LogisticRegression), the same
pipeline as ``iris.onnx`` and ``iris.skops``, ``iris.pt`` (a small TorchScript classifier,
when torch is installed), ``iris.profile.json`` (their reference profile for drift signals),
and ``modelserve.yaml`` serving them all with sha256 pins (and ``require_sha256`` on). For the
README's canary example it also writes ``iris-v2.onnx`` (a second, more regularised iris
classifier) and ``canary.yaml``, serving ``iris.joblib`` as version 1 and ``iris-v2.onnx`` as
version 2 — both with their labels and feature names — with a sticky 90/10 split. For the
README's optimized rollout it writes ``iris-forest.joblib`` (a random forest) and
``iris-forest.onnx``, that forest as ``modelserve optimize`` converts and verifies it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt
import yaml
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from modelserve.demo_formats import write_optional_formats
from modelserve.errors import ModelLoadError
from modelserve.inference.artifact import directory_sha256, file_sha256
from modelserve.observability.profile import build_profile

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
LABELS = ["setosa", "versicolor", "virginica"]
SEED = 42
PROFILE_FILE = "iris.profile.json"
FORMATS_CONFIG = "formats.yaml"
"""Serves the demo models of the optional formats (XGBoost, LightGBM, CatBoost, MLflow)."""
CANARY_FILE = "canary.yaml"
V2_FILE = "iris-v2.onnx"
FOREST_FILE = "iris-forest.joblib"
OPTIMIZED_FOREST_FILE = "iris-forest.onnx"


def build_pipeline(
    regularisation: float = 1.0,
) -> tuple[Pipeline, npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """The demo classifier, fitted on iris with a fixed seed, with its training data.

    ``regularisation`` is LogisticRegression's ``C``; version 2 of the canary uses a smaller
    one, so the two versions mostly agree and sometimes do not (as real versions do).
    """
    data = load_iris()
    x, y = data.data.astype(np.float64), data.target
    model = Pipeline(
        [
            ("scale", StandardScaler()),
            ("classify", LogisticRegression(C=regularisation, max_iter=500, random_state=SEED)),
        ]
    )
    model.fit(x, y)
    return model, x, y


def build_demo(out: Path) -> list[str]:
    """Write the demo models and config into ``out``; return one message per artifact."""
    out.mkdir(parents=True, exist_ok=True)
    model, x, y = build_pipeline()
    messages: list[str] = []
    entries: list[dict[str, Any]] = []
    ranges = {
        name: (float(np.floor(x[:, i].min())), float(np.ceil(x[:, i].max())))
        for i, name in enumerate(FEATURES)
    }

    def add(name: str, filename: str, into: list[dict[str, Any]] = entries, **extra: Any) -> None:
        path = out / filename
        into.append(
            {
                "name": name,
                "version": "1",
                "path": filename,
                "sha256": directory_sha256(path) if path.is_dir() else file_sha256(path),
                "labels": list(LABELS),
                "feature_names": list(FEATURES),
                "feature_ranges": {k: list(v) for k, v in ranges.items()},
                "profile": PROFILE_FILE,
                **extra,
            }
        )
        messages.append(f"wrote {path}")

    messages.append(_write_profile(model, x, out / PROFILE_FILE))
    joblib.dump(model, out / "iris.joblib")
    add("iris", "iris.joblib", default=True)

    messages.extend(_write_onnx(model, out / "iris.onnx"))
    if (out / "iris.onnx").exists():
        add("iris-onnx", "iris.onnx")

    trusted = _write_skops(model, out / "iris.skops")
    add("iris-skops", "iris.skops", skops_trusted_types=trusted)

    torch_message = _write_torchscript(x, y, out / "iris.pt")
    if torch_message is None:
        add("iris-torch", "iris.pt", n_features=len(FEATURES), torch_output="logits")
    else:
        messages.append(torch_message)

    config = {"require_sha256": True, "default_model": "iris", "models": entries}
    (out / "modelserve.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    messages.append(f"wrote {out / 'modelserve.yaml'}")
    messages.extend(_write_canary(out, entries[0], ranges))
    messages.extend(_write_optimized_forest(x, y, out))

    # Served by their own config, so the quick start loads no optional library.
    written, skipped = write_optional_formats(x, y, model, out)
    formats: list[dict[str, Any]] = []
    for demo in written:
        add(demo.name, demo.filename, formats, **demo.extra)
    messages.extend(skipped)
    if formats:
        config = {"require_sha256": True, "models": formats}
        (out / FORMATS_CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
        messages.append(f"wrote {out / FORMATS_CONFIG}")
    return messages


def _write_canary(
    out: Path, first: dict[str, Any], ranges: dict[str, tuple[float, float]]
) -> list[str]:
    """``iris-v2.onnx`` and ``canary.yaml``: the README's two-version canary example."""
    second, _, _ = build_pipeline(regularisation=0.05)
    skipped = _write_onnx(second, out / V2_FILE)
    if skipped:
        return [skipped[0].replace("iris.onnx", f"{V2_FILE} and {CANARY_FILE}")]
    version_1 = {
        "name": "iris",
        "version": "1",
        "path": first["path"],
        "sha256": first["sha256"],
        "labels": list(LABELS),
        "feature_names": list(FEATURES),
        "feature_ranges": {k: list(v) for k, v in ranges.items()},
        "default": True,
        "batching": {"max_batch_size": 64, "max_delay_ms": 2, "max_queue_rows": 2048},
    }
    version_2 = {
        "name": "iris",
        "version": "2",
        "path": V2_FILE,
        "sha256": file_sha256(out / V2_FILE),
        "labels": list(LABELS),
        "feature_names": list(FEATURES),
    }
    config = {
        "require_sha256": True,
        "default_model": "iris",
        "models": [version_1, version_2],
        "routing": {"iris": {"weights": {"1": 90, "2": 10}, "sticky": True}},
    }
    (out / CANARY_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
    return [f"wrote {out / V2_FILE}", f"wrote {out / CANARY_FILE}"]


def _write_optimized_forest(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.int64], out: Path
) -> list[str]:
    """``iris-forest.joblib`` and, through ``modelserve optimize``, ``iris-forest.onnx``."""
    forest = RandomForestClassifier(n_estimators=50, max_depth=6, random_state=SEED).fit(x, y)
    joblib.dump(forest, out / FOREST_FILE)
    try:
        from modelserve.optimize.command import optimize_model

        report = optimize_model(out / FOREST_FILE, out / OPTIMIZED_FOREST_FILE, timed=False)
    except (ImportError, ModelLoadError):  # skl2onnx or onnx not installed
        return [
            f"wrote {out / FOREST_FILE}",
            f"skipped {OPTIMIZED_FOREST_FILE}: pip install 'modelserve[optimize]'",
        ]
    if not report.written:  # a converter that changed the answers: the demo shows no such file
        return [
            f"wrote {out / FOREST_FILE}",
            f"skipped {OPTIMIZED_FOREST_FILE}: {report.verification.describe()}",
        ]
    return [f"wrote {out / FOREST_FILE}", f"wrote {out / OPTIMIZED_FOREST_FILE}"]


def _write_profile(model: Pipeline, x: npt.NDArray[np.float64], path: Path) -> str:
    """The reference profile for drift signals: iris itself and the model's answers on it."""
    probabilities = model.predict_proba(x)
    reference = build_profile(
        x,
        FEATURES,
        [LABELS[i] for i in probabilities.argmax(axis=1)],
        probabilities.max(axis=1).tolist(),
        source={"data": "scikit-learn iris (150 rows)", "model": "iris.joblib"},
    )
    path.write_bytes(reference.to_json())
    return f"wrote {path}"


def _write_onnx(model: Pipeline, path: Path) -> list[str]:
    try:
        from skl2onnx import to_onnx
    except (ImportError, ModelLoadError):  # skl2onnx or onnx not installed
        return ["skipped iris.onnx: install skl2onnx (pip install 'modelserve[onnx-export]')"]
    onx = to_onnx(
        model,
        np.zeros((1, len(FEATURES)), dtype=np.float32),
        options={id(model.steps[-1][1]): {"zipmap": False}},
        target_opset=17,
    )
    path.write_bytes(onx.SerializeToString())
    return []


def _write_skops(model: Pipeline, path: Path) -> list[str]:
    import skops.io as sio

    sio.dump(model, path)
    return [str(t) for t in sio.get_untrusted_types(file=path)]


def _write_torchscript(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.int64], path: Path
) -> str | None:
    try:
        import torch
    except ImportError:
        return "skipped iris.pt: torch is not installed (pip install 'modelserve[torch]')"
    torch.manual_seed(SEED)
    mean, std = x.mean(axis=0), x.std(axis=0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    inputs = torch.tensor((x - mean) / std, dtype=torch.float32)
    targets = torch.tensor(y, dtype=torch.long)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(200):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(inputs), targets)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()

    class Standardized(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
            self.net = net

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            scaled = (features - self.mean) / self.std  # type: ignore[operator]
            return self.net(scaled)  # type: ignore[no-any-return]

    # TorchScript is the format users ship; torch 2.13 marks it deprecated in favour of export.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(Standardized().eval())
    scripted.save(str(path))  # type: ignore[no-untyped-call]
    return None
