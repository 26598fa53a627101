"""The hot routes' request reading: the same answers as Starlette's own conveniences."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import QueryParams

from modelserve.api.direct_io import header, query

_QUERY_TEXT = st.text(alphabet="ab=&%+2Fé0 ;", max_size=24)


@settings(max_examples=400, deadline=None)
@given(text=_QUERY_TEXT)
def test_query_reads_every_name_as_starlette_does(text: str) -> None:
    """Every name has the value ``request.query_params.get`` gives it, escaped or not."""
    raw = text.encode("utf-8")
    expected = QueryParams(raw)
    params = query({"query_string": raw})
    assert params == {name: expected[name] for name in expected}


def test_query_of_a_plain_query_string() -> None:
    """The common case: names and values with nothing escaped; the last repeat wins."""
    params = query({"query_string": b"model=iris&top_k=2&flag&&top_k=3&empty="})
    assert params == {"model": "iris", "top_k": "3", "flag": "", "empty": ""}


def test_header_gives_the_first_value_of_a_lower_case_name() -> None:
    """One header by name, the first one sent, decoded as Latin-1 like Starlette's."""
    scope = {"headers": [(b"x-a", b"1"), (b"x-b", b"caf\xe9"), (b"x-a", b"2")]}
    assert (header(scope, b"x-a"), header(scope, b"x-b"), header(scope, b"x-c")) == (
        "1",
        "café",
        None,
    )
