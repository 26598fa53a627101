"""The messages between a serving process and its model processes: arrays without pickling."""

from __future__ import annotations

import numpy as np
import pytest

from modelserve.errors import ModelLoadError, NonFiniteOutputError
from modelserve.inference import process_wire as wire
from modelserve.inference.types import RawOutput


def test_process_wire_batch_round_trips_bit_for_bit() -> None:
    """A float64 batch comes back with the same shape and bits, and writable."""
    batch = np.random.default_rng(0).normal(size=(64, 4))
    decoded = wire.decode_batch(wire.encode_batch(batch))
    assert decoded.shape == (64, 4)
    assert decoded.tobytes() == batch.tobytes()
    decoded[0, 0] = 1.0  # the caller owns its copy


def test_process_wire_batch_is_not_pickled() -> None:
    """The batch crosses as its raw bytes plus a small header."""
    batch = np.ones((64, 4))
    assert len(wire.encode_batch(batch)) < batch.nbytes + 64


@pytest.mark.parametrize(
    "values",
    [
        None,
        np.array([0, 2, 1]),
        np.array(["setosa", "virginica", "versicolor"]),
        np.array(["a", 1, None], dtype=object),
    ],
    ids=["absent", "integers", "strings", "objects"],
)
def test_process_wire_output_round_trips(values: np.ndarray | None) -> None:
    """Probabilities and each kind of predicted values come back equal, dtype included."""
    output = RawOutput(probabilities=np.eye(3)[[0, 2, 1]], values=values)
    decoded = wire.decode_output(wire.encode_output(output))
    assert decoded.probabilities is not None
    assert np.array_equal(decoded.probabilities, np.eye(3)[[0, 2, 1]])
    if values is None:
        assert decoded.values is None
    else:
        assert decoded.values is not None
        assert decoded.values.dtype == values.dtype
        assert decoded.values.tolist() == values.tolist()


def test_process_wire_domain_error_comes_back_as_itself() -> None:
    """A domain error raised in the model process is raised again with its class and detail."""
    message = wire.encode_error(NonFiniteOutputError(3))
    with pytest.raises(NonFiniteOutputError, match="for row 3") as caught:
        wire.decode_output(message)
    assert caught.value.code == "non_finite_output"


def test_process_wire_model_failure_names_its_type() -> None:
    """Any other exception becomes a ModelProcessError naming the original type."""
    with pytest.raises(wire.ModelProcessError, match="ValueError: bad input"):
        wire.decode_output(wire.encode_error(ValueError("bad input")))


def test_process_wire_load_failure_is_a_load_error() -> None:
    """A child that cannot build its model answers the load with a ModelLoadError's reason."""
    with pytest.raises(ModelLoadError, match=r"could not load forest\.joblib"):
        wire.decode_loaded(wire.encode_error(ModelLoadError("could not load forest.joblib")))
