"""README tables that describe the code say what the code does: formats and guarded routes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from modelserve.api.route_table import Access
from modelserve.api.routes.table import declare_routes
from modelserve.inference.loader import FORMATS
from modelserve.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def _format_rows() -> dict[str, str]:
    """The README's "Formats" table: format name → its path cell."""
    section = README.read_text().split("### Formats", 1)[1].split("\n#", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        match = re.match(r"\| [^|]*\(`([a-z]+)`\) \| ([^|]*) \|", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_readme_formats_table_lists_every_suffix_the_loader_accepts(name: str) -> None:
    """Each format's row names every file suffix that selects it (`.torchscript` included)."""
    listed = set(re.findall(r"`(\.[a-z]+)`", _format_rows()[name]))
    assert listed == set(FORMATS[name].suffixes)


def test_readme_protect_metrics_row_names_every_route_it_guards() -> None:
    """The `auth.protect_metrics` reference row names each route the setting guards."""
    guarded = {
        spec.path
        for spec in declare_routes(Settings())
        if spec.access is Access.METRICS and spec.mount is None
    }
    (row,) = [
        line for line in README.read_text().splitlines() if "| `auth.protect_metrics` |" in line
    ]
    assert {"/metrics", "/stats", "/dashboard"} <= guarded
    assert all(path in row for path in guarded), row
