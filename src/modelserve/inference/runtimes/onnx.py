"""ONNX models through onnxruntime (imported only when an ONNX model is configured)."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelserve.errors import ModelLoadError
from modelserve.inference.artifact import Artifact
from modelserve.inference.runtimes.base import classifier_hint
from modelserve.inference.runtimes.scores import to_probabilities
from modelserve.inference.types import FloatArray, ModelMetadata, RawOutput
from modelserve.settings import ModelConfig

_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64}


class OnnxRuntime:
    """Runs an InferenceSession. Understands skl2onnx's label + probability outputs
    (ZipMap'd or plain) and single-tensor outputs of other exporters."""

    format = "onnx"

    def __init__(
        self, artifact: Artifact, *, classifier_hint: bool | None, threads: int = 1
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One intra-op thread per call: the batcher supplies the parallelism.
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                artifact.data, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ModelLoadError(f"onnxruntime could not load {artifact.name}: {exc}") from exc
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelLoadError(
                f"{artifact.name} has {len(inputs)} inputs; one 2-D input expected"
            )
        self._input = inputs[0].name
        self._dtype = _DTYPES.get(inputs[0].type, np.float32)
        width = inputs[0].shape[-1] if inputs[0].shape else None
        n_features = width if isinstance(width, int) else None
        outputs = [o.name for o in self._session.get_outputs()]
        self._label_output = next((o for o in outputs if "label" in o), None)
        self._proba_output = next((o for o in outputs if "prob" in o), None)
        self._plain_output = outputs[0]
        classes: list[str] | None = None
        is_classifier = self._proba_output is not None
        if is_classifier and n_features is not None:
            classes = self._discover_classes(n_features)
        elif classifier_hint:
            is_classifier = True
        self._metadata = ModelMetadata(n_features, is_classifier, classes)

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    def predict(self, batch: FloatArray) -> RawOutput:
        feed = {self._input: np.ascontiguousarray(batch, dtype=self._dtype)}
        if self._proba_output is not None:
            (probabilities,) = self._session.run([self._proba_output], feed)
            return RawOutput(probabilities=_as_matrix(probabilities))
        (out,) = self._session.run([self._plain_output], feed)
        values = np.asarray(out, dtype=np.float64)
        if self._metadata.is_classifier:
            return RawOutput(probabilities=to_probabilities(values))
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        return RawOutput(values=values)

    def _discover_classes(self, n_features: int) -> list[str] | None:
        (probabilities,) = self._session.run(
            [self._proba_output], {self._input: np.zeros((1, n_features), self._dtype)}
        )
        if isinstance(probabilities, list) and probabilities and isinstance(probabilities[0], dict):
            return [str(k) for k in sorted(probabilities[0])]
        return None


def load_onnx(artifact: Artifact, config: ModelConfig) -> OnnxRuntime:
    """An ONNX model (no code runs on load: a pin is never required)."""
    return OnnxRuntime(artifact, classifier_hint=classifier_hint(config))


def _as_matrix(probabilities: Any) -> FloatArray:
    """ZipMap yields a list of {class: p} dicts; plain exports yield an (n, k) array."""
    if isinstance(probabilities, list):
        if not probabilities:
            return np.empty((0, 0))
        keys = sorted(probabilities[0])
        return np.array([[row[k] for k in keys] for row in probabilities], dtype=np.float64)
    return np.asarray(probabilities, dtype=np.float64)
