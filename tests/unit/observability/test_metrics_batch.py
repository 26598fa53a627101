"""Recording a whole batch at once exports exactly what observing its rows one by one does."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from modelserve.observability import metrics
from tests.prometheus import Samples, parse

ROWS = 1000
LABELS = ("setosa", "versicolor", "virginica")
# Bucket bounds themselves sit in their own bucket (value <= bound); the ends test +Inf.
CONFIDENCE_EDGES = [0.0, 0.1, 0.5, 0.95, 0.99, 1.0, 1.5]
REGRESSION_EDGES = [-5000.0, -1000.0, -1.0, 0.0, 1.0, 10000.0, 20000.0]


def _series_of(model: str) -> Samples:
    """Every exported sample of ``model``, keyed without the model label."""
    text, _ = metrics.render_latest()
    return {
        (name, frozenset((k, v) for k, v in labels if k != "model")): sample
        for (name, labels), sample in parse(text.decode()).items()
        if ("model", model) in labels and not name.endswith("_created")
    }


def _count_request(model: str, rows: int) -> None:
    metrics.PREDICTIONS.labels(model, "1").inc()
    metrics.ROWS.labels(model, "1").inc(rows)


def _classifier_rows(rng: np.random.Generator) -> tuple[list[str], list[float]]:
    labels = [LABELS[i] for i in rng.integers(0, 2, ROWS)]  # virginica never predicted
    confidences = [*CONFIDENCE_EDGES, *rng.uniform(0.3, 1.0, ROWS - len(CONFIDENCE_EDGES))]
    return labels, confidences


def _regression_rows(rng: np.random.Generator) -> list[float]:
    return [*REGRESSION_EDGES, *rng.normal(0, 300, ROWS - len(REGRESSION_EDGES)).tolist()]


def _assert_same_samples(batched: Samples, one_by_one: Samples) -> None:
    assert batched.keys() == one_by_one.keys()
    for key, expected in one_by_one.items():
        if key[0].endswith("_sum"):  # one addition of the batch's sum, not 1000 in a row
            assert batched[key] == pytest.approx(expected, rel=1e-12), key
        else:
            assert batched[key] == expected, key


def test_record_predictions_batch_equals_rows_one_by_one() -> None:
    """A 1000-row classifier answer adds the same class counts, buckets and sum as its rows."""
    labels, confidences = _classifier_rows(np.random.default_rng(1))
    batched, one_by_one = f"batched-{uuid.uuid4().hex}", f"rows-{uuid.uuid4().hex}"

    metrics.record_predictions(batched, "1", labels, confidences)
    _count_request(one_by_one, ROWS)
    for label, confidence in zip(labels, confidences, strict=True):
        metrics.PREDICTED_CLASS.labels(one_by_one, "1", label).inc()
        metrics.CONFIDENCE.labels(one_by_one, "1").observe(confidence)

    batched_series, rows_series = _series_of(batched), _series_of(one_by_one)
    _assert_same_samples(batched_series, rows_series)
    class_series = {dict(key[1]).get("label") for key in batched_series}
    assert class_series == {None, "setosa", "versicolor"}
    version = frozenset({("model_version", "1")})
    assert batched_series[("modelserve_prediction_confidence_count", version)] == ROWS


def test_record_predictions_by_label_ids_equals_rows_one_by_one() -> None:
    """Labels given as indices into the label names count exactly as the labels themselves."""
    labels, confidences = _classifier_rows(np.random.default_rng(3))
    ids = np.array([LABELS.index(label) for label in labels], dtype=np.intp)
    by_ids, one_by_one = f"ids-{uuid.uuid4().hex}", f"rows-{uuid.uuid4().hex}"

    metrics.record_predictions(by_ids, "1", labels, np.array(confidences), ids, LABELS)
    _count_request(one_by_one, ROWS)
    for label, confidence in zip(labels, confidences, strict=True):
        metrics.PREDICTED_CLASS.labels(one_by_one, "1", label).inc()
        metrics.CONFIDENCE.labels(one_by_one, "1").observe(confidence)

    _assert_same_samples(_series_of(by_ids), _series_of(one_by_one))


def test_record_regression_batch_equals_rows_one_by_one() -> None:
    """A 1000-row regressor answer adds the same buckets, count and sum as its rows."""
    values = _regression_rows(np.random.default_rng(2))
    batched, one_by_one = f"batched-{uuid.uuid4().hex}", f"rows-{uuid.uuid4().hex}"

    metrics.record_regression(batched, "1", values)
    _count_request(one_by_one, ROWS)
    for row_value in values:
        metrics.REGRESSION_OUTPUT.labels(one_by_one, "1").observe(row_value)

    batched_series = _series_of(batched)
    _assert_same_samples(batched_series, _series_of(one_by_one))
    inf_bucket = frozenset({("model_version", "1"), ("le", "+Inf")})
    assert batched_series[("modelserve_regression_output_bucket", inf_bucket)] == ROWS
