"""MLflow model directories (an ``MLmodel`` file plus the artifact its flavours name).

The ``sklearn``, ``xgboost``, ``lightgbm``, ``catboost`` and ``onnx`` flavours are loaded
natively, from the verified bytes of the flavour's own file, by the same runtime that serves
that library's files; mlflow itself is not imported. A directory with only the generic
``python_function`` flavour is loaded through ``mlflow.pyfunc`` (the ``modelserve[mlflow]``
extra): slower per call (a pandas DataFrame per batch, mlflow's own schema checks) and answering
predict() output only, no probabilities.

The signature's inputs become the feature schema: names (so requests may send named
features), declared types, and column order; string, boolean and optional columns make typed
features (see :mod:`.mlflow_signature`), unless the model knows its own (a fitted Pipeline's
categories are more than the signature's ``string``). A native model that knows its own
feature names must list the same names in the same order, or the load is refused: rows would
otherwise reach the model with columns swapped.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from modelserve.errors import ModelLoadError
from modelserve.inference.artifact import Artifact, DirectoryArtifact
from modelserve.inference.runtimes.base import Runtime, classifier_hint
from modelserve.inference.runtimes.mlflow_signature import (
    NUMERIC_COLUMN_TYPES,
    InputSchema,
    read_input_schema,
)
from modelserve.inference.types import FloatArray, ModelMetadata, RawOutput
from modelserve.settings import ModelConfig

if TYPE_CHECKING:
    import pandas as pd

MLMODEL = "MLmodel"
NATIVE_FLAVOURS = ("sklearn", "xgboost", "lightgbm", "catboost", "onnx")
_LABEL_OUTPUT_TYPES = {"string", "long", "integer", "boolean"}


def load_mlflow(artifact: DirectoryArtifact, config: ModelConfig) -> Runtime:
    """The runtime for the first flavour of ``artifact`` that modelserve serves natively."""
    mlmodel = _read_mlmodel(artifact)
    flavours = mlmodel.get("flavors") or {}
    if not isinstance(flavours, dict):
        raise ModelLoadError(f"{artifact.name}/{MLMODEL} has no flavors mapping")
    schema = read_input_schema(mlmodel)
    flavour = next((f for f in NATIVE_FLAVOURS if f in flavours), None)
    if flavour is not None:
        inner = _load_native(artifact, flavour, flavours[flavour], config)
    elif "python_function" in flavours:
        hint = _output_hint(mlmodel, classifier_hint(config))
        return PyfuncRuntime(artifact, schema, hint)
    else:
        listed = ", ".join(sorted(flavours)) or "none"
        raise ModelLoadError(
            f"{artifact.name} has no flavour modelserve serves (it lists {listed})"
        )
    return SignedRuntime(inner, schema, platform=f"mlflow_{flavour}")


def _read_mlmodel(artifact: DirectoryArtifact) -> dict[str, Any]:
    try:
        data = yaml.safe_load(artifact.member(MLMODEL).data)
    except yaml.YAMLError as exc:
        raise ModelLoadError(f"{artifact.name}/{MLMODEL} is not valid YAML") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{artifact.name}/{MLMODEL} is not a mapping")
    return data


def _flavour_file(artifact: DirectoryArtifact, spec: Any, key: str) -> Artifact:
    relative = spec.get(key) if isinstance(spec, dict) else None
    if not isinstance(relative, str) or not relative:
        raise ModelLoadError(f"{artifact.name}/{MLMODEL} names no `{key}` file")
    return artifact.member(relative)


def _load_native(
    artifact: DirectoryArtifact, flavour: str, spec: Any, config: ModelConfig
) -> Runtime:
    hint = classifier_hint(config)
    if flavour == "sklearn":
        return _estimator(_flavour_file(artifact, spec, "pickled_model"), spec, config)
    if flavour == "xgboost":
        from modelserve.inference.runtimes.xgboost import XGBoostRuntime

        return XGBoostRuntime(_flavour_file(artifact, spec, "data"), classifier_hint=hint)
    if flavour == "lightgbm":
        data = _flavour_file(artifact, spec, "data")
        if str(spec.get("model_class", "")).startswith("lightgbm.sklearn"):
            return _estimator(data, spec, config)  # mlflow serializes the sklearn wrappers
        from modelserve.inference.runtimes.lightgbm import LightGBMRuntime

        return LightGBMRuntime(data)
    if flavour == "catboost":
        from modelserve.inference.runtimes.catboost import CatBoostRuntime

        return CatBoostRuntime(_flavour_file(artifact, spec, "data"))
    from modelserve.inference.runtimes.onnx import OnnxRuntime

    return OnnxRuntime(_flavour_file(artifact, spec, "data"), classifier_hint=hint)


def _estimator(member: Artifact, spec: dict[str, Any], config: ModelConfig) -> Runtime:
    """A serialized estimator: skops (only the configured trusted types), or a pickle.

    The ``skops_trusted_types`` an MLmodel file lists are not taken on its word: they come from
    the artifact being checked, so only the model config's list counts, as for .skops files.
    Pickles run code on load: only configured (and, with require_sha256, pinned) directories.
    """
    from modelserve.inference.runtimes.sklearn import (
        SklearnRuntime,
        load_pickle_object,
        load_skops_object,
    )

    fmt = spec.get("serialization_format", "cloudpickle")
    if fmt == "skops":
        estimator = load_skops_object(member, config.skops_trusted_types)
    elif fmt in ("pickle", "cloudpickle"):
        estimator = load_pickle_object(member)
    else:
        raise ModelLoadError(
            f"{member.name} uses serialization_format {fmt!r}; modelserve reads skops, pickle"
            " and cloudpickle"
        )
    return SklearnRuntime(estimator, label_from=config.label_from)


def _output_hint(mlmodel: dict[str, Any], hint: bool | None) -> bool:
    """Whether a pyfunc model is a classifier: the config's word, else its output's type.

    Labels are strings, integers or booleans (a column type, or an integer/bool tensor); a
    floating-point output is a regression.
    """
    if hint is not None:
        return hint
    outputs = (mlmodel.get("signature") or {}).get("outputs")
    try:
        first = json.loads(outputs)[0] if isinstance(outputs, str) else {}
    except (ValueError, IndexError, KeyError, TypeError):
        return False
    if not isinstance(first, dict):
        return False
    if first.get("type") == "tensor":
        dtype = str((first.get("tensor-spec") or {}).get("dtype", ""))
        return dtype.startswith(("int", "uint", "bool", "str", "object"))
    return first.get("type") in _LABEL_OUTPUT_TYPES


class SignedRuntime:
    """A natively loaded flavour with the signature's feature schema on top."""

    def __init__(self, inner: Runtime, schema: InputSchema, *, platform: str) -> None:
        self.inner = inner
        self.format = "mlflow"
        meta = inner.metadata
        if schema.n_features and meta.n_features and schema.n_features != meta.n_features:
            raise ModelLoadError(
                f"the signature declares {schema.n_features} inputs, the model {meta.n_features}"
            )
        if (
            schema.feature_names
            and meta.feature_names
            and schema.feature_names != meta.feature_names
        ):
            raise ModelLoadError(
                "the signature's input names differ from the model's own feature names: "
                f"{schema.feature_names} vs {meta.feature_names}"
            )
        self._metadata = ModelMetadata(
            n_features=schema.n_features or meta.n_features,
            is_classifier=meta.is_classifier,
            classes=meta.classes,
            feature_names=schema.feature_names or meta.feature_names,
            platform=platform,
            feature_types=schema.feature_types,
            features=meta.features or schema.features,
        )

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    def predict(self, batch: FloatArray) -> RawOutput:
        return self.inner.predict(batch)

    def predict_frame(self, frame: pd.DataFrame) -> RawOutput:
        """Typed features: the flavour's own DataFrame path (scikit-learn, LightGBM, XGBoost)."""
        predict = getattr(self.inner, "predict_frame", None)
        if predict is None:
            raise ModelLoadError(
                f"the {self._metadata.platform} flavour takes float features only; its signature"
                " or `features` declares typed ones"
            )
        answer: RawOutput = predict(frame)
        return answer


class PyfuncRuntime:
    """The generic ``python_function`` flavour through ``mlflow.pyfunc`` (the slow fallback).

    mlflow loads only from a path, so the verified bytes are written to a private temporary
    directory that lives as long as this runtime: loading from the configured directory would
    read files again after they were hashed.
    """

    format = "mlflow"

    def __init__(
        self, artifact: DirectoryArtifact, schema: InputSchema, is_classifier: bool
    ) -> None:
        from modelserve.inference.runtimes.extras import import_extra

        pyfunc = import_extra("mlflow.pyfunc", f"the python_function model {artifact.name}")
        self._copy = artifact.materialize()
        try:
            self._model = pyfunc.load_model(self._copy.name)
        except Exception as exc:
            self._copy.cleanup()
            raise ModelLoadError(
                f"mlflow.pyfunc could not load {artifact.name}: {type(exc).__name__}: {exc}"
            ) from exc
        self._schema = schema
        self._metadata = ModelMetadata(
            n_features=schema.n_features,
            is_classifier=is_classifier,
            feature_names=schema.feature_names,
            platform="mlflow_pyfunc",
            feature_types=schema.feature_types,
            features=schema.features,
        )

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    def predict(self, batch: FloatArray) -> RawOutput:
        return self._answer(self._model.predict(self._frame(batch)))

    def predict_frame(self, frame: pd.DataFrame) -> RawOutput:
        """Typed features: numeric columns without nulls get the signature's exact dtype
        (mlflow refuses float64 for a ``float`` column); the rest go as built."""
        for name, kind in zip(frame.columns, self._schema.feature_types or (), strict=False):
            column = frame[name]
            if kind in NUMERIC_COLUMN_TYPES and not column.isna().any():
                frame[name] = column.astype(NUMERIC_COLUMN_TYPES[kind])
        return self._answer(self._model.predict(frame))

    def _answer(self, predicted: Any) -> RawOutput:
        out = np.asarray(predicted)
        if self._metadata.is_classifier:
            if out.ndim == 2 and out.shape[1] > 1 and np.issubdtype(out.dtype, np.floating):
                return RawOutput(probabilities=out.astype(np.float64))
            return RawOutput(values=out.reshape(-1))
        values = out.astype(np.float64)
        return RawOutput(
            values=values[:, 0] if values.ndim == 2 and values.shape[1] == 1 else values
        )

    def _frame(self, batch: FloatArray) -> Any:
        """Columns named and typed as the signature declares (mlflow enforces both)."""
        names, types = self._schema.feature_names, self._schema.feature_types
        if names is None or types is None:
            return batch
        import pandas as pd

        return pd.DataFrame(
            {
                name: batch[:, i].astype(NUMERIC_COLUMN_TYPES[kind])
                for i, (name, kind) in enumerate(zip(names, types, strict=True))
            }
        )
