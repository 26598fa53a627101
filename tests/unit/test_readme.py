"""The README stays true to the code: configuration reference and error codes."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from modelserve import errors
from modelserve.reference import BEGIN, END, render_reference

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_configuration_reference_is_current() -> None:
    """The embedded reference is current (`modelserve config-reference --update README.md`)."""
    text = README.read_text()
    embedded = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert embedded.strip() == render_reference().strip()


def _error_table() -> dict[str, int]:
    """The README's "Error codes" table: each code in a row, with that row's status."""
    section = README.read_text().split("### Error codes", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`" in line]
    table: dict[str, int] = {}
    for row in rows:
        status, codes, _when = (cell.strip() for cell in row.strip("|").split("|"))
        for code in re.findall(r"`([a-z_]+)`", codes):
            assert code not in table, f"{code} has two rows"
            table[code] = int(status)
    return table


def test_readme_error_table_lists_every_client_visible_code_with_its_status() -> None:
    """Every code a client can receive has a row in the README's error table with its status."""
    codes = {
        cls.code: int(cls.status_code)
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.ModelserveError) and not issubclass(cls, errors.ModelLoadError)
    }
    table = _error_table()
    assert {code: table.get(code) for code in codes} == codes
