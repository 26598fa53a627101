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

from modelserve.errors import ChecksumMismatchError, ModelLoadError
from modelserve.inference.loader import (
    PreprocessedRuntime,
    detect_format,
    file_sha256,
    load_runtime,
    verify_sha256,
)
from modelserve.settings import ModelConfig


class _MakesDirectoryWhenUnpickled:
    """A pickle payload with a visible side effect, to prove whether a file was deserialized."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


def config(path: Path, **fields: Any) -> ModelConfig:
    return ModelConfig(name="m", path=path, **fields)


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


def test_verify_sha256_mismatch_names_both_digests(tmp_path: Path) -> None:
    """A mismatch says which digest was pinned and which was found."""
    path = tmp_path / "blob"
    path.write_bytes(b"abc")
    with pytest.raises(ChecksumMismatchError) as info:
        verify_sha256(path, "0" * 64)
    assert "0" * 64 in info.value.detail
    assert hashlib.sha256(b"abc").hexdigest() in info.value.detail
    assert info.value.code == "checksum_mismatch"


def test_load_runtime_matching_pin_loads(demo_models_dir: Path) -> None:
    """A file whose digest matches its pin loads."""
    path = demo_models_dir / "iris.joblib"
    runtime = load_runtime(config(path, sha256=file_sha256(path)))
    assert runtime.metadata.n_features == 4


def test_load_runtime_pin_mismatch_refuses_before_unpickling(tmp_path: Path) -> None:
    """With a wrong pin the pickle is never deserialized: its side effect does not happen."""
    marker = tmp_path / "unpickled"
    path = tmp_path / "payload.pkl"
    path.write_bytes(pickle.dumps(_MakesDirectoryWhenUnpickled(marker)))
    with pytest.raises(ChecksumMismatchError):
        load_runtime(config(path, sha256="0" * 64))
    assert not marker.exists()


def test_load_runtime_matching_pin_does_unpickle(tmp_path: Path) -> None:
    """Control for the test above: with the right pin the payload does run when loaded."""
    marker = tmp_path / "unpickled"
    path = tmp_path / "payload.pkl"
    path.write_bytes(pickle.dumps(_MakesDirectoryWhenUnpickled(marker)))
    with pytest.raises(ModelLoadError):  # os.mkdir returns None, which is not a model
        load_runtime(config(path, sha256=file_sha256(path)))
    assert marker.is_dir()


def test_load_runtime_missing_file(tmp_path: Path) -> None:
    """A configured path that does not exist is a load error naming it."""
    with pytest.raises(ModelLoadError, match=r"model file not found: .*absent\.joblib"):
        load_runtime(config(tmp_path / "absent.joblib"))


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
        load_runtime(config(path, format=fmt))


def test_load_runtime_pickle_of_a_non_model(tmp_path: Path) -> None:
    """A valid pickle that holds no estimator is refused as not a model."""
    path = tmp_path / "dict.pkl"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(ModelLoadError, match="not a model"):
        load_runtime(config(path))


def test_load_runtime_forced_format_reads_any_extension(
    demo_models_dir: Path, tmp_path: Path
) -> None:
    """`format` lets a file with an unusual extension load."""
    path = tmp_path / "iris.model"
    shutil.copy(demo_models_dir / "iris.onnx", path)
    assert load_runtime(config(path, format="onnx")).format == "onnx"


def test_load_runtime_wraps_a_preprocessor(demo_models_dir: Path, tmp_path: Path) -> None:
    """A configured pre-processor transforms rows before the model sees them."""
    import joblib

    scaler = StandardScaler().fit(np.array([[0.0] * 4, [2.0] * 4]))
    joblib.dump(scaler, tmp_path / "scale.joblib")
    runtime = load_runtime(
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
        load_runtime(config(demo_models_dir / "iris.joblib", preprocessor=pre))


def test_load_runtime_preprocessor_without_transform(demo_models_dir: Path) -> None:
    """A pre-processor file holding something without transform() is refused."""
    with pytest.raises(ModelLoadError, match="no transform"):
        load_runtime(
            config(
                demo_models_dir / "iris.joblib",
                preprocessor={"path": demo_models_dir / "iris.joblib"},
            )
        )
