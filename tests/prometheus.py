"""Read /metrics the way Prometheus does, and tell a missing series from a zero one."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition text, parsed by prometheus-client's own parser."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(text: str, name: str, **labels: str) -> float:
    """The sum of every ``name`` sample of an exposition text whose labels include ``labels``
    (0 when none is exported), e.g. predictions over all classes of one model."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def value(samples: Samples, name: str, **labels: str) -> float:
    """One series' value; fails when the series is not exported at all.

    A gauge that was never set is absent, not 0: reading it as 0 would let "the gauge is 0"
    pass for a metric nobody records.
    """
    key = (name, frozenset(labels.items()))
    if key not in samples:
        exported = sorted(str(dict(series)) for sample, series in samples if sample == name)
        raise AssertionError(f"no series {name}{labels}; {name} has {exported or 'no series'}")
    return samples[key]


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much a series grew between two scrapes; it must exist in ``after``.

    prometheus-client creates a labelled series on its first use, so a series absent from
    ``before`` started at 0.
    """
    return value(after, name, **labels) - before.get((name, frozenset(labels.items())), 0.0)
