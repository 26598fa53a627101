"""The metrics helper of the suite tells a missing series from a zero one."""

from __future__ import annotations

import pytest

from tests.prometheus import moved, parse, value

EXPOSITION = """\
# HELP modelserve_queue_rows Rows waiting in the batch queue.
# TYPE modelserve_queue_rows gauge
modelserve_queue_rows{model="iris",model_version="1"} 0.0
"""


def test_value_of_a_series_at_zero_is_zero() -> None:
    """A series exported with value 0 reads as 0."""
    assert value(parse(EXPOSITION), "modelserve_queue_rows", model="iris", model_version="1") == 0


@pytest.mark.parametrize(
    ("name", "labels"),
    [
        ("modelserve_queue_rows", {"model": "iris", "model_version": "2"}),
        ("modelserve_not_recorded", {}),
    ],
    ids=["other-labels", "other-metric"],
)
def test_value_of_a_missing_series_fails(name: str, labels: dict[str, str]) -> None:
    """A series that is not exported fails the check instead of reading as 0."""
    with pytest.raises(AssertionError, match="no series"):
        value(parse(EXPOSITION), name, **labels)


def test_moved_needs_the_series_after() -> None:
    """Growth is measured only for a series exported in the later scrape."""
    with pytest.raises(AssertionError, match="no series"):
        moved(parse(EXPOSITION), parse(""), "modelserve_queue_rows", model="iris")
