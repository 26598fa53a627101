"""Turn a ModelConfig into a loaded Runtime: detect the format, verify the pinned digest, load."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from modelserve.errors import ChecksumMismatchError, ModelLoadError
from modelserve.inference.runtimes.base import Runtime
from modelserve.inference.types import FloatArray, ModelMetadata, RawOutput
from modelserve.settings import ModelConfig, PreprocessorConfig

FORMAT_BY_SUFFIX = {
    ".pkl": "sklearn",
    ".pickle": "sklearn",
    ".joblib": "sklearn",
    ".skops": "skops",
    ".onnx": "onnx",
    ".pt": "torchscript",
    ".pth": "torchscript",
    ".ts": "torchscript",
    ".torchscript": "torchscript",
}
_CHUNK = 1 << 20


def detect_format(path: Path, configured: str = "auto") -> str:
    """The configured format, or the one the file extension implies."""
    if configured != "auto":
        return configured
    try:
        return FORMAT_BY_SUFFIX[path.suffix.lower()]
    except KeyError:
        known = ", ".join(sorted(FORMAT_BY_SUFFIX))
        raise ModelLoadError(
            f"cannot tell the format of {path.name} from its extension ({known}); set `format`"
        ) from None


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str | None) -> None:
    """Refuse a file whose digest differs from the pinned one (before it is deserialized)."""
    if expected is None:
        return
    actual = file_sha256(path)
    if actual != expected.lower():
        raise ChecksumMismatchError(str(path), expected, actual)


def load_runtime(config: ModelConfig) -> Runtime:
    """Load the model (and its pre-processor, if any) that ``config`` describes."""
    runtime = _load_model(config)
    if config.preprocessor is not None:
        runtime = PreprocessedRuntime(_load_transformer(config.preprocessor), runtime)
    return runtime


def _check_file(path: Path, sha256: str | None) -> None:
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    verify_sha256(path, sha256)


def _load_model(config: ModelConfig) -> Runtime:
    fmt = detect_format(config.path, config.format)
    _check_file(config.path, config.sha256)
    classifier_hint = _classifier_hint(config)
    try:
        if fmt == "sklearn":
            from modelserve.inference.runtimes.sklearn import load_pickle

            return load_pickle(config.path, config.label_from)
        if fmt == "skops":
            from modelserve.inference.runtimes.sklearn import load_skops

            return load_skops(config.path, config.skops_trusted_types, config.label_from)
        if fmt == "onnx":
            from modelserve.inference.runtimes.onnx import OnnxRuntime

            return OnnxRuntime(config.path, classifier_hint=classifier_hint)
        from modelserve.inference.runtimes.torchscript import TorchScriptRuntime

        return TorchScriptRuntime(
            config.path,
            n_features=config.n_features or declared_width(config),
            device=config.torch_device,
            output=config.torch_output,
            classifier_hint=classifier_hint,
        )
    except ModelLoadError:
        raise
    except Exception as exc:
        # Corrupt pickles raise anything at all; the reason goes to the log and /models.
        raise ModelLoadError(
            f"could not load {config.path.name}: {type(exc).__name__}: {exc}"
        ) from exc


def _classifier_hint(config: ModelConfig) -> bool | None:
    if config.task != "auto":
        return config.task == "classifier"
    return True if config.labels else None


def declared_width(config: ModelConfig) -> int | None:
    """The input width the config implies (warm-up rows or feature names), if any."""
    if config.warmup_input:
        return len(config.warmup_input[0])
    if config.feature_names:
        return len(config.feature_names)
    return None


def _load_transformer(config: PreprocessorConfig) -> Any:
    _check_file(config.path, config.sha256)
    try:
        if config.path.suffix.lower() == ".skops":
            from modelserve.inference.runtimes.sklearn import load_skops_object

            return load_skops_object(config.path, config.skops_trusted_types)
        import joblib

        transformer = joblib.load(config.path)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"could not load pre-processor {config.path.name}: {exc}") from exc
    if not hasattr(transformer, "transform"):
        raise ModelLoadError(f"pre-processor {config.path.name} has no transform()")
    return transformer


class PreprocessedRuntime:
    """A runtime whose input first goes through a fitted transformer (clients send raw rows)."""

    def __init__(self, transformer: Any, inner: Runtime) -> None:
        self.transformer = transformer
        self.inner = inner
        self.format = inner.format
        width = getattr(transformer, "n_features_in_", None)
        meta = inner.metadata
        names = getattr(transformer, "feature_names_in_", None)
        self._metadata = ModelMetadata(
            n_features=int(width) if width is not None else meta.n_features,
            is_classifier=meta.is_classifier,
            classes=meta.classes,
            feature_names=[str(n) for n in names] if names is not None else None,
        )

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    def predict(self, batch: FloatArray) -> RawOutput:
        transformed = np.asarray(self.transformer.transform(batch), dtype=np.float64)
        return self.inner.predict(transformed)
