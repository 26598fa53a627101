"""Every shipped deployment example refuses unpinned pickle and TorchScript files."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from modelserve.settings import load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _dockerfile_env() -> dict[str, str]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    pairs: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            pairs |= dict(re.findall(r"(\w+)=(\S+)", line))
    return pairs


def _compose_env() -> dict[str, str]:
    spec = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return {k: str(v) for k, v in spec["services"]["modelserve"]["environment"].items()}


def _kustomize_env() -> dict[str, str]:
    spec = yaml.safe_load((DEPLOY / "k8s" / "base" / "kustomization.yaml").read_text())
    (generator,) = [g for g in spec["configMapGenerator"] if g["name"] == "modelserve-env"]
    return dict(item.split("=", 1) for item in generator["literals"])


@pytest.mark.parametrize(
    "environment",
    [_dockerfile_env, _compose_env, _kustomize_env],
    ids=["dockerfile", "compose", "kustomize"],
)
def test_deploy_example_turns_require_sha256_on(
    environment: Callable[[], dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The image, compose file and kustomize base set require_sha256, as the settings read it."""
    for key, value in environment().items():
        if key == "MODELSERVE_REQUIRE_SHA256":
            monkeypatch.setenv(key, value)
    assert load_settings().require_sha256 is True
