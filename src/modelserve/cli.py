"""Command line: ``modelserve serve | check | demo | profile``; flags become settings, no logic."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from modelserve import __version__
from modelserve.inference.loader import FORMAT_BY_SUFFIX
from modelserve.settings import (
    Settings,
    describe_invalid_settings,
    load_settings,
    unauthenticated_exposure,
)


def _overrides(**flags: Any) -> dict[str, Any]:
    """Nested setting overrides from the flags the user actually gave."""
    server = {k: v for k, v in flags.items() if v is not None}
    return {"server": server} if server else {}


def _model_name(path: Path) -> str:
    """A valid model name from a file name: other characters become underscores."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem).lstrip("_.-")[:64]
    return name or "model"


CONFIG_SUFFIXES = (".yaml", ".yml")


class ConfigurationError(click.ClickException):
    """The configuration cannot be used: exit 2, one line per problem, no usage banner."""

    exit_code = 2


def _settings(
    config: Path | None, model_path: Path | None, model: dict[str, Any] | None = None, **flags: Any
) -> Settings:
    overrides = _overrides(**flags)
    if model_path is not None:
        entry = {"name": _model_name(model_path), "path": model_path.resolve(), **(model or {})}
        overrides["models"] = [entry]
    try:
        return load_settings(config, **overrides)
    except ValidationError as exc:
        raise ConfigurationError(describe_invalid_settings(exc)) from exc
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigurationError(str(exc)) from exc


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [item.strip() for item in text.split(",") if item.strip()]


def _zero_config_model(
    model_path: Path, labels: str | None, feature_names: str | None, n_features: int | None
) -> dict[str, Any]:
    """What the flags say about a model served without a config file; refuse what cannot load."""
    if model_path.suffix.lower() in CONFIG_SUFFIXES:
        raise ConfigurationError(
            f"{model_path} is a configuration file, not a model: "
            f"did you mean `modelserve serve --config {model_path}`?"
        )
    names = _split(feature_names)
    width = n_features or (len(names) if names else None)
    if FORMAT_BY_SUFFIX.get(model_path.suffix.lower()) == "torchscript" and width is None:
        raise ConfigurationError(
            f"{model_path.name} is TorchScript, which does not declare its input width: "
            "give --n-features N (or --feature-names a,b,...)"
        )
    entry: dict[str, Any] = {"labels": _split(labels), "feature_names": names}
    if FORMAT_BY_SUFFIX.get(model_path.suffix.lower()) == "torchscript":
        entry["n_features"] = width
    elif n_features is not None:
        entry["n_features"] = n_features
    return {key: value for key, value in entry.items() if value is not None}


@click.group()
@click.version_option(__version__, prog_name="modelserve")
def main() -> None:
    """Serve saved machine-learning models over HTTP."""


@main.command()
@click.argument("model_path", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--config", "-c", type=click.Path(exists=True, path_type=Path), help="YAML config.")
@click.option("--host", default=None, help="Interface to bind [127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [8000].")
@click.option("--grpc-port", type=int, default=None, help="Also serve V2 gRPC on this port [off].")
@click.option("--workers", type=int, default=None, help="Processes; >1 uses gunicorn [1].")
@click.option("--probe-port", type=int, default=None, help="Probe listener port [off].")
@click.option("--log-format", type=click.Choice(["json", "console"]), default=None)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None)
@click.option("--strict/--no-strict", default=None, help="Exit non-zero if a model fails to load.")
@click.option(
    "--allow-unauthenticated",
    is_flag=True,
    default=None,
    help="Serve beyond loopback with auth off (when something in front authenticates).",
)
@click.option("--labels", default=None, help="MODEL_PATH only: class names, comma-separated.")
@click.option("--feature-names", default=None, help="MODEL_PATH only: names, comma-separated.")
@click.option(
    "--n-features",
    type=click.IntRange(min=1),
    default=None,
    help="MODEL_PATH only: input width (TorchScript does not declare it).",
)
def serve(
    model_path: Path | None,
    config: Path | None,
    labels: str | None,
    feature_names: str | None,
    n_features: int | None,
    **flags: Any,
) -> None:
    """Serve MODEL_PATH, or the models of --config."""
    if model_path is None and config is None:
        raise click.UsageError("give a MODEL_PATH or --config")
    model = None
    if model_path is not None:
        model = _zero_config_model(model_path, labels, feature_names, n_features)
    elif (labels, feature_names, n_features) != (None, None, None):
        raise click.UsageError(
            "--labels, --feature-names and --n-features describe a MODEL_PATH; "
            "with --config set them in the file"
        )
    settings = _settings(config, model_path, model, **flags)
    problem = unauthenticated_exposure(settings)
    if problem is not None:
        raise click.UsageError(problem)
    from modelserve.observability.logging import configure_logging
    from modelserve.serving import run

    configure_logging(settings.server.log_format, settings.server.log_level)
    run(settings)


@main.command()
@click.option("--config", "-c", type=click.Path(exists=True, path_type=Path), required=True)
def check(config: Path) -> None:
    """Load and warm up every configured model; print a table.

    Exit 0 when every version loads and warms up, 1 when one does not (its row says why),
    2 when the configuration itself is unusable (one line per problem, naming the key).
    """
    from modelserve.inference.check import check_models

    settings = _settings(config, None)
    ok, table = check_models(settings)
    click.echo(table)
    if not ok:
        click.echo("check failed: see the reasons above", err=True)
        sys.exit(1)


@main.command()
@click.argument("name")
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to write (must be new or empty) [./NAME].",
)
def init(name: str, folder: Path | None) -> None:
    """Scaffold a model class, a config that serves it and a pytest test for it."""
    from modelserve.scaffold import scaffold

    target = folder if folder is not None else Path(name)
    try:
        written = scaffold(name, target)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(
        f"next: cd {target} && pytest && modelserve check --config modelserve.yaml"
        " && modelserve serve --config modelserve.yaml"
    )


@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("models"), show_default=True)
def demo(out: Path) -> None:
    """Build the iris demo models and a config that serves them."""
    from modelserve.demo import build_demo

    for message in build_demo(out):
        click.echo(message)


@main.command()
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Training data: .csv (header row), .npy, or .parquet (needs modelserve[parquet]).",
)
@click.option(
    "--model",
    "model_spec",
    required=True,
    help="A model file, or NAME[:VERSION] of a model in --config (its labels and names apply).",
)
@click.option("--config", "-c", type=click.Path(exists=True, path_type=Path), help="YAML config.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--bins", type=click.IntRange(2, 100), default=10, show_default=True)
def profile(data: Path, model_spec: str, config: Path | None, out: Path, bins: int) -> None:
    """Write the reference profile used for drift signals (set it as the model's `profile:`)."""
    from modelserve.inference.check import describe_features
    from modelserve.inference.profiler import profile_version, select_model
    from modelserve.settings import ModelConfig

    try:
        require_sha256 = False
        if config is not None:
            settings = _settings(config, None)
            model = select_model(settings.models, model_spec)
            require_sha256 = settings.require_sha256
        elif Path(model_spec).is_file():
            path = Path(model_spec).resolve()
            model = ModelConfig(name=_model_name(path), path=path)
        else:
            raise click.UsageError(f"{model_spec} is not a file; give --config to name a model")
        reference, info = profile_version(model, data, bins, require_sha256=require_sha256)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    out.write_bytes(reference.to_json())
    if info.features is not None:
        click.echo(describe_features(f"{info.name}:{info.version}", info.features))
    click.echo("\n".join(reference.describe()))
    click.echo(f"wrote {out}: {reference.rows} rows, {len(reference.features)} features")


@main.command()
@click.argument("model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Rows to verify on (.csv with header, .npy, .parquet); default: drawn from the trees.",
)
@click.option("--rows", type=click.IntRange(10, 1_000_000), default=2000, show_default=True)
@click.option(
    "--tolerance",
    type=click.FloatRange(min=0),
    default=1e-5,
    show_default=True,
    help="Largest allowed probability difference (relative for regressors).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the drawn sample.")
@click.option("--sha256", default=None, help="Pinned digest of MODEL_PATH, checked before loading.")
def optimize(
    model_path: Path,
    out: Path,
    data: Path | None,
    rows: int,
    tolerance: float,
    seed: int,
    sha256: str | None,
) -> None:
    """Convert a tree model to ONNX Runtime; verify, time, and write OUT only if it matches."""
    from modelserve.errors import ModelLoadError
    from modelserve.inference.artifact import file_sha256
    from modelserve.optimize.command import optimize_model

    try:
        report = optimize_model(
            model_path, out, data=data, rows=rows, tolerance=tolerance, seed=seed, sha256=sha256
        )
    except ModelLoadError as exc:
        raise click.ClickException(exc.detail) from exc
    except ValueError as exc:  # not convertible, or not comparable
        raise click.ClickException(str(exc)) from exc
    conversion, verification = report.conversion, report.verification
    click.echo(f"converted {conversion.source} with {conversion.converter}")
    click.echo(f"sample: {report.sample_source}")
    click.echo(verification.describe())
    if not report.written:
        click.echo(f"refused: {out} was not written", err=True)
        sys.exit(1)
    click.echo("in-process time per model call (original -> optimized):")
    for timing in report.timings:
        click.echo(f"  {timing.describe()}")
    click.echo(f"wrote {out} (sha256 {file_sha256(out)})")
    click.echo("serve it beside the original as a shadow version first (see the README)")


@main.command("config-reference")
@click.option("--update", type=click.Path(exists=True, path_type=Path), help="Rewrite in place.")
def config_reference(update: Path | None) -> None:
    """Print the configuration reference (Markdown), or update it inside a README."""
    from modelserve.reference import embed_reference, render_reference

    if update is not None:
        embed_reference(update)
    else:
        click.echo(render_reference(), nl=False)
