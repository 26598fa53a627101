"""The /predict answer shape: one order rule for probabilities, and top_k that can apply."""

from __future__ import annotations

import numpy as np
import pytest

from modelserve.errors import InvalidInputError
from modelserve.inference.formatting import check_top_k, format_predictions
from modelserve.inference.types import Outputs, OutputSpec

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
