"""Loader: format detection, sha256 pins checked before deserializing, load failures."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from modelserve.errors import ChecksumMismatchError, ModelLoadError, PinRequiredError
from modelserve.inference.artifact import file_sha256, read_artifact
from modelserve.inference.loader import (
    FORMATS,
    PreprocessedRuntime,
    detect_format,
    load_runtime,
)
from modelserve.inference.runtimes.base import Runtime
from modelserve.settings import ModelConfig


class _MakesDirectoryWhenUnpickled:
    """A pickle payload with a visible side effect, to prove whether a file was deserialized."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


def config(path: Path, **fields: Any) -> ModelConfig:
    return ModelConfig(name="m", path=path, **fields)


def load(model: ModelConfig, *, require_sha256: bool = False) -> Runtime:
    return load_runtime(model, require_sha256=require_sha256).runtime


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("model.pkl", "sklearn"),
        ("model.pickle", "sklearn"),
        ("model.joblib", "sklearn"),
        ("MODEL.JOBLIB", "sklearn"),
        ("model.skops", "skops"),
        ("model.onnx", "onnx"),
        ("model.pt", "torchscript"),
        ("model.pth", "torchscript"),
        ("model.ts", "torchscript"),
    ],
    ids=str,
)
def test_detect_format_from_extension(filename: str, expected: str) -> None:
    """The extension picks the runtime, case-insensitively."""
    assert detect_format(Path(filename)) == expected


def test_detect_format_configured_format_wins() -> None:
    """A configured format overrides the extension."""
    assert detect_format(Path("model.bin"), "onnx") == "onnx"


def test_detect_format_unknown_extension_asks_for_format() -> None:
    """An unknown extension is a load error that says to set `format`."""
    with pytest.raises(ModelLoadError, match="set `format`"):
        detect_format(Path("model.bin"))


def test_file_sha256_is_the_digest_of_the_bytes(tmp_path: Path) -> None:
    """The digest is the ordinary sha256 of the file's bytes (even past one read chunk)."""
    data = os.urandom((1 << 20) + 17)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_read_artifact_mismatch_names_both_digests(tmp_path: Path) -> None:
    """A mismatch says which digest was pinned and which was found."""
    path = tmp_path / "blob"
    path.write_bytes(b"abc")
    with pytest.raises(ChecksumMismatchError) as info:
        read_artifact(path, "0" * 64, runs_code=True, require_sha256=False)
    assert "0" * 64 in info.value.detail
    assert hashlib.sha256(b"abc").hexdigest() in info.value.detail
    assert info.value.code == "checksum_mismatch"


def test_load_runtime_matching_pin_loads(demo_models_dir: Path) -> None:
    """A file whose digest matches its pin loads."""
    path = demo_models_dir / "iris.joblib"
    runtime = load(config(path, sha256=file_sha256(path)))
    assert runtime.metadata.n_features == 4


def test_load_runtime_pin_mismatch_refuses_before_unpickling(tmp_path: Path) -> None:
    """With a wrong pin the pickle is never deserialized: its side effect does not happen."""
    marker = tmp_path / "unpickled"
    path = tmp_path / "payload.pkl"
    path.write_bytes(pickle.dumps(_MakesDirectoryWhenUnpickled(marker)))
    with pytest.raises(ChecksumMismatchError):
        load(config(path, sha256="0" * 64))
    assert not marker.exists()


def test_load_runtime_matching_pin_does_unpickle(tmp_path: Path) -> None:
    """Control for the test above: with the right pin the payload does run when loaded."""
    marker = tmp_path / "unpickled"
    path = tmp_path / "payload.pkl"
    path.write_bytes(pickle.dumps(_MakesDirectoryWhenUnpickled(marker)))
    with pytest.raises(ModelLoadError):  # os.mkdir returns None, which is not a model
        load(config(path, sha256=file_sha256(path)))
    assert marker.is_dir()


def test_load_runtime_missing_file(tmp_path: Path) -> None:
    """A configured path that does not exist is a load error naming it."""
    with pytest.raises(ModelLoadError, match=r"model file not found: .*absent\.joblib"):
        load(config(tmp_path / "absent.joblib"))


@pytest.mark.parametrize(
    ("filename", "fmt"),
    [
        ("corrupt.joblib", "auto"),
        ("corrupt.pkl", "auto"),
        ("corrupt.skops", "auto"),
        ("corrupt.onnx", "auto"),
        ("corrupt.pt", "auto"),
        ("corrupt.bin", "sklearn"),
    ],
    ids=["joblib", "pickle", "skops", "onnx", "torchscript", "forced-format"],
)
def test_load_runtime_corrupt_file_is_a_load_error(tmp_path: Path, filename: str, fmt: str) -> None:
    """Garbage in any format becomes a ModelLoadError naming the file, never another exception."""
    path = tmp_path / filename
    path.write_bytes(b"this is not a model file at all")
    with pytest.raises(ModelLoadError, match="corrupt"):
        load(config(path, format=fmt))


def test_load_runtime_pickle_of_a_non_model(tmp_path: Path) -> None:
    """A valid pickle that holds no estimator is refused as not a model."""
    path = tmp_path / "dict.pkl"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(ModelLoadError, match="not a model"):
        load(config(path))


def test_load_runtime_forced_format_reads_any_extension(
    demo_models_dir: Path, tmp_path: Path
) -> None:
    """`format` lets a file with an unusual extension load."""
    path = tmp_path / "iris.model"
    shutil.copy(demo_models_dir / "iris.onnx", path)
    assert load(config(path, format="onnx")).format == "onnx"


def test_load_runtime_wraps_a_preprocessor(demo_models_dir: Path, tmp_path: Path) -> None:
    """A configured pre-processor transforms rows before the model sees them."""
    import joblib

    scaler = StandardScaler().fit(np.array([[0.0] * 4, [2.0] * 4]))
    joblib.dump(scaler, tmp_path / "scale.joblib")
    runtime = load(
        config(demo_models_dir / "iris.joblib", preprocessor={"path": tmp_path / "scale.joblib"})
    )
    assert isinstance(runtime, PreprocessedRuntime)
    rows = np.array([[5.1, 3.5, 1.4, 0.2]])
    expected = runtime.inner.predict(scaler.transform(rows)).probabilities
    np.testing.assert_array_equal(runtime.predict(rows).probabilities, expected)


def test_load_runtime_preprocessor_pin_mismatch(demo_models_dir: Path, tmp_path: Path) -> None:
    """The pre-processor's pin is checked like the model's."""
    import joblib

    joblib.dump(StandardScaler().fit(np.zeros((2, 4))), tmp_path / "scale.joblib")
    pre = {"path": tmp_path / "scale.joblib", "sha256": "0" * 64}
    with pytest.raises(ChecksumMismatchError):
        load(config(demo_models_dir / "iris.joblib", preprocessor=pre))


def test_load_runtime_preprocessor_without_transform(demo_models_dir: Path) -> None:
    """A pre-processor file holding something without transform() is refused."""
    with pytest.raises(ModelLoadError, match="no transform"):
        load(
            config(
                demo_models_dir / "iris.joblib",
                preprocessor={"path": demo_models_dir / "iris.joblib"},
            )
        )


@pytest.mark.parametrize(
    ("filename", "fmt"),
    [("payload.pkl", "auto"), ("payload.joblib", "auto"), ("payload.pt", "auto")],
    ids=["pickle", "joblib", "torchscript"],
)
def test_load_runtime_require_sha256_refuses_unpinned_code_formats(
    tmp_path: Path, filename: str, fmt: str
) -> None:
    """With require_sha256 an unpinned file of a code-running format is never deserialized."""
    marker = tmp_path / "unpickled"
    path = tmp_path / filename
    path.write_bytes(pickle.dumps(_MakesDirectoryWhenUnpickled(marker)))
    with pytest.raises(PinRequiredError, match="require_sha256 is on") as info:
        load(config(path, format=fmt), require_sha256=True)
    assert info.value.code == "sha256_required"
    assert not marker.exists()


def test_load_runtime_require_sha256_refuses_an_unpinned_preprocessor(
    demo_models_dir: Path, tmp_path: Path
) -> None:
    """A joblib pre-processor is pickle too: unpinned, it refuses the version before any load."""
    import joblib

    joblib.dump(StandardScaler().fit(np.zeros((2, 4))), tmp_path / "scale.joblib")
    model = demo_models_dir / "iris.joblib"
    pinned = config(
        model, sha256=file_sha256(model), preprocessor={"path": tmp_path / "scale.joblib"}
    )
    with pytest.raises(PinRequiredError, match=r"scale\.joblib"):
        load(pinned, require_sha256=True)


@pytest.mark.parametrize("filename", ["iris.onnx", "iris.skops"], ids=["onnx", "skops"])
def test_load_runtime_require_sha256_loads_unpinned_data_formats(
    demo_models_dir: Path, filename: str
) -> None:
    """ONNX and .skops run no code from the file, so they load without a pin."""
    path = demo_models_dir / filename
    model = config(path, skops_trusted_types=_skops_types(demo_models_dir / "iris.skops"))
    assert load(model, require_sha256=True).metadata.n_features == 4


def _skops_types(path: Path) -> list[str]:
    import skops.io as sio

    return [str(t) for t in sio.get_untrusted_types(file=path)]


@pytest.mark.parametrize(
    "filename", ["iris.joblib", "iris.skops", "iris.onnx", "iris.pt"], ids=lambda n: n[5:]
)
def test_runtime_is_built_from_the_hashed_bytes(
    demo_models_dir: Path, tmp_path: Path, filename: str
) -> None:
    """Each runtime deserializes the bytes that were read and hashed, never the file again."""
    path = tmp_path / filename
    shutil.copy(demo_models_dir / filename, path)
    artifact = read_artifact(path, file_sha256(path), runs_code=True, require_sha256=True)
    path.write_bytes(b"swapped after the sha256 check")
    model = config(
        path,
        n_features=4,
        torch_output="logits",
        skops_trusted_types=_skops_types(demo_models_dir / "iris.skops"),
    )
    runtime = FORMATS[detect_format(path)].build(artifact, model)
    probabilities = runtime.predict(np.array([[5.1, 3.5, 1.4, 0.2]])).probabilities
    assert probabilities is not None
    assert int(np.argmax(probabilities)) == 0


def test_load_runtime_reports_the_digests_of_the_loaded_bytes(
    demo_models_dir: Path, tmp_path: Path
) -> None:
    """The digests returned are those of the model and pre-processor bytes that were loaded."""
    import joblib

    joblib.dump(StandardScaler().fit(np.zeros((2, 4))), tmp_path / "scale.joblib")
    model = demo_models_dir / "iris.joblib"
    loaded = load_runtime(
        config(model, preprocessor={"path": tmp_path / "scale.joblib"}), require_sha256=False
    )
    assert loaded.sha256 == (file_sha256(model), file_sha256(tmp_path / "scale.joblib"))
