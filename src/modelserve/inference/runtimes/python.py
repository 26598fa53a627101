"""``format: python``: a model class of the user's own, named ``package.module:ClassName``.

The class is instantiated with no arguments, then ``load(artifacts_dir)`` is called once (the
configured ``artifacts`` directory as a :class:`~pathlib.Path`, or ``None``). Each batch goes
``preprocess(batch)`` (optional) → ``predict_proba(batch)`` if the class has it, else
``predict(batch)`` → ``postprocess(output)`` (optional, applied to each output) → modelserve's
own post-processing (labels, probabilities, rounding). Calls come from the version's inference
threads, like every runtime's: with ``inference_threads`` above 1 they run at once.

What the model is comes from the instance after ``load`` (class or instance attributes):
``classes`` (class names in output order), ``feature_names``, ``n_features``, and ``task``
(``classifier`` or ``regressor``; default: classifier with ``predict_proba`` or ``classes``); the
config's ``labels``, ``feature_names``, ``n_features`` and ``task`` take precedence.

An artifacts directory that is pinned (``artifacts_sha256``, demanded by ``require_sha256``) is
read whole, checked, and its verified bytes written to a private temporary copy that ``load``
gets: reading the original again after the check could see other files. Unpinned, ``load``
gets the configured directory itself (its digest still identifies the version for the cache).
"""

from __future__ import annotations

import tempfile
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from modelserve.errors import ModelLoadError, PinRequiredError
from modelserve.inference.artifact import directory_sha256, read_directory
from modelserve.inference.runtimes.usercode import import_class
from modelserve.inference.types import FloatArray, ModelMetadata, RawOutput
from modelserve.settings import ModelConfig

_TASKS = ("classifier", "regressor")


class PythonRuntime:
    """A loaded user model class behind the Runtime contract."""

    format = "python"

    def __init__(
        self,
        model: Any,
        *,
        label_from: str = "argmax",
        artifacts_copy: tempfile.TemporaryDirectory[str] | None = None,
    ) -> None:
        self._model = model
        if artifacts_copy is not None:  # removed with the runtime (a reload retires it)
            weakref.finalize(self, artifacts_copy.cleanup)
        self._preprocess = _hook(model, "preprocess")
        self._postprocess = _hook(model, "postprocess")
        self._predict_proba = _hook(model, "predict_proba")
        self._predict = _hook(model, "predict")
        self._metadata = _read_metadata(model, has_proba=self._predict_proba is not None)
        self._use_proba = self._predict_proba is not None and self._metadata.is_classifier
        self._also_predict = self._use_proba and label_from == "predict"
        if self._predict is None and (self._also_predict or not self._use_proba):
            needs = "predict(self, batch)" + ("" if self._also_predict else " or predict_proba")
            raise ModelLoadError(f"{type(model).__name__} has no {needs}")

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    def predict(self, batch: FloatArray) -> RawOutput:
        return self._run(batch)

    def predict_frame(self, frame: Any) -> RawOutput:
        """A model with typed ``features``: the hooks get one pandas DataFrame per call."""
        return self._run(frame)

    def _run(self, batch: Any) -> RawOutput:
        inputs = self._preprocess(batch) if self._preprocess is not None else batch
        if self._use_proba and self._predict_proba is not None:
            probabilities = np.asarray(self._finish(self._predict_proba(inputs)), np.float64)
            values = self._finish(self._call_predict(inputs)) if self._also_predict else None
            return RawOutput(
                probabilities=probabilities, values=None if values is None else np.asarray(values)
            )
        out = np.asarray(self._finish(self._call_predict(inputs)))
        if self._metadata.is_classifier:
            return RawOutput(values=out.reshape(-1))
        values = out.astype(np.float64)
        return RawOutput(
            values=values[:, 0] if values.ndim == 2 and values.shape[1] == 1 else values
        )

    def _call_predict(self, inputs: Any) -> Any:
        if self._predict is None:  # refused at load unless predict_proba answers instead
            raise ModelLoadError("the class has no predict()")
        return self._predict(inputs)

    def _finish(self, output: Any) -> Any:
        return self._postprocess(output) if self._postprocess is not None else output


def load_python(config: ModelConfig, *, require_sha256: bool) -> tuple[PythonRuntime, list[str]]:
    """Import the class afresh, load it, and return it with the digests that identify it.

    The digests are the module source's and, when configured, the artifacts directory's.
    """
    imported = import_class(
        str(config.path), config.code_dir, config.sha256, require_sha256=require_sha256
    )
    digests = [imported.sha256]
    artifacts_dir: Path | None = None
    copy = None
    if config.artifacts is not None:
        if require_sha256 and config.artifacts_sha256 is None:
            raise PinRequiredError(
                f"{config.artifacts.name}/ (artifacts of {config.path})",
                "artifacts_sha256",
                "the README's Custom model code section shows how to compute it",
            )
        if config.artifacts_sha256 is not None:
            verified = read_directory(
                config.artifacts,
                config.artifacts_sha256,
                runs_code=True,
                require_sha256=require_sha256,
            )
            copy = verified.materialize()
            artifacts_dir, digest = Path(copy.name), verified.sha256
        else:
            if not config.artifacts.is_dir():
                raise ModelLoadError(f"artifacts directory not found: {config.artifacts}")
            artifacts_dir, digest = config.artifacts, directory_sha256(config.artifacts)
        digests.append(digest)
    name = f"{config.path} ({imported.source_name})"
    try:
        model = imported.cls()
        if callable(getattr(model, "load", None)):
            model.load(artifacts_dir)
    except Exception as exc:
        if copy is not None:
            copy.cleanup()
        raise ModelLoadError(f"{name} failed to load: {type(exc).__name__}: {exc}") from exc
    return PythonRuntime(model, label_from=config.label_from, artifacts_copy=copy), digests


def _hook(model: Any, name: str) -> Any:
    hook = getattr(model, name, None)
    return hook if callable(hook) else None


def _read_metadata(model: Any, *, has_proba: bool) -> ModelMetadata:
    task = getattr(model, "task", None)
    if task is not None and task not in _TASKS:
        raise ModelLoadError(f"task is {task!r}; expected one of {', '.join(_TASKS)}")
    classes = _strings(model, "classes")
    names = _strings(model, "feature_names")
    width = getattr(model, "n_features", None)
    if width is not None and (not isinstance(width, int) or width < 1):
        raise ModelLoadError(f"n_features is {width!r}; expected a positive integer")
    if width is None and names is not None:
        width = len(names)
    return ModelMetadata(
        n_features=width,
        is_classifier=task == "classifier" if task is not None else has_proba or bool(classes),
        classes=classes,
        feature_names=names,
        platform="python_class",
    )


def _strings(model: Any, name: str) -> list[str] | None:
    value = getattr(model, name, None)
    if value is None:
        return None
    try:
        return [str(item) for item in value]
    except TypeError:
        raise ModelLoadError(f"{name} is {type(value).__name__}; expected a list") from None
