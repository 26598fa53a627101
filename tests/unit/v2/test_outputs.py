"""A model's answer → V2 outputs: labels as BYTES, selection, and the classification extension."""

from __future__ import annotations

import numpy as np
import pytest

from modelserve.errors import InvalidTensorError, UnknownTensorError
from modelserve.v2 import tensor
from modelserve.v2.messages import RequestedOutput
from modelserve.v2.outputs import ModelAnswer, output_tensors

ANSWER = ModelAnswer(
    labels=["versicolor", "setosa"],
    probabilities=np.array([[0.1, 0.7, 0.2], [0.8, 0.15, 0.05]]),
    class_labels=["setosa", "versicolor", "virginica"],
)


def test_outputs_classifier_answers_label_bytes_and_probabilities() -> None:
    """Without a selection a classifier answers label (BYTES [rows]) and probabilities."""
    label, probabilities = output_tensors(ANSWER, None)
    assert (label.name, label.datatype, label.shape) == ("label", "BYTES", (2,))
    assert label.data.tolist() == [b"versicolor", b"setosa"]
    assert (probabilities.datatype, probabilities.shape) == ("FP64", (2, 3))


def test_outputs_selection_returns_only_what_was_asked() -> None:
    """An ``outputs`` list returns those tensors, in that order."""
    tensors = output_tensors(ANSWER, [RequestedOutput("probabilities")])
    assert [t.name for t in tensors] == ["probabilities"]


def test_outputs_unknown_output_lists_the_available_ones() -> None:
    """Asking for an output the model lacks names the ones it has."""
    with pytest.raises(UnknownTensorError, match="this model has label, probabilities"):
        output_tensors(ANSWER, [RequestedOutput("logits")])


def test_outputs_classification_gives_top_k_score_index_label() -> None:
    """classification=k on probabilities returns each row's top k as score:index:label."""
    (top,) = output_tensors(ANSWER, [RequestedOutput("probabilities", {"classification": 2})])
    assert (top.datatype, top.shape) == ("BYTES", (2, 2))
    assert top.data.tolist() == [
        [b"0.7:1:versicolor", b"0.2:2:virginica"],
        [b"0.8:0:setosa", b"0.15:1:versicolor"],
    ]


@pytest.mark.parametrize(
    ("output", "classes", "message"),
    [
        ("label", 1, "applies to probabilities"),
        ("probabilities", 0, "positive integer"),
        ("probabilities", "2", "positive integer"),
    ],
    ids=["on-label", "zero", "string"],
)
def test_outputs_classification_refuses_bad_requests(
    output: str, classes: object, message: str
) -> None:
    """classification applies to probabilities with a positive integer k."""
    with pytest.raises(InvalidTensorError, match=message):
        output_tensors(ANSWER, [RequestedOutput(output, {"classification": classes})])


def test_outputs_regressor_answers_value() -> None:
    """A regressor answers one FP64 ``value`` tensor."""
    (value,) = output_tensors(ModelAnswer(values=np.array([1.5, -2.0])), None)
    assert (value.name, value.datatype, value.shape) == ("value", "FP64", (2,))


def test_outputs_labels_by_index_encode_as_the_labels_do() -> None:
    """An answer whose labels come as indices into the label names gives the same label
    tensor, raw bytes and JSON data as the labels themselves."""
    names = ("setosa", "versicolor", "virginica")
    ids = np.array([1, 0, 1, 2, 1], dtype=np.intp)
    labels = [names[i] for i in ids]
    indexed = ModelAnswer(labels=labels, label_ids=ids, label_names=names)
    (by_index,) = output_tensors(indexed, None)
    (by_label,) = output_tensors(ModelAnswer(labels=labels), None)
    assert by_index.codes is not None
    assert by_index.data.tolist() == by_label.data.tolist()
    assert tensor.to_raw(by_index) == tensor.to_raw(by_label)
    assert tensor.to_json_data(by_index) == tensor.to_json_data(by_label) == labels
