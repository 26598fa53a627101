"""`make loadtest` needs Locust alone: its own small extra and venv, not the dev tools or torch."""

from __future__ import annotations

import ast
import re
import sys
import tomllib

from tests.conftest import REPO_ROOT

LOCUSTFILE = REPO_ROOT / "benchmarks" / "locustfile.py"


def _make_rule(target: str) -> tuple[str, list[str]]:
    """The prerequisites and recipe lines of ``target`` in the Makefile."""
    lines = (REPO_ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return lines[start].split(":", 1)[1].strip(), recipe


def test_loadtest_extra_holds_only_locust() -> None:
    """The `loadtest` extra is Locust and nothing else."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extra = pyproject["project"]["optional-dependencies"]["loadtest"]
    assert [re.split(r"[<>=!~\[ ]", requirement)[0] for requirement in extra] == ["locust"]


def test_loadtest_target_builds_its_own_venv_from_that_extra() -> None:
    """`make loadtest` depends on the Locust venv only, never on the dev venv (dev + torch)."""
    prerequisites, recipe = _make_rule("loadtest")
    venv_prerequisites, venv_recipe = _make_rule("$(LOADTEST_VENV)/.loadtest")
    assert prerequisites == "$(LOADTEST_VENV)/.loadtest"
    assert ".dev" not in venv_prerequisites
    assert any("$(LOADTEST_EXTRA)" in line for line in venv_recipe)
    assert not any("-e" in line.split() or "[dev" in line for line in venv_recipe)
    assert all("$(LOADTEST_VENV)/bin/" in line for line in recipe)


def test_locustfile_imports_only_the_standard_library_and_locust() -> None:
    """The locustfile runs in that venv: it imports no modelserve, numpy or other package."""
    tree = ast.parse(LOCUSTFILE.read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
    }
    third_party = imported - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party <= {"locust", "gevent"}, third_party
