"""The README stays true to the code: configuration reference, error codes, config examples."""

from __future__ import annotations

import inspect
import re
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from modelserve import errors
from modelserve.api.errors import http_status
from modelserve.cli import main
from modelserve.inference.artifact import file_sha256
from modelserve.reference import BEGIN, END, render_reference
from modelserve.settings import load_settings
from tests.readme_examples import Example, readme_examples

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
        cls.code: http_status(cls)
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.ModelserveError) and not issubclass(cls, errors.ModelLoadError)
    }
    table = _error_table()
    assert {code: table.get(code) for code in codes} == codes


EXAMPLES = readme_examples()
YAML_EXAMPLES = [e for e in EXAMPLES if e.language == "yaml"]


def _kind(example: Example, kind: str) -> bool:
    marker = example.parsed_marker()
    return marker is not None and marker[kind] is not None


def test_readme_every_example_block_says_how_it_is_tested() -> None:
    """Each YAML and console block has an `<!-- example: ... -->` marker, or fails here."""
    unmarked = [e.id for e in EXAMPLES if e.parsed_marker() is None]
    assert unmarked == []
    assert len(EXAMPLES) >= 15  # the parser still finds the blocks


def test_readme_examples_not_run_still_parse() -> None:
    """A YAML block that is not run is still valid YAML (a mapping)."""
    for example in YAML_EXAMPLES:
        assert isinstance(yaml.safe_load(example.text), dict), example.id


@pytest.mark.parametrize(
    "example", [e for e in YAML_EXAMPLES if _kind(e, "config")], ids=lambda e: e.id
)
def test_readme_config_example_checks_clean(
    example: Example, demo_models_dir: Path, tmp_path: Path
) -> None:
    """`modelserve check --config` passes on a complete config example, in the demo folder."""
    folder = Path(shutil.copytree(demo_models_dir, tmp_path / "models"))
    config = yaml.safe_load(example.text)
    for model in config.get("models", []):
        model.setdefault("sha256", file_sha256(folder / model["path"]))
    (folder / "example.yaml").write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(main, ["check", "--config", str(folder / "example.yaml")])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "example", [e for e in YAML_EXAMPLES if _kind(e, "base")], ids=lambda e: e.id
)
def test_readme_config_fragment_is_valid_over_the_demo(
    example: Example, demo_models_dir: Path, tmp_path: Path
) -> None:
    """A fragment merged over the demo config it names is a valid configuration."""
    marker = example.parsed_marker()
    assert marker is not None
    base = yaml.safe_load((demo_models_dir / marker["base"]).read_text())
    merged = tmp_path / "merged.yaml"
    merged.write_text(yaml.safe_dump({**base, **yaml.safe_load(example.text)}))
    load_settings(merged)  # raises, naming the problem, when the fragment is not valid


def test_readme_canary_example_is_what_the_demo_writes(demo_models_dir: Path) -> None:
    """The canary config in the README is the demo's canary.yaml, pins aside."""
    (shown,) = [e for e in YAML_EXAMPLES if "iris-v2.onnx" in e.text and _kind(e, "config")]
    written = yaml.safe_load((demo_models_dir / "canary.yaml").read_text())
    for model in written["models"]:
        assert model.pop("sha256") is not None
    assert yaml.safe_load(shown.text) == written
