"""`modelserve check`: load and warm up every version outside a server, report a table."""

from __future__ import annotations

from collections.abc import Sequence

from modelserve.errors import ModelLoadError
from modelserve.inference.types import FeatureSpec
from modelserve.inference.version import build_version
from modelserve.settings import Settings

_COLUMNS = ("name", "version", "format", "features", "load ms", "warm-up ms", "status")


def check_models(settings: Settings) -> tuple[bool, str]:
    """(all loaded, a plain-text table with one line per version and the failure reasons)."""
    rows: list[tuple[str, ...]] = []
    schemas: list[str] = []
    ok = bool(settings.models)
    for config in settings.models:
        try:
            info = build_version(config, require_sha256=settings.require_sha256).info
        except ModelLoadError as exc:
            ok = False
            rows.append(
                (config.name, config.version, config.format, "-", "-", "-", f"FAILED: {exc.detail}")
            )
            continue
        rows.append(
            (
                info.name,
                info.version,
                info.format,
                str(info.n_features),
                f"{info.load_ms:.1f}",
                f"{info.warmup_ms:.1f}",
                "ok",
            )
        )
        if info.features is not None:
            schemas.append(describe_features(f"{info.name}:{info.version}", info.features))
    if not settings.models:
        rows.append(("-", "-", "-", "-", "-", "-", "FAILED: no models configured"))
    widths = [max(len(r[i]) for r in [_COLUMNS, *rows]) for i in range(len(_COLUMNS))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [_COLUMNS, *rows]
    ]
    return ok, "\n\n".join(["\n".join(lines), *schemas])


def describe_features(version: str, features: Sequence[FeatureSpec]) -> str:
    """The typed feature schema of a version, one feature a line."""
    return "\n".join([f"typed features of {version}:", *(f"  {f.describe()}" for f in features)])
