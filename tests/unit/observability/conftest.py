"""Small in-process apps over the demo iris model, and /metrics read through the parser."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from modelserve.settings import Settings, load_settings
from tests.prometheus import Samples, parse


def iris_entry(demo_models_dir: Path, name: str = "iris", **extra: Any) -> dict[str, Any]:
    """The demo's iris model config (with its profile), under another name if asked."""
    config = yaml.safe_load((demo_models_dir / "modelserve.yaml").read_text())
    (entry,) = [m for m in config["models"] if m["name"] == "iris"]
    entry = {**entry, "name": name, **extra}
    entry["path"] = str(demo_models_dir / entry["path"])
    entry["profile"] = str(demo_models_dir / entry["profile"])
    entry.pop("default", None)
    return entry


@pytest.fixture
def small_settings(demo_models_dir: Path, tmp_path: Path) -> Callable[..., Settings]:
    """Factory: settings serving only the given model entries (default: the demo iris)."""

    def make(models: list[dict[str, Any]] | None = None, **sections: Any) -> Settings:
        body = {"models": models or [iris_entry(demo_models_dir)], **sections}
        path = tmp_path / "modelserve.yaml"
        path.write_text(yaml.safe_dump(body))
        return load_settings(path)

    return make


async def scrape(client: httpx.AsyncClient) -> Samples:
    """Every sample of GET /metrics, parsed by prometheus-client's own parser."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    return parse(response.text)
