"""SECURITY.md walks the whole OWASP API Security Top 10 and names only tests that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "SECURITY.md").read_text()
TEST_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def _defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def test_security_doc_walks_every_owasp_api_item_with_a_test() -> None:
    """API1 to API10 each have a section, and each section names at least one test."""
    sections = re.split(r"^### ", DOC, flags=re.MULTILINE)
    items = {m.group(1): text for text in sections if (m := re.match(r"API(\d+):2023 ", text))}
    assert sorted(items, key=int) == [str(n) for n in range(1, 11)]
    for number, text in items.items():
        assert TEST_REFERENCE.search(text), f"API{number} names no test"


def test_security_doc_names_only_tests_that_exist() -> None:
    """Every `tests/...py::test_name` in SECURITY.md is a test function in that file."""
    references = TEST_REFERENCE.findall(DOC)
    assert len(references) > 20
    missing = [
        f"{path}::{name}"
        for path, name in references
        if not (REPO / path).is_file() or name not in _defined_tests(REPO / path)
    ]
    assert missing == []
