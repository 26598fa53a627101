"""The compose example: Redis needs a password, and the cache keys a secret, both from env."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml"


def _services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def test_compose_redis_requires_a_password_from_the_environment() -> None:
    """redis-server runs with --requirepass, and compose refuses to start without the value."""
    command = _services()["redis"]["command"]
    assert command[command.index("--requirepass") + 1] == "${REDIS_PASSWORD:?set REDIS_PASSWORD}"


def test_compose_modelserve_uses_the_password_and_a_cache_key_secret() -> None:
    """modelserve's Redis URL carries that password; its cache key secret is required from env."""
    env = _services()["modelserve"]["environment"]
    assert env["MODELSERVE_REDIS_URL"].startswith("redis://:${REDIS_PASSWORD:?")
    assert env["MODELSERVE_CACHE__KEY_SECRET"].startswith("${MODELSERVE_CACHE_KEY_SECRET:?")
