"""Turn a ModelConfig into a loaded Runtime: detect the format, read and verify the bytes, load.

Each format is one :class:`FormatSpec` entry: its file suffixes, whether loading it runs code
from the file (then ``require_sha256`` demands a pin), and the builder that deserializes an
:class:`~modelserve.inference.artifact.Artifact`. The file is read once; the bytes that were
hashed are the bytes the builder gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from modelserve.errors import ModelLoadError
from modelserve.inference.artifact import (
    Artifact,
    DirectoryArtifact,
    read_artifact,
    read_directory,
)
from modelserve.inference.runtimes.base import Runtime, RuntimeBuilder, classifier_hint
from modelserve.inference.runtimes.extras import EXTRA_OF_MODULE, missing_extra_message
from modelserve.inference.types import FloatArray, ModelMetadata, RawOutput
from modelserve.settings import ModelConfig, PreprocessorConfig


def _build_pickle(artifact: Artifact, config: ModelConfig) -> Runtime:
    from modelserve.inference.runtimes.sklearn import load_pickle

    return load_pickle(artifact, config)


def _build_skops(artifact: Artifact, config: ModelConfig) -> Runtime:
    from modelserve.inference.runtimes.sklearn import load_skops

    return load_skops(artifact, config)


def _build_onnx(artifact: Artifact, config: ModelConfig) -> Runtime:
    from modelserve.inference.runtimes.onnx import load_onnx

    return load_onnx(artifact, config)


def _build_torchscript(artifact: Artifact, config: ModelConfig) -> Runtime:
    from modelserve.inference.runtimes.torchscript import load_torchscript

    return load_torchscript(artifact, config)


def _build_xgboost(artifact: Artifact, config: ModelConfig) -> Runtime:
    from modelserve.inference.runtimes.xgboost import XGBoostRuntime

    return XGBoostRuntime(artifact, classifier_hint=classifier_hint(config))


def _build_lightgbm(artifact: Artifact, config: ModelConfig) -> Runtime:
    from modelserve.inference.runtimes.lightgbm import LightGBMRuntime

    return LightGBMRuntime(artifact)


def _build_catboost(artifact: Artifact, config: ModelConfig) -> Runtime:
    from modelserve.inference.runtimes.catboost import CatBoostRuntime

    return CatBoostRuntime(artifact)


def _build_mlflow(artifact: Artifact, config: ModelConfig) -> Runtime:
    from modelserve.inference.runtimes.mlflow import load_mlflow

    if not isinstance(artifact, DirectoryArtifact):
        raise ModelLoadError(f"{artifact.name} is a file; an MLflow model is a directory")
    return load_mlflow(artifact, config)


def _build_python(artifact: Artifact, config: ModelConfig) -> Runtime:
    raise ModelLoadError("format python names a class, not a file: use load_runtime")


def _load_python(config: ModelConfig, require_sha256: bool) -> tuple[Runtime, list[str]]:
    from modelserve.inference.runtimes.python import load_python

    return load_python(config, require_sha256=require_sha256)


class SelfReadingLoader(Protocol):
    """Finds, verifies and loads its own files (user code: a module and an artifacts folder)."""

    def __call__(self, config: ModelConfig, require_sha256: bool) -> tuple[Runtime, list[str]]: ...


@dataclass(frozen=True, slots=True)
class FormatSpec:
    """One loadable format."""

    name: str
    suffixes: tuple[str, ...]
    runs_code: bool
    """Loading executes code from the file (pickle, TorchScript): a pin is then the trust."""
    build: RuntimeBuilder
    directory: bool = False
    """The artifact is a directory (an MLflow model), read whole as a DirectoryArtifact."""
    reads_itself: SelfReadingLoader | None = None
    """For a format whose ``path`` names no file (``python``: a class), used instead of
    ``build``: finds and verifies what it loads, returns the runtime and those digests."""


FORMATS = {
    f.name: f
    for f in (
        FormatSpec("sklearn", (".pkl", ".pickle", ".joblib"), True, _build_pickle),
        FormatSpec("skops", (".skops",), False, _build_skops),
        FormatSpec("onnx", (".onnx",), False, _build_onnx),
        FormatSpec("torchscript", (".pt", ".pth", ".ts", ".torchscript"), True, _build_torchscript),
        FormatSpec("xgboost", (".json", ".ubj"), False, _build_xgboost),
        FormatSpec("lightgbm", (".txt",), False, _build_lightgbm),
        FormatSpec("catboost", (".cbm",), False, _build_catboost),
        # Its flavours may be pickles (sklearn, the LightGBM wrappers, python_function).
        FormatSpec("mlflow", (), True, _build_mlflow, directory=True),
        # User code: its module source file (and artifacts folder) are what a pin covers.
        FormatSpec("python", (), True, _build_python, reads_itself=_load_python),
    )
}
MLFLOW_MODEL_FILE = "MLmodel"
FORMAT_BY_SUFFIX = {suffix: f.name for f in FORMATS.values() for suffix in f.suffixes}


@dataclass(frozen=True, slots=True)
class LoadedRuntime:
    """A runtime and the sha256 of every file it was built from (model, then pre-processor)."""

    runtime: Runtime
    sha256: tuple[str, ...]


def detect_format(path: Path, configured: str = "auto") -> str:
    """The configured format, an MLflow model directory, or the one the extension implies."""
    if configured != "auto":
        return configured
    if (path / MLFLOW_MODEL_FILE).is_file():
        return "mlflow"
    try:
        return FORMAT_BY_SUFFIX[path.suffix.lower()]
    except KeyError:
        known = ", ".join(sorted(FORMAT_BY_SUFFIX))
        raise ModelLoadError(
            f"cannot tell the format of {path.name} from its extension ({known}) and it is no"
            " MLflow model directory; set `format`"
        ) from None


@dataclass(frozen=True, slots=True)
class VerifiedFiles:
    """A version's files, read once and checked against their pins, not yet deserialized."""

    format: str
    artifact: Artifact
    preprocessor: Artifact | None

    @property
    def sha256(self) -> tuple[str, ...]:
        """The digest of every file, model first."""
        if self.preprocessor is None:
            return (self.artifact.sha256,)
        return (self.artifact.sha256, self.preprocessor.sha256)


def load_runtime(config: ModelConfig, *, require_sha256: bool) -> LoadedRuntime:
    """Load the model (and its pre-processor, if any) that ``config`` describes.

    Every file is read and checked before any is deserialized. With ``require_sha256``, a file
    whose format runs code on load is refused unless pinned. With ``isolation: process`` the
    verified bytes are handed to a child process that builds and runs the model there.
    """
    fmt = FORMATS[detect_format(config.path, config.format)]
    if fmt.reads_itself is not None:  # the config refuses a pre-processor for these
        runtime, digests = fmt.reads_itself(config, require_sha256)
        return LoadedRuntime(runtime, tuple(digests))
    files = verify_files(fmt, config, require_sha256=require_sha256)
    if config.isolation == "process":
        from modelserve.inference.model_process import ProcessRuntime

        return LoadedRuntime(ProcessRuntime.start(files, config), files.sha256)
    return LoadedRuntime(build_runtime(files, config), files.sha256)


def verify_files(fmt: FormatSpec, config: ModelConfig, *, require_sha256: bool) -> VerifiedFiles:
    """Read the model's file (or directory) and its pre-processor's, each checked."""
    read = read_directory if fmt.directory else read_artifact
    artifact = read(
        config.path, config.sha256, runs_code=fmt.runs_code, require_sha256=require_sha256
    )
    pre = config.preprocessor
    pre_artifact = None
    if pre is not None:
        pre_artifact = read_artifact(
            pre.path, pre.sha256, runs_code=not _is_skops(pre.path), require_sha256=require_sha256
        )
    return VerifiedFiles(fmt.name, artifact, pre_artifact)


def build_runtime(files: VerifiedFiles, config: ModelConfig) -> Runtime:
    """Deserialize verified files with the format's builder (in this process)."""
    artifact = files.artifact
    try:
        runtime = FORMATS[files.format].build(artifact, config)
    except ModelLoadError:
        raise
    except ModuleNotFoundError as exc:
        raise _missing_module(artifact.name, exc) from exc
    except Exception as exc:
        # Corrupt pickles raise anything at all; the reason goes to the log and /models.
        raise ModelLoadError(
            f"could not load {artifact.name}: {type(exc).__name__}: {exc}"
        ) from exc
    pre = config.preprocessor
    if pre is None or files.preprocessor is None:
        return runtime
    return PreprocessedRuntime(_load_transformer(pre, files.preprocessor), runtime)


def _missing_module(name: str, exc: ModuleNotFoundError) -> ModelLoadError:
    """A pickle of an XGBoost/LightGBM/CatBoost/MLflow object whose library is missing."""
    module = (exc.name or "").split(".")[0]
    if module in EXTRA_OF_MODULE:
        return ModelLoadError(missing_extra_message(module, name))
    return ModelLoadError(f"could not load {name}: {exc}")


def declared_width(config: ModelConfig) -> int | None:
    """The input width the config implies (typed features, warm-up rows or feature names)."""
    if config.features:
        return len(config.features)
    if config.warmup_input:
        return len(config.warmup_input[0])
    if config.feature_names:
        return len(config.feature_names)
    return None


def _is_skops(path: Path) -> bool:
    return path.suffix.lower() == ".skops"


def _load_transformer(config: PreprocessorConfig, artifact: Artifact) -> Any:
    try:
        if _is_skops(config.path):
            from modelserve.inference.runtimes.sklearn import load_skops_object

            transformer = load_skops_object(artifact, config.skops_trusted_types)
        else:
            from modelserve.inference.runtimes.sklearn import load_pickle_object

            transformer = load_pickle_object(artifact)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"could not load pre-processor {artifact.name}: {exc}") from exc
    if not hasattr(transformer, "transform"):
        raise ModelLoadError(f"pre-processor {artifact.name} has no transform()")
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
            platform=meta.platform,
        )

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    def predict(self, batch: FloatArray) -> RawOutput:
        transformed = np.asarray(self.transformer.transform(batch), dtype=np.float64)
        return self.inner.predict(transformed)
