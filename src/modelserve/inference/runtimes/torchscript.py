"""TorchScript modules through torch.jit (imported only when such a model is configured)."""

from __future__ import annotations

import io
import warnings
from typing import Literal

import numpy as np

from modelserve.errors import ModelLoadError
from modelserve.inference.artifact import Artifact
from modelserve.inference.loader import declared_width
from modelserve.inference.runtimes.base import classifier_hint
from modelserve.inference.runtimes.scores import softmax
from modelserve.inference.types import FloatArray, ModelMetadata, RawOutput
from modelserve.settings import ModelConfig


class TorchScriptRuntime:
    """Runs a scripted or traced module in inference mode on CPU (or CUDA when asked)."""

    format = "torchscript"

    def __init__(
        self,
        artifact: Artifact,
        *,
        n_features: int | None,
        device: Literal["cpu", "cuda", "auto"],
        output: Literal["auto", "logits", "probabilities", "raw"],
        classifier_hint: bool | None,
    ) -> None:
        try:
            import torch
        except ImportError as exc:
            raise ModelLoadError(
                "TorchScript models need torch: pip install 'modelserve[torch]'"
            ) from exc
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise ModelLoadError("torch_device is cuda but CUDA is not available")
        self._torch = torch
        self._device = torch.device(device)
        try:
            with warnings.catch_warnings():  # torch 2.13 marks TorchScript deprecated
                warnings.simplefilter("ignore", DeprecationWarning)
                self._module = torch.jit.load(  # type: ignore[no-untyped-call]
                    io.BytesIO(artifact.data), map_location=self._device
                )
        except Exception as exc:
            raise ModelLoadError(f"torch.jit.load could not read {artifact.name}: {exc}") from exc
        self._module.eval()
        if output == "auto":
            output = "logits" if classifier_hint else "raw"
        self._output = output
        self._metadata = ModelMetadata(n_features=n_features, is_classifier=output != "raw")

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    def predict(self, batch: FloatArray) -> RawOutput:
        torch = self._torch
        tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self._device)
        with torch.inference_mode():
            out = self._module(tensor)
        values = out.detach().to("cpu").numpy().astype(np.float64)
        if self._output == "raw":
            if values.ndim == 2 and values.shape[1] == 1:
                values = values[:, 0]
            return RawOutput(values=values)
        if self._output == "probabilities":
            return RawOutput(probabilities=values)
        return RawOutput(probabilities=softmax(values))


def load_torchscript(artifact: Artifact, config: ModelConfig) -> TorchScriptRuntime:
    """A TorchScript module. Loading runs the module's code: only configured, pinned files."""
    return TorchScriptRuntime(
        artifact,
        n_features=config.n_features or declared_width(config),
        device=config.torch_device,
        output=config.torch_output,
        classifier_hint=classifier_hint(config),
    )
