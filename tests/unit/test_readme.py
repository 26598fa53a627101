"""The README stays true to the code: configuration reference and error codes."""

from __future__ import annotations

import inspect
from pathlib import Path

from modelserve import errors
from modelserve.reference import BEGIN, END, render_reference

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_configuration_reference_is_current() -> None:
    """The embedded reference is current (`modelserve config-reference --update README.md`)."""
    text = README.read_text()
    embedded = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert embedded.strip() == render_reference().strip()


def test_readme_error_table_lists_every_client_visible_code() -> None:
    """Every error code a client can receive appears in the README's error table."""
    text = README.read_text()
    codes = {
        cls.code
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.ModelserveError) and not issubclass(cls, errors.ModelLoadError)
    }
    missing = sorted(code for code in codes if f"`{code}`" not in text)
    assert missing == []
