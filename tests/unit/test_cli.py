"""The command line: check prints its table and exit status, demo writes everything it promises."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from modelserve import __version__
from modelserve.cli import main
from modelserve.inference.artifact import directory_sha256, file_sha256
from modelserve.settings import load_settings

DEMO_MODELS = ["iris.joblib", "iris.onnx", "iris.skops", "iris.pt"]
FORMAT_MODELS = ["iris-xgboost.json", "iris-lightgbm.txt", "iris-catboost.cbm", "iris-mlflow"]
"""One model per optional format (all installed here); ``iris-mlflow`` is a directory."""
DEMO_FILES = [*DEMO_MODELS, "modelserve.yaml", *FORMAT_MODELS, "formats.yaml"]
CANARY_FILES = ["iris-v2.onnx", "canary.yaml"]
"""The README's canary example, written beside the demo config."""
ROLLOUT_FILES = ["iris-forest.joblib", "iris-forest.onnx"]
"""The README's optimized rollout: a forest and what `modelserve optimize` made of it."""


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def write_config(directory: Path, models: list[dict[str, object]]) -> Path:
    path = directory / "modelserve.yaml"
    path.write_text(yaml.safe_dump({"models": models}))
    return path


def test_cli_version(runner: CliRunner) -> None:
    """--version prints the package version."""
    result = runner.invoke(main, ["--version"])
    assert (result.exit_code, result.output.strip()) == (0, f"modelserve, version {__version__}")


def test_check_demo_config_prints_table_and_exits_0(
    runner: CliRunner, demo_models_dir: Path
) -> None:
    """check loads every demo model and prints one ok row per version under the header."""
    result = runner.invoke(main, ["check", "--config", str(demo_models_dir / "modelserve.yaml")])
    assert result.exit_code == 0, result.output
    header, *rows = result.output.strip().splitlines()
    assert header.split() == [
        "name",
        "version",
        "format",
        "features",
        "load",
        "ms",
        "warm-up",
        "ms",
        "status",
    ]
    assert [row.split()[:4] for row in rows] == [
        ["iris", "1", "sklearn", "4"],
        ["iris-onnx", "1", "onnx", "4"],
        ["iris-skops", "1", "skops", "4"],
        ["iris-torch", "1", "torchscript", "4"],
    ]
    assert all(row.split()[-1] == "ok" for row in rows)


def test_check_demo_formats_config_loads_one_model_per_format(
    runner: CliRunner, demo_models_dir: Path
) -> None:
    """formats.yaml serves the XGBoost, LightGBM, CatBoost and MLflow demo models, all ok."""
    result = runner.invoke(main, ["check", "--config", str(demo_models_dir / "formats.yaml")])
    assert result.exit_code == 0, result.output
    rows = result.output.strip().splitlines()[1:]
    assert [row.split()[:4] for row in rows] == [
        ["iris-xgboost", "1", "xgboost", "4"],
        ["iris-lightgbm", "1", "lightgbm", "4"],
        ["iris-catboost", "1", "catboost", "4"],
        ["iris-mlflow", "1", "mlflow", "4"],
    ]
    assert all(row.split()[-1] == "ok" for row in rows)


def test_check_reports_load_and_warmup_durations(runner: CliRunner, demo_models_dir: Path) -> None:
    """The load ms and warm-up ms columns hold each model's real times: more than nothing,
    and together no more than the whole command took."""
    started = time.perf_counter()
    result = runner.invoke(main, ["check", "--config", str(demo_models_dir / "modelserve.yaml")])
    took_ms = (time.perf_counter() - started) * 1000
    rows = [row.split() for row in result.output.strip().splitlines()[1:]]
    durations = [(float(row[4]), float(row[5])) for row in rows]
    assert all(load_ms > 0 and warmup_ms > 0 for load_ms, warmup_ms in durations), durations
    assert sum(load_ms + warmup_ms for load_ms, warmup_ms in durations) <= took_ms


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("missing", "FAILED: model file not found"),
        ("corrupt", "FAILED: could not load corrupt.joblib"),
        ("mismatch", "FAILED: sha256 of"),
    ],
    ids=["missing-file", "corrupt-file", "hash-mismatch"],
)
def test_check_broken_model_exits_1_with_reason(
    runner: CliRunner,
    tmp_path: Path,
    demo_models_dir: Path,
    fake_models_dir: Path,
    setup: str,
    reason: str,
) -> None:
    """A model that cannot load makes check exit 1 with the reason in its row."""
    entries: dict[str, dict[str, object]] = {
        "missing": {"name": "m", "path": "absent.joblib"},
        "corrupt": {"name": "m", "path": str(fake_models_dir / "corrupt.joblib")},
        "mismatch": {"name": "m", "path": str(demo_models_dir / "iris.joblib"), "sha256": "0" * 64},
    }
    good: dict[str, object] = {"name": "iris", "path": str(demo_models_dir / "iris.joblib")}
    result = runner.invoke(
        main, ["check", "--config", str(write_config(tmp_path, [good, entries[setup]]))]
    )
    assert result.exit_code == 1
    rows = result.stdout.strip().splitlines()
    assert rows[1].split()[-1] == "ok"
    assert reason in rows[2]
    assert "check failed" in result.stderr


def test_check_without_models_exits_1(runner: CliRunner, tmp_path: Path) -> None:
    """A config that serves nothing fails the check."""
    result = runner.invoke(main, ["check", "--config", str(write_config(tmp_path, []))])
    assert result.exit_code == 1
    assert "no models configured" in result.stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: [\n", "is not valid YAML"),
        ("- just\n- a list\n", "must hold a mapping"),
        ("modles: []\n", "  modles: unknown setting (misspelt?)\n"),
        ("models:\n  - name: m\n", "  models[0].path: required setting is missing\n"),
        ("cache: {backend: redis}\n", "  cache.backend is 'redis' but redis_url is not set\n"),
        (
            "rate_limit: {enabled: true, storage: redis}\n",
            "  rate_limit.storage is 'redis' but redis_url is not set\n",
        ),
        ("server: {port: x, workers: 0}\n", "  server.workers: "),
    ],
    ids=[
        "yaml-syntax",
        "yaml-list",
        "misspelt-key",
        "missing-field",
        "cache-redis",
        "rl-redis",
        "two",
    ],
)
def test_check_broken_config_exits_2_with_clear_message(
    runner: CliRunner, tmp_path: Path, text: str, message: str
) -> None:
    """An unusable config exits 2 with one line per problem naming the key: no usage banner,
    no raw pydantic text, no traceback."""
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    result = runner.invoke(main, ["check", "--config", str(path)])
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Usage:" not in result.stderr
    assert "errors.pydantic.dev" not in result.stderr
    assert "validation error" not in result.stderr
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_check_lists_every_problem_on_its_own_line(runner: CliRunner, tmp_path: Path) -> None:
    """Two invalid settings give two lines, each naming its key."""
    path = tmp_path / "broken.yaml"
    path.write_text("server: {port: x, workers: 0}\n")
    result = runner.invoke(main, ["check", "--config", str(path)])
    problems = [line.strip() for line in result.stderr.splitlines()[1:]]
    assert [line.split(":")[0] for line in problems] == ["server.port", "server.workers"]


def test_serve_a_config_file_as_model_path_asks_for_config(
    runner: CliRunner, demo_models_dir: Path
) -> None:
    """`modelserve serve ok.yaml` (no --config) fails at once instead of serving YAML as a model."""
    config = demo_models_dir / "modelserve.yaml"
    result = runner.invoke(main, ["serve", str(config)])
    assert result.exit_code == 2
    assert f"did you mean `modelserve serve --config {config}`?" in result.stderr


def test_serve_torchscript_without_width_names_the_flag(
    runner: CliRunner, demo_models_dir: Path
) -> None:
    """A zero-config TorchScript file without --n-features fails at once naming the flag."""
    result = runner.invoke(main, ["serve", str(demo_models_dir / "iris.pt")])
    assert result.exit_code == 2
    assert "give --n-features N" in result.stderr


def test_serve_model_flags_refused_with_config(runner: CliRunner, demo_models_dir: Path) -> None:
    """--labels and friends describe a MODEL_PATH; with --config they are a usage error."""
    config = str(demo_models_dir / "modelserve.yaml")
    result = runner.invoke(main, ["serve", "--config", config, "--labels", "a,b,c"])
    assert result.exit_code == 2
    assert "with --config set them in the file" in result.stderr


def test_check_missing_config_file_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    """A --config path that does not exist is refused by the option itself."""
    result = runner.invoke(main, ["check", "--config", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_serve_without_model_or_config_is_a_usage_error(runner: CliRunner) -> None:
    """serve needs a MODEL_PATH or --config."""
    result = runner.invoke(main, ["serve"])
    assert result.exit_code == 2
    assert "give a MODEL_PATH or --config" in result.stderr


def test_serve_invalid_flag_value_is_a_usage_error(
    runner: CliRunner, demo_models_dir: Path
) -> None:
    """A flag value the settings refuse is reported before anything starts."""
    result = runner.invoke(main, ["serve", str(demo_models_dir / "iris.joblib"), "--port", "70000"])
    assert result.exit_code == 2
    assert "port" in result.stderr


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`modelserve demo --out` run once: the folder and what the command printed."""
    out = tmp_path_factory.mktemp("cli-demo") / "models"
    result = CliRunner().invoke(main, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_demo_writes_every_artifact_and_config(demo_run: tuple[Path, str]) -> None:
    """demo --out writes one model per installed format and the config, and says so for each."""
    out, output = demo_run
    written = [line.removeprefix("wrote ") for line in output.splitlines()]
    for name in DEMO_FILES + CANARY_FILES + ROLLOUT_FILES:
        assert (out / name).is_dir() if name == "iris-mlflow" else (out / name).is_file()
        assert str(out / name) in written


def test_demo_config_serves_every_artifact_with_pins(demo_run: tuple[Path, str]) -> None:
    """The demo config names each artifact once, pinned by its real sha256, iris the default."""
    settings = load_settings(demo_run[0] / "modelserve.yaml")
    assert settings.default_model == "iris"
    assert sorted(m.path.name for m in settings.models) == sorted(DEMO_MODELS)
    assert all(m.sha256 == file_sha256(m.path) for m in settings.models)
    assert settings.require_sha256 is True
    formats = load_settings(demo_run[0] / "formats.yaml")
    assert [m.path.name for m in formats.models] == FORMAT_MODELS
    assert all(
        m.sha256 == (directory_sha256(m.path) if m.path.is_dir() else file_sha256(m.path))
        for m in formats.models
    )
    assert formats.require_sha256 is True


def test_demo_config_travels_with_its_models(
    runner: CliRunner, demo_run: tuple[Path, str], tmp_path: Path
) -> None:
    """A demo folder copied elsewhere still checks clean (paths are relative to the config)."""
    moved = Path(shutil.copytree(demo_run[0], tmp_path / "moved"))
    result = runner.invoke(main, ["check", "--config", str(moved / "modelserve.yaml")])
    assert result.exit_code == 0, result.output
