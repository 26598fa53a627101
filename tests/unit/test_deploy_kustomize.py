"""The kustomize base and overlay render with `kubectl kustomize`, and what they render is
valid Kubernetes (each object checked against the API schema) that the code agrees with."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from modelserve.settings import Settings, load_settings
from tests.conftest import REPO_ROOT

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUSTOMIZATIONS = {"base": K8S / "base", "production": K8S / "overlays" / "production"}
KUBERNETES_VERSION = "1.32.0"
"""The API version the objects are checked against (a release clusters run today)."""


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize`` renders from ``directory``."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not installed: the manifests are rendered by kubectl kustomize")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=list(KUSTOMIZATIONS), ids=list(KUSTOMIZATIONS))
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(KUSTOMIZATIONS[request.param])


@pytest.fixture(scope="module")
def production() -> list[dict[str, Any]]:
    return render(KUSTOMIZATIONS["production"])


def _one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def test_kustomize_renders_the_server_redis_and_disruption_budget(
    rendered: list[dict[str, Any]],
) -> None:
    """Each kustomization renders both Deployments, both Services, the PDB and the ConfigMap."""
    kinds = {(o["kind"], o["metadata"]["name"]) for o in rendered}
    assert {
        ("Deployment", "modelserve"),
        ("Deployment", "modelserve-redis"),
        ("Service", "modelserve"),
        ("Service", "modelserve-redis"),
        ("PodDisruptionBudget", "modelserve"),
    } <= kinds
    assert any(kind == "ConfigMap" and name.startswith("modelserve-env") for kind, name in kinds)


def test_kustomize_rendered_objects_are_valid_kubernetes(rendered: list[dict[str, Any]]) -> None:
    """Every rendered object validates, strictly (no unknown fields), against the schema."""
    for manifest in rendered:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_kustomize_production_sets_image_replicas_and_workers(
    production: list[dict[str, Any]],
) -> None:
    """The overlay's image, replica count and worker count reach the rendered Deployment."""
    deployment = _one(production, "Deployment", "modelserve")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/modelserve:0.1.0"
    assert deployment["spec"]["replicas"] == 4
    assert {"name": "MODELSERVE_SERVER__WORKERS", "value": "2"} in container["env"]


def test_kustomize_rendered_environment_is_a_valid_configuration(
    production: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The container's environment as rendered (its generated ConfigMap, by the hashed name
    kustomize gave it, plus its own variables) loads as settings the server accepts."""
    deployment = _one(production, "Deployment", "modelserve")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    configmaps = {o["metadata"]["name"]: o for o in production if o["kind"] == "ConfigMap"}
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            environment.update(configmaps[source["configMapRef"]["name"]]["data"])
    environment.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    if any("secretRef" in source for source in container.get("envFrom", [])):
        # The API-key Secret holds what deploy/api-keys.env.example shows, with real digests.
        example = (REPO_ROOT / "deploy" / "api-keys.env.example").read_text()
        name, _, value = next(
            line for line in example.splitlines() if line.startswith("MODELSERVE_")
        ).partition("=")
        environment[name] = value.replace(
            "REPLACE_WITH_THE_SHA256_OF_THE_APP_KEY", "a" * 64
        ).replace("REPLACE_WITH_THE_SHA256_OF_THE_OPS_KEY", "b" * 64)
    # Variables read from Secrets get a stand-in of the documented form (`openssl rand -hex 32`).
    environment.update(
        {
            e["name"]: "0" * 64
            for e in container.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        }
    )
    assert environment, "the container gets no MODELSERVE_ variables"
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings: Settings = load_settings()
    ports = {p["containerPort"] for p in container["ports"]}
    assert settings.server.port in ports
    assert settings.server.workers == 2
