"""Runtimes: each format's output equals its library's own output on the same rows."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import joblib
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest
import skops.io as sio
import torch
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline

from modelserve.errors import ModelLoadError
from modelserve.inference.artifact import Artifact, read_artifact
from modelserve.inference.runtimes.onnx import OnnxRuntime
from modelserve.inference.runtimes.scores import softmax, to_probabilities
from modelserve.inference.runtimes.sklearn import SklearnRuntime, load_pickle, load_skops
from modelserve.inference.runtimes.torchscript import TorchScriptRuntime
from modelserve.settings import ModelConfig
from tests import fakes

CUDA = torch.cuda.is_available()
IRIS_X = load_iris().data.astype(np.float64)
ROWS = IRIS_X[::10]  # 15 rows covering all three classes


def _torch_load(path: Path) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module: torch.jit.ScriptModule = torch.jit.load(str(path))  # type: ignore[no-untyped-call]  # torch.jit is untyped
    return module


def floats(array: npt.NDArray[np.generic] | None) -> npt.NDArray[np.float64]:
    """A runtime output that must be present, as float64 for comparison."""
    assert array is not None
    return np.asarray(array, dtype=np.float64)


TorchOutput = Literal["auto", "logits", "probabilities", "raw"]


def artifact(path: Path) -> Artifact:
    return read_artifact(path, None, runs_code=False, require_sha256=False)


def model_config(path: Path, **fields: object) -> ModelConfig:
    return ModelConfig.model_validate({"name": "m", "path": path, **fields})


def iris_pickle(models: Path, label_from: Literal["argmax", "predict"]) -> SklearnRuntime:
    path = models / "iris.joblib"
    return load_pickle(artifact(path), model_config(path, label_from=label_from))


def skops(path: Path, trusted: list[str]) -> SklearnRuntime:
    return load_skops(artifact(path), model_config(path, skops_trusted_types=trusted))


def torchscript(path: Path, output: TorchOutput = "logits") -> TorchScriptRuntime:
    return TorchScriptRuntime(
        artifact(path),
        n_features=4,
        device="cpu",
        output=output,
        classifier_hint=True,
    )


def test_sklearn_runtime_probabilities_equal_predict_proba(demo_models_dir: Path) -> None:
    """The joblib runtime returns exactly the pipeline's predict_proba."""
    pipeline: Pipeline = joblib.load(demo_models_dir / "iris.joblib")
    runtime = iris_pickle(demo_models_dir, "argmax")
    np.testing.assert_array_equal(runtime.predict(ROWS).probabilities, pipeline.predict_proba(ROWS))


def test_sklearn_runtime_label_from_predict_returns_predict(demo_models_dir: Path) -> None:
    """With label_from=predict the runtime also returns the pipeline's predict()."""
    pipeline: Pipeline = joblib.load(demo_models_dir / "iris.joblib")
    output = iris_pickle(demo_models_dir, "predict").predict(ROWS)
    np.testing.assert_array_equal(output.values, pipeline.predict(ROWS))


def test_sklearn_runtime_argmax_skips_predict(demo_models_dir: Path) -> None:
    """By default a classifier is called once (predict_proba), not twice."""
    output = iris_pickle(demo_models_dir, "argmax").predict(ROWS)
    assert output.values is None


def test_sklearn_runtime_metadata_of_a_pipeline(demo_models_dir: Path) -> None:
    """Width, task and classes are read from the fitted estimator."""
    meta = iris_pickle(demo_models_dir, "argmax").metadata
    assert (meta.n_features, meta.is_classifier, meta.classes) == (4, True, ["0", "1", "2"])


def test_sklearn_runtime_regressor_returns_values() -> None:
    """A regressor answers predict() values and declares itself not a classifier."""
    y = IRIS_X[:, 0] * 2
    runtime = SklearnRuntime(LinearRegression().fit(IRIS_X, y))
    output = runtime.predict(ROWS)
    assert runtime.metadata.is_classifier is False
    assert output.probabilities is None
    np.testing.assert_allclose(floats(output.values), ROWS[:, 0] * 2)


def test_skops_runtime_probabilities_equal_predict_proba(demo_models_dir: Path) -> None:
    """The skops runtime returns exactly the pipeline's predict_proba."""
    path = demo_models_dir / "iris.skops"
    trusted = [str(t) for t in sio.get_untrusted_types(file=path)]
    pipeline = sio.load(path, trusted=trusted)
    runtime = skops(path, trusted)
    np.testing.assert_array_equal(runtime.predict(ROWS).probabilities, pipeline.predict_proba(ROWS))


def test_skops_runtime_refuses_untrusted_types(tmp_path: Path) -> None:
    """A file needing a type outside skops' safe set and skops_trusted_types is refused."""
    path = tmp_path / "sum.skops"
    sio.dump(fakes.SumRegressor().fit(None, None), path)
    with pytest.raises(
        ModelLoadError, match=r"not in skops_trusted_types: tests\.fakes\.SumRegressor"
    ):
        skops(path, [])


def test_skops_runtime_loads_listed_trusted_types(tmp_path: Path) -> None:
    """Listing the extra type in skops_trusted_types lets the file load."""
    path = tmp_path / "sum.skops"
    sio.dump(fakes.SumRegressor().fit(None, None), path)
    runtime = skops(path, ["tests.fakes.SumRegressor"])
    np.testing.assert_array_equal(runtime.predict(ROWS).values, ROWS.sum(axis=1))


def test_onnx_runtime_probabilities_equal_session_output(demo_models_dir: Path) -> None:
    """The ONNX runtime returns the session's probability output for the same float32 rows."""
    path = demo_models_dir / "iris.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = session.run(["probabilities"], {"X": ROWS.astype(np.float32)})[0]
    output = OnnxRuntime(artifact(path), classifier_hint=None).predict(ROWS)
    np.testing.assert_array_equal(output.probabilities, expected.astype(np.float64))


def test_onnx_runtime_metadata_of_a_classifier(demo_models_dir: Path) -> None:
    """The input width and classifier-ness come from the graph."""
    meta = OnnxRuntime(artifact(demo_models_dir / "iris.onnx"), classifier_hint=None).metadata
    assert (meta.n_features, meta.is_classifier) == (4, True)


def test_onnx_runtime_zipmap_output_becomes_a_matrix(tmp_path: Path) -> None:
    """skl2onnx's ZipMap output (a list of dicts) becomes an (n, k) matrix and named classes."""
    from skl2onnx import to_onnx

    pipeline: Pipeline = joblib.load(_demo_joblib(tmp_path))
    path = tmp_path / "zipmap.onnx"
    path.write_bytes(
        to_onnx(pipeline, ROWS[:1].astype(np.float32), target_opset=17).SerializeToString()
    )
    runtime = OnnxRuntime(artifact(path), classifier_hint=None)
    assert runtime.metadata.classes == ["0", "1", "2"]
    np.testing.assert_allclose(
        floats(runtime.predict(ROWS).probabilities), pipeline.predict_proba(ROWS), atol=1e-5
    )


def test_onnx_runtime_plain_regressor_output(tmp_path: Path) -> None:
    """A single-tensor regressor export answers one value per row."""
    from skl2onnx import to_onnx

    regressor = LinearRegression().fit(IRIS_X, IRIS_X[:, 0] * 2)
    path = tmp_path / "reg.onnx"
    path.write_bytes(to_onnx(regressor, ROWS[:1].astype(np.float32)).SerializeToString())
    runtime = OnnxRuntime(artifact(path), classifier_hint=None)
    output = runtime.predict(ROWS)
    assert runtime.metadata.is_classifier is False
    assert output.values is not None
    assert output.values.shape == (len(ROWS),)
    np.testing.assert_allclose(floats(output.values), ROWS[:, 0] * 2, rtol=1e-4)


def test_torchscript_runtime_probabilities_equal_softmax_of_forward(demo_models_dir: Path) -> None:
    """Logits from the module's forward become its softmax probabilities."""
    path = demo_models_dir / "iris.pt"
    with torch.inference_mode():
        logits = _torch_load(path)(torch.tensor(ROWS, dtype=torch.float32))
        expected = torch.softmax(logits, dim=1).numpy()
    output = torchscript(path).predict(ROWS)
    np.testing.assert_allclose(floats(output.probabilities), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("output", "field"),
    [("raw", "values"), ("probabilities", "probabilities")],
    ids=["raw", "probabilities"],
)
def test_torchscript_runtime_output_modes_pass_values_through(
    demo_models_dir: Path, output: TorchOutput, field: str
) -> None:
    """`raw` and `probabilities` modes return the module's output unchanged (no softmax)."""
    path = demo_models_dir / "iris.pt"
    with torch.inference_mode():
        expected = _torch_load(path)(torch.tensor(ROWS, dtype=torch.float32)).numpy()
    result = getattr(torchscript(path, output).predict(ROWS), field)
    np.testing.assert_allclose(floats(result), expected, rtol=1e-6)


@pytest.mark.skipif(CUDA, reason="CUDA is available here: the CUDA tests below run instead")
def test_torchscript_runtime_cuda_unavailable_is_a_load_error(demo_models_dir: Path) -> None:
    """Asking for CUDA on a machine without it fails the load with a clear reason."""
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        TorchScriptRuntime(
            artifact(demo_models_dir / "iris.pt"),
            n_features=4,
            device="cuda",
            output="logits",
            classifier_hint=True,
        )


@pytest.mark.skipif(not CUDA, reason="no CUDA device on this machine: the CUDA path needs one")
@pytest.mark.parametrize("device", ["cuda", "auto"])
def test_torchscript_runtime_on_cuda_equals_the_cpu_output(
    demo_models_dir: Path, device: Literal["cuda", "auto"]
) -> None:
    """On a GPU (asked for, or picked by `auto`) the answers equal the CPU runtime's."""
    path = demo_models_dir / "iris.pt"
    on_gpu = TorchScriptRuntime(
        artifact(path), n_features=4, device=device, output="logits", classifier_hint=True
    ).predict(ROWS)
    on_cpu = torchscript(path).predict(ROWS)
    np.testing.assert_allclose(
        floats(on_gpu.probabilities), floats(on_cpu.probabilities), rtol=1e-5, atol=1e-6
    )


def test_softmax_rows_sum_to_one_and_keep_order() -> None:
    """Softmax is row-wise, sums to one and keeps the arg-max, even for huge logits."""
    logits = np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0]])
    result = softmax(logits)
    np.testing.assert_allclose(result.sum(axis=1), 1.0)
    assert result.argmax(axis=1).tolist() == [2, 0]


@pytest.mark.parametrize(
    ("scores", "is_softmaxed"),
    [
        (np.array([[0.2, 0.8], [0.5, 0.5]]), False),
        (np.array([[2.0, -1.0], [0.0, 0.0]]), True),
        (np.array([[0.2, 0.3]]), True),
    ],
    ids=["distributions-kept", "logits-softmaxed", "not-summing-to-one"],
)
def test_to_probabilities_keeps_distributions_and_softmaxes_logits(
    scores: npt.NDArray[np.float64], is_softmaxed: bool
) -> None:
    """Rows that are already distributions pass; anything else is treated as logits."""
    expected = softmax(scores) if is_softmaxed else scores
    np.testing.assert_allclose(to_probabilities(scores), expected)


def _demo_joblib(tmp_path: Path) -> Path:
    from modelserve.demo import build_pipeline

    path = tmp_path / "iris.joblib"
    joblib.dump(build_pipeline()[0], path)
    return path
