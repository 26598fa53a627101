"""The contract every model runtime fulfils: load a file, predict a 2-D float array."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from modelserve.inference.types import FloatArray, ModelMetadata, RawOutput


@runtime_checkable
class Runtime(Protocol):
    """A loaded model. ``predict`` is called from worker threads, never on the event loop."""

    format: str

    @property
    def metadata(self) -> ModelMetadata: ...

    def predict(self, batch: FloatArray) -> RawOutput:
        """Predict n rows of shape (n, n_features); return outputs with n rows."""
        ...
