"""Postprocessor and format_predictions: raw outputs → Outputs → the /predict answer per row."""

from __future__ import annotations

import numpy as np
import pytest

from modelserve.errors import ErrorKind, NonFiniteOutputError
from modelserve.inference.formatting import format_predictions
from modelserve.inference.postprocess import Postprocessor
from modelserve.inference.types import OutputSpec, Prediction, RawOutput

LABELS = ["setosa", "versicolor", "virginica"]
PROBABILITIES = np.array([[0.1, 0.7, 0.2], [0.05, 0.15, 0.8]])


def classifier() -> Postprocessor:
    return Postprocessor(is_classifier=True, labels=LABELS)


def regressor(
    round_to: int | None = None, clip: tuple[float, float] | None = None
) -> Postprocessor:
    return Postprocessor(is_classifier=False, labels=None, round_to=round_to, clip=clip)


def answers(
    post: Postprocessor, raw: RawOutput, top_k: int | None = None, default_top_k: int | None = None
) -> list[Prediction]:
    """Postprocess ``raw``, then format it as /predict does."""
    outputs = post.apply(raw)
    columns = None
    if outputs.probabilities is not None:
        columns = post.column_labels(outputs.probabilities.shape[1])
    spec = OutputSpec(post.is_classifier, columns, default_top_k=default_top_k)
    return format_predictions(outputs, spec, top_k)


def test_format_classifier_gives_label_confidence_and_probabilities() -> None:
    """The label is the most probable class; confidence is its probability."""
    first, second = answers(classifier(), RawOutput(probabilities=PROBABILITIES))
    assert first == Prediction(
        "versicolor", 0.7, {"setosa": 0.1, "versicolor": 0.7, "virginica": 0.2}
    )
    assert (second.prediction, second.confidence) == ("virginica", 0.8)


def test_format_classifier_without_labels_uses_class_indices() -> None:
    """With no labels anywhere, classes are named by their index."""
    formatter = Postprocessor(is_classifier=True, labels=None)
    (answer, _) = answers(formatter, RawOutput(probabilities=PROBABILITIES))
    assert answer.prediction == "1"
    assert answer.probabilities == {"0": 0.1, "1": 0.7, "2": 0.2}


@pytest.mark.parametrize(
    ("default", "requested", "expected"),
    [
        (None, 1, ["versicolor"]),
        (None, 2, ["versicolor", "virginica"]),
        (2, None, ["versicolor", "virginica"]),
        (1, 2, ["versicolor", "virginica"]),
        (None, 3, ["setosa", "versicolor", "virginica"]),
        (None, 10, ["setosa", "versicolor", "virginica"]),
    ],
    ids=["top-1", "top-2", "config-default", "request-beats-config", "all", "more-than-classes"],
)
def test_format_top_k_keeps_the_most_probable_labels(
    default: int | None, requested: int | None, expected: list[str]
) -> None:
    """top_k keeps the k most probable labels, most probable first; the request beats config."""
    (answer, _) = answers(classifier(), RawOutput(probabilities=PROBABILITIES), requested, default)
    assert answer.probabilities is not None
    assert sorted(answer.probabilities) == sorted(expected)
    if len(expected) < len(LABELS):
        assert list(answer.probabilities) == expected


def test_format_top_k_never_changes_the_prediction() -> None:
    """Even top_k=1 leaves label and confidence those of the full distribution."""
    (answer, _) = answers(classifier(), RawOutput(probabilities=PROBABILITIES), 1)
    assert (answer.prediction, answer.confidence) == ("versicolor", 0.7)


def test_format_label_from_predict_maps_classes_to_labels() -> None:
    """When predict() values are present they decide the label, mapped through the classes."""
    formatter = Postprocessor(is_classifier=True, labels=LABELS, classes=["0", "1", "2"])
    raw = RawOutput(probabilities=PROBABILITIES, values=np.array([2, 2]))
    assert [p.prediction for p in answers(formatter, raw)] == ["virginica", "virginica"]


def test_format_classifier_without_probabilities_gives_labels_only() -> None:
    """A classifier without predict_proba answers its label and no confidence."""
    formatter = Postprocessor(is_classifier=True, labels=LABELS, classes=["0", "1", "2"])
    (answer,) = answers(formatter, RawOutput(values=np.array([1])))
    assert answer == Prediction("versicolor")


def test_format_string_classes_pass_through_without_labels() -> None:
    """A model whose classes are already names answers those names."""
    formatter = Postprocessor(is_classifier=True, labels=None, classes=["cat", "dog"])
    assert answers(formatter, RawOutput(values=np.array(["dog"])))[0].prediction == "dog"


def test_format_regression_gives_plain_floats() -> None:
    """A regressor answers one Python float per row, no confidence or probabilities."""
    rows = answers(regressor(), RawOutput(values=np.array([1.5, -2.25])))
    assert rows == [Prediction(1.5), Prediction(-2.25)]
    assert all(type(a.prediction) is float for a in rows)


@pytest.mark.parametrize(
    ("round_to", "clip", "expected"),
    [
        (2, None, [1.23, -9.88, 100.0]),
        (0, None, [1.0, -10.0, 100.0]),
        (None, (-5.0, 50.0), [1.23456, -5.0, 50.0]),
        (1, (-5.0, 50.0), [1.2, -5.0, 50.0]),
    ],
    ids=["round-2", "round-0", "clip", "clip-and-round"],
)
def test_format_regression_rounds_and_clips(
    round_to: int | None, clip: tuple[float, float] | None, expected: list[float]
) -> None:
    """output_round and output_clip shape regression values as configured."""
    raw = RawOutput(values=np.array([1.23456, -9.8765, 100.0]))
    assert [p.prediction for p in answers(regressor(round_to, clip), raw)] == expected


def test_format_multi_output_regression_gives_lists() -> None:
    """A regressor with k outputs answers a list of k numbers per row."""
    raw = RawOutput(values=np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert [p.prediction for p in answers(regressor(), raw)] == [[1.0, 2.0], [3.0, 4.0]]


def test_format_empty_output_is_an_error() -> None:
    """A runtime that returned nothing is a bug, reported as such."""
    with pytest.raises(ValueError, match="neither probabilities nor values"):
        answers(regressor(), RawOutput())


@pytest.mark.parametrize(
    ("raw", "row"),
    [
        (RawOutput(probabilities=np.array([[0.2, 0.3, 0.5], [np.nan, np.nan, np.nan]])), 1),
        (RawOutput(probabilities=np.array([[np.inf, 0.0, 0.0]])), 0),
    ],
    ids=["nan-probabilities", "inf-probability"],
)
def test_format_non_finite_probabilities_are_refused(raw: RawOutput, row: int) -> None:
    """A NaN or infinite probability is never served as an answer; the row is named."""
    with pytest.raises(NonFiniteOutputError, match=f"row {row}"):
        answers(classifier(), raw)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "minus-inf"])
def test_format_non_finite_regression_values_are_refused(value: float) -> None:
    """A regressor's NaN or infinite output is refused (JSON would turn it into null)."""
    with pytest.raises(NonFiniteOutputError, match="row 1") as info:
        answers(regressor(), RawOutput(values=np.array([1.0, value])))
    assert (info.value.kind, info.value.code) == (ErrorKind.INVALID_ARGUMENT, "non_finite_output")


def test_format_clipping_does_not_hide_non_finite_values() -> None:
    """output_clip does not turn a NaN into a number; the output is refused."""
    with pytest.raises(NonFiniteOutputError):
        answers(regressor(clip=(0.0, 1.0)), RawOutput(values=np.array([np.nan])))


@pytest.mark.parametrize(
    ("post", "n_classes", "expected"),
    [
        (Postprocessor(is_classifier=True, labels=LABELS), 3, frozenset(LABELS)),
        (Postprocessor(is_classifier=True, labels=None), 3, frozenset({"0", "1", "2"})),
        (
            Postprocessor(is_classifier=True, labels=["a", "b"], classes=["x", "y"]),
            None,
            frozenset({"a", "b"}),
        ),
        (Postprocessor(is_classifier=True, labels=None, classes=["x", "y"]), None, {"x", "y"}),
        (Postprocessor(is_classifier=True, labels=None), None, None),
    ],
    ids=["labels", "numbered-columns", "renamed-classes", "classes", "unknown"],
)
def test_answer_labels_are_every_label_the_version_can_give(
    post: Postprocessor, n_classes: int | None, expected: frozenset[str] | None
) -> None:
    """The labels an answer can carry: column names, renamed classes, or unknown."""
    assert post.answer_labels(n_classes) == expected


@pytest.mark.parametrize("rows", [2, 15, 16, 1000], ids=["tiny", "below-numpy", "numpy", "big"])
def test_postprocess_batch_labels_equal_the_per_row_rule(rows: int) -> None:
    """Every batch size labels each row with its first most probable class, ties included."""
    rng = np.random.default_rng(7)
    probabilities = rng.dirichlet(np.ones(3), size=rows)
    probabilities[0] = [0.4, 0.4, 0.2]  # a tie goes to the first column
    outputs = classifier().apply(RawOutput(probabilities=probabilities))
    expected = [LABELS[row.index(max(row))] for row in probabilities.tolist()]
    assert outputs.labels == expected
    assert outputs.confidences() == [max(row) for row in probabilities.tolist()]
    if outputs.label_ids is not None:  # the indexed form says the same
        assert [outputs.label_names[i] for i in outputs.label_ids] == expected
        assert outputs.confidence_array().tolist() == outputs.confidences()


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (np.array([0, 1, 2, 1] * 10), ["setosa", "versicolor", "virginica", "versicolor"] * 10),
        (np.array([1, True, 0] * 10, dtype=object), ["versicolor", "True", "setosa"] * 10),
        (np.array([0.0, -0.0] * 10), ["0.0", "-0.0"] * 10),
    ],
    ids=["ints", "objects-equal-but-printed-apart", "signed-zeros"],
)
def test_postprocess_batch_of_class_values_labels_each_value_by_its_text(
    values: np.ndarray, expected: list[str]
) -> None:
    """Large batches of predict() values map each value to its label as single rows do."""
    post = Postprocessor(is_classifier=True, labels=LABELS, classes=["0", "1", "2"])
    assert post.apply(RawOutput(values=values)).labels == expected
