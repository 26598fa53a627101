"""The serving entry point and the gunicorn integration import one way: serving → workers."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import modelserve

PACKAGE = Path(modelserve.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    """Every ``modelserve`` module ``path`` imports, at module level or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.startswith("modelserve.")}


def test_workers_never_imports_serving() -> None:
    """workers.py imports nothing from serving.py, anywhere in the file."""
    assert "modelserve.serving" not in _imported_modules(PACKAGE / "workers.py")


def test_importing_either_module_loads_not_the_other() -> None:
    """In a fresh interpreter, importing workers does not load serving, and importing serving
    does not load workers (serving imports it only when it starts gunicorn)."""
    script = textwrap.dedent(
        """
        import importlib, sys
        first, other = sys.argv[1:]
        importlib.import_module(first)
        print(other in sys.modules)
        """
    )
    for first, other in (
        ("modelserve.workers", "modelserve.serving"),
        ("modelserve.serving", "modelserve.workers"),
    ):
        loaded = subprocess.run(
            [sys.executable, "-c", script, first, other],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout.strip()
        assert loaded == "False", f"importing {first} loaded {other}"
