"""Every demo format served by a real process answers exactly what its own library computes.

Plain pickles (the same runtime as joblib) are checked in test_smoke's zero-config server.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest
import skops.io as sio
import torch
from sklearn.datasets import load_iris

from modelserve.demo import LABELS
from tests.e2e.conftest import RunningServer

pytestmark = pytest.mark.e2e

ROWS = load_iris().data[::7].astype(np.float64)  # 22 rows, all three classes
Probabilities = npt.NDArray[np.float64]


@pytest.fixture(scope="module")
def server(demo_server: RunningServer) -> RunningServer:
    """The demo config (joblib, skops, ONNX, TorchScript) served by one real process."""
    return demo_server


def sklearn_probabilities(demo_models_dir: Path) -> Probabilities:
    return np.asarray(joblib.load(demo_models_dir / "iris.joblib").predict_proba(ROWS))


def skops_probabilities(demo_models_dir: Path) -> Probabilities:
    path = demo_models_dir / "iris.skops"
    model = sio.load(path, trusted=sio.get_untrusted_types(file=path))
    return np.asarray(model.predict_proba(ROWS))


def onnx_probabilities(demo_models_dir: Path) -> Probabilities:
    session = ort.InferenceSession(
        str(demo_models_dir / "iris.onnx"), providers=["CPUExecutionProvider"]
    )
    (output,) = session.run(["probabilities"], {"X": ROWS.astype(np.float32)})
    return np.asarray(output, dtype=np.float64)


def torch_probabilities(demo_models_dir: Path) -> Probabilities:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(demo_models_dir / "iris.pt"))  # type: ignore[no-untyped-call]  # torch.jit is untyped
    with torch.inference_mode():
        logits = module(torch.tensor(ROWS, dtype=torch.float32))
        return torch.softmax(logits, dim=1).numpy().astype(np.float64)


# (model name, reference computation, tolerance): float32 softmax in torch differs from ours
# in the last bits; every other format must match exactly.
FORMATS: list[tuple[str, Callable[[Path], Probabilities], float]] = [
    ("iris", sklearn_probabilities, 0.0),
    ("iris-skops", skops_probabilities, 0.0),
    ("iris-onnx", onnx_probabilities, 0.0),
    ("iris-torch", torch_probabilities, 1e-6),
]
IDS = ["joblib", "skops", "onnx", "torchscript"]


def served_batch(server: RunningServer, model: str) -> dict[str, Any]:
    response = httpx.post(
        server.base_url + "/predict-batch",
        params={"model": model, "probabilities": "true"},
        json={"batch": ROWS.tolist()},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(("model", "reference", "tolerance"), FORMATS, ids=IDS)
def test_served_probabilities_equal_library_output(
    server: RunningServer,
    demo_models_dir: Path,
    model: str,
    reference: Callable[[Path], Probabilities],
    tolerance: float,
) -> None:
    """The per-label probabilities served for each row equal the library's own output."""
    expected = reference(demo_models_dir)
    served = np.array(
        [[row[label] for label in LABELS] for row in served_batch(server, model)["probabilities"]]
    )
    np.testing.assert_allclose(served, expected, rtol=0, atol=tolerance)


@pytest.mark.parametrize(("model", "reference", "tolerance"), FORMATS, ids=IDS)
def test_served_predictions_equal_library_argmax(
    server: RunningServer,
    demo_models_dir: Path,
    model: str,
    reference: Callable[[Path], Probabilities],
    tolerance: float,
) -> None:
    """The served labels and confidences are the library's top class and its probability."""
    expected = reference(demo_models_dir)
    body = served_batch(server, model)
    assert body["predictions"] == [LABELS[i] for i in expected.argmax(axis=1)]
    np.testing.assert_allclose(body["confidences"], expected.max(axis=1), rtol=0, atol=tolerance)


@pytest.mark.parametrize(("model", "reference", "tolerance"), FORMATS, ids=IDS)
def test_single_row_predict_equals_library_output(
    server: RunningServer,
    demo_models_dir: Path,
    model: str,
    reference: Callable[[Path], Probabilities],
    tolerance: float,
) -> None:
    """/predict on one row answers the same probabilities as the library on that row."""
    expected = reference(demo_models_dir)[-1]
    response = httpx.post(
        server.base_url + "/predict",
        params={"model": model},
        json={"features": ROWS[-1].tolist()},
        timeout=30,
    )
    body = response.json()
    assert body["model"] == model
    served = np.array([body["probabilities"][label] for label in LABELS])
    # The reference predicts every row in one call; a one-row call (or one coalesced with
    # other requests) may round the last bit of a float64 differently (seen: 8e-17).
    np.testing.assert_allclose(served, expected, rtol=0, atol=max(tolerance, 1e-15))
