"""The /predict answer shape: one order rule for probabilities, and top_k that can apply;
the /predict-batch columns computed with numpy are the same answers."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from modelserve.errors import InvalidInputError
from modelserve.inference.formatting import check_top_k, format_batch, format_predictions
from modelserve.inference.types import FloatArray, Outputs, OutputSpec

LABELS = ["setosa", "versicolor", "virginica"]
CLASSIFIER = OutputSpec(is_classifier=True, class_labels=LABELS)
OUTPUTS = Outputs(
    labels=["versicolor", "setosa"], probabilities=np.array([[0.1, 0.7, 0.2], [0.4, 0.2, 0.4]])
)


@pytest.mark.parametrize("top_k", [None, 3], ids=["no-top_k", "top_k-all"])
def test_format_lists_probabilities_most_probable_first(top_k: int | None) -> None:
    """Highest probability first with or without top_k; ties keep the model's class order."""
    first, tied = format_predictions(OUTPUTS, CLASSIFIER, top_k)
    assert list(first.probabilities or {}) == ["versicolor", "virginica", "setosa"]
    assert list(tied.probabilities or {}) == ["setosa", "virginica", "versicolor"]


def test_format_top_k_keeps_the_first_k_of_that_order() -> None:
    """top_k 2 keeps the two most probable, in the same order."""
    (first, _) = format_predictions(OUTPUTS, CLASSIFIER, 2)
    assert first.probabilities == {"versicolor": 0.7, "virginica": 0.2}


def test_check_top_k_refuses_more_than_the_class_count() -> None:
    """top_k above the number of classes is an InvalidInputError naming the limit."""
    check_top_k(CLASSIFIER, 3)
    with pytest.raises(InvalidInputError, match="at most 3"):
        check_top_k(CLASSIFIER, 4)


def test_check_top_k_refuses_a_regressor() -> None:
    """top_k on a regressor is an InvalidInputError rather than silently ignored."""
    with pytest.raises(InvalidInputError, match="regressor"):
        check_top_k(OutputSpec(is_classifier=False, class_labels=None), 1)


def _row_by_row(
    outputs: Outputs, spec: OutputSpec, top_k: int | None, probabilities: bool
) -> dict[str, object]:
    answers = format_predictions(outputs, spec, top_k)
    confidences = [a.confidence for a in answers if a.confidence is not None]
    columns: dict[str, object] = {
        "predictions": [a.prediction for a in answers],
        "confidences": confidences or None,
    }
    if probabilities:
        columns["probabilities"] = [a.probabilities for a in answers]
    return columns


def _by_column(
    outputs: Outputs, spec: OutputSpec, top_k: int | None, probabilities: bool
) -> dict[str, object]:
    answer = format_batch(outputs, spec, top_k, probabilities=probabilities)
    columns: dict[str, object] = {
        "predictions": answer.predictions,
        "confidences": answer.confidences,
    }
    if answer.probabilities is not None:
        columns["probabilities"] = answer.probabilities
    return orjson.loads(orjson.dumps(columns, option=orjson.OPT_SERIALIZE_NUMPY))  # type: ignore[no-any-return]


def _rounded_probabilities(rows: int) -> FloatArray:
    """Probabilities on a coarse grid, so rows have ties (and exact zeros) to order."""
    generator = np.random.default_rng(5)
    matrix = np.round(generator.dirichlet(np.ones(3), size=rows), 1)
    return np.asarray(matrix, dtype=np.float64)


@pytest.mark.parametrize("probabilities", [False, True], ids=["columns", "with-probabilities"])
@pytest.mark.parametrize("top_k", [None, 1, 2], ids=["no-top_k", "top_k-1", "top_k-2"])
def test_format_batch_answers_what_format_predictions_answers_row_by_row(
    top_k: int | None, probabilities: bool
) -> None:
    """A classifier's batch answer, computed per column, is the row-by-row answer exactly:
    labels, confidences, and probabilities in the same order with ties and top_k."""
    matrix = _rounded_probabilities(200)
    outputs = Outputs([LABELS[i] for i in matrix.argmax(axis=1)], matrix)
    spec = OutputSpec(is_classifier=True, class_labels=LABELS, default_top_k=2)

    expected = _row_by_row(outputs, spec, top_k, probabilities)

    assert _by_column(outputs, spec, top_k, probabilities) == expected


@pytest.mark.parametrize(
    ("outputs", "spec"),
    [
        (
            Outputs(values=np.array([1.5, -0.25, 3e-300])),
            OutputSpec(is_classifier=False, class_labels=None),
        ),
        (
            Outputs(values=np.array([[1.5, 2.0], [0.1, -3.0]])),
            OutputSpec(is_classifier=False, class_labels=None, value_width=2),
        ),
        (Outputs(labels=["a", "b"]), OutputSpec(is_classifier=True, class_labels=None)),
    ],
    ids=["regressor", "multi-output-regressor", "classifier-without-probabilities"],
)
@pytest.mark.parametrize("probabilities", [False, True], ids=["columns", "with-probabilities"])
def test_format_batch_answers_models_without_probabilities_as_row_by_row(
    outputs: Outputs, spec: OutputSpec, probabilities: bool
) -> None:
    """Regressors and label-only classifiers: the same predictions, no confidences, and a
    null per row when probabilities are asked for."""
    expected = _row_by_row(outputs, spec, None, probabilities)

    assert _by_column(outputs, spec, None, probabilities) == expected
