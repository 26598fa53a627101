"""`modelserve init`: what it writes, and what it refuses to touch."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from modelserve.cli import main
from modelserve.inference.version import build_version
from modelserve.settings import load_settings


def test_init_writes_module_artifacts_config_and_test(tmp_path: Path) -> None:
    """NAME becomes a module, a class, its parameters, a config serving it and a test."""
    result = CliRunner().invoke(main, ["init", "churn-v2", "--dir", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    names = sorted(p.relative_to(tmp_path / "p").as_posix() for p in (tmp_path / "p").rglob("*"))
    assert names == [
        "artifacts",
        "artifacts/params.json",
        "churn_v2_model.py",
        "modelserve.yaml",
        "test_churn_v2_model.py",
    ]
    assert "class ChurnV2Model:" in (tmp_path / "p" / "churn_v2_model.py").read_text()


def test_init_config_builds_a_classifier_version(tmp_path: Path) -> None:
    """The generated config loads as a classifier with the class's feature names and labels."""
    CliRunner().invoke(main, ["init", "churn", "--dir", str(tmp_path / "p")])
    model = load_settings(tmp_path / "p" / "modelserve.yaml").models[0]
    info = build_version(model, require_sha256=False).info
    assert (info.task, info.labels) == ("classifier", ["negative", "positive"])
    assert info.feature_names == ["feature_1", "feature_2", "feature_3"]


def test_init_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    """An existing file is never overwritten: usage error, nothing written."""
    (tmp_path / "churn").mkdir()
    (tmp_path / "churn" / "notes.txt").write_text("mine")
    result = CliRunner().invoke(main, ["init", "churn", "--dir", str(tmp_path / "churn")])
    assert result.exit_code == 2
    assert "not an empty folder" in result.output
    assert [p.name for p in (tmp_path / "churn").iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("name", ["9lives", "my model", "a.b", ""], ids=repr)
def test_init_refuses_names_that_are_no_module(tmp_path: Path, name: str) -> None:
    """A name that cannot be a model and module name is a usage error."""
    result = CliRunner().invoke(main, ["init", name, "--dir", str(tmp_path / "p")])
    assert result.exit_code == 2
    assert not (tmp_path / "p").exists()
