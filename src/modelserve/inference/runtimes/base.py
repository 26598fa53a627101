"""The contract every model runtime fulfils: built from verified bytes, predicts 2-D floats.

A runtime never opens its model file: the loader reads the file once into an
:class:`~modelserve.inference.artifact.Artifact` (hashed and checked against the pin) and hands
those bytes to the format's :class:`RuntimeBuilder`, so what was hashed is what is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from modelserve.inference.types import FloatArray, ModelMetadata, RawOutput

if TYPE_CHECKING:
    from modelserve.inference.artifact import Artifact
    from modelserve.settings import ModelConfig


@runtime_checkable
class Runtime(Protocol):
    """A loaded model. ``predict`` is called from worker threads, never on the event loop."""

    format: str

    @property
    def metadata(self) -> ModelMetadata: ...

    def predict(self, batch: FloatArray) -> RawOutput:
        """Predict n rows of shape (n, n_features); return outputs with n rows."""
        ...


class RuntimeBuilder(Protocol):
    """Deserializes one format from an artifact's bytes (import the library lazily inside)."""

    def __call__(self, artifact: Artifact, config: ModelConfig) -> Runtime: ...


def classifier_hint(config: ModelConfig) -> bool | None:
    """What the config says about the task, for formats whose files cannot tell."""
    if config.task != "auto":
        return config.task == "classifier"
    return True if config.labels else None
