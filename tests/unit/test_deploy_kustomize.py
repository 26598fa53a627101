"""The kustomize base and overlays render with `kubectl kustomize`, and what they render is
valid Kubernetes (each object checked against the API schema) that the code agrees with."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from modelserve.inference.check import check_models
from modelserve.observability.metrics import QUEUE_ROWS
from modelserve.settings import Settings, load_settings
from tests.conftest import REPO_ROOT

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUSTOMIZATIONS = {
    "base": K8S / "base",
    "production": K8S / "overlays" / "production",
    "dev": K8S / "overlays" / "dev",
}
WITH_REDIS = ("base", "production")
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


_RENDERED: dict[str, list[dict[str, Any]]] = {}


def rendered_once(name: str) -> list[dict[str, Any]]:
    """The objects of one kustomization, rendered once per run (kubectl takes a while)."""
    if name not in _RENDERED:
        _RENDERED[name] = render(KUSTOMIZATIONS[name])
    return _RENDERED[name]


@pytest.fixture(params=list(KUSTOMIZATIONS), ids=list(KUSTOMIZATIONS))
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return rendered_once(request.param)


@pytest.fixture(params=WITH_REDIS, ids=list(WITH_REDIS))
def rendered_with_redis(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return rendered_once(request.param)


def _one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def _pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod: dict[str, Any] = _one(objects, "Deployment", "modelserve")["spec"]["template"]["spec"]
    return pod


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = _pod(objects)["containers"]
    assert isinstance(container, dict)
    return container


def test_kustomize_renders_the_server_redis_and_disruption_budget(
    rendered_with_redis: list[dict[str, Any]],
) -> None:
    """Base and production render both Deployments and Services, the PDB, the autoscaler,
    both NetworkPolicies and both ConfigMaps."""
    kinds = {(o["kind"], o["metadata"]["name"]) for o in rendered_with_redis}
    assert {
        ("Deployment", "modelserve"),
        ("Deployment", "modelserve-redis"),
        ("Service", "modelserve"),
        ("Service", "modelserve-redis"),
        ("PodDisruptionBudget", "modelserve"),
        ("HorizontalPodAutoscaler", "modelserve"),
        ("NetworkPolicy", "modelserve"),
        ("NetworkPolicy", "modelserve-redis"),
        ("ConfigMap", "modelserve-config"),
    } <= kinds
    assert any(kind == "ConfigMap" and name.startswith("modelserve-env") for kind, name in kinds)


def test_kustomize_rendered_objects_are_valid_kubernetes(rendered: list[dict[str, Any]]) -> None:
    """Every rendered object validates, strictly (no unknown fields), against the schema."""
    for manifest in rendered:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_kustomize_production_sets_image_replicas_and_workers() -> None:
    """The overlay's image, replica count and worker count reach the rendered Deployment."""
    production = rendered_once("production")
    deployment = _one(production, "Deployment", "modelserve")
    container = _container(production)
    assert container["image"] == "registry.example.com/modelserve:0.1.0"
    assert deployment["spec"]["replicas"] == 4
    assert {"name": "MODELSERVE_SERVER__WORKERS", "value": "2"} in container["env"]


def test_kustomize_dev_is_one_replica_without_redis() -> None:
    """The dev overlay runs one pod with memory back-ends: no Redis, nothing that needs its
    Secret, and no autoscaler or disruption budget that one pod could not satisfy."""
    dev = rendered_once("dev")
    kinds = {(o["kind"], o["metadata"]["name"]) for o in dev}
    assert _one(dev, "Deployment", "modelserve")["spec"]["replicas"] == 1
    assert not [name for _, name in kinds if name.startswith("modelserve-redis")]
    assert not [
        kind for kind, _ in kinds if kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget")
    ]
    assert "modelserve-redis" not in yaml.safe_dump(_one(dev, "Deployment", "modelserve"))


def _environment(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The container's environment as rendered: its generated ConfigMap (by the hashed name
    kustomize gave it), its Secrets as documented, its own variables."""
    container = _container(objects)
    configmaps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
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
    return environment


def _mounted_config(objects: list[dict[str, Any]], directory: Path, models: Path) -> Path:
    """The file ``--config`` names, written as its ConfigMap volume holds it, with the image's
    /models directory standing for ``models``."""
    container = _container(objects)
    args: list[str] = container["args"]
    config_path = Path(args[args.index("--config") + 1])
    (mount,) = [m for m in container["volumeMounts"] if config_path.is_relative_to(m["mountPath"])]
    assert "subPath" not in mount, "a subPath mount never sees ConfigMap updates"
    (volume,) = [v for v in _pod(objects)["volumes"] if v["name"] == mount["name"]]
    configmap = _one(objects, "ConfigMap", volume["configMap"]["name"])
    text = configmap["data"][str(config_path.relative_to(mount["mountPath"]))]
    path = directory / config_path.name
    path.write_text(text.replace("/models/", f"{models}/"))
    return path


def test_kustomize_pod_configuration_loads_and_serves_its_models(
    rendered: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    demo_models_dir: Path,
) -> None:
    """The pod's configuration as rendered (its environment plus the config file mounted from
    the modelserve-config ConfigMap) is valid, and every model it names loads and warms up
    from the files the image builds (`modelserve demo`)."""
    environment = _environment(rendered)
    assert environment, "the container gets no MODELSERVE_ variables"
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings: Settings = load_settings(_mounted_config(rendered, tmp_path, demo_models_dir))
    assert settings.server.port in {p["containerPort"] for p in _container(rendered)["ports"]}
    assert settings.auth.enabled
    assert settings.server.watch_config, "edits of the mounted ConfigMap would be ignored"
    ok, table = check_models(settings)
    assert ok, table


def test_kustomize_configuration_names_no_hash(rendered: list[dict[str, Any]]) -> None:
    """The config file's ConfigMap keeps its name, so an edit reaches running pods in place
    instead of a new hashed ConfigMap rolling them."""
    volumes = {v["name"]: v for v in _pod(rendered)["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "modelserve-config"


def test_kustomize_backends_follow_the_overlay(monkeypatch: pytest.MonkeyPatch) -> None:
    """Production shares Redis (with a password) and runs 2 workers; dev keeps both
    back-ends in memory."""
    expected = {"production": ("redis", "redis", 2), "dev": ("memory", "memory", 1)}
    for name, backends in expected.items():
        with monkeypatch.context() as env:
            for variable, value in _environment(rendered_once(name)).items():
                env.setenv(variable, value)
            settings = load_settings()
        found = (settings.cache.backend, settings.rate_limit.storage, settings.server.workers)
        assert found == backends, name
        if settings.cache.backend == "redis":
            assert settings.redis_url is not None
            assert settings.redis_url.get_secret_value().startswith("redis://:")


def test_kustomize_autoscaler_scales_the_deployment_on_cpu(
    rendered_with_redis: list[dict[str, Any]],
) -> None:
    """The HPA targets the modelserve Deployment on CPU (which has a request to measure
    against), starts at its replica count, and stays above the disruption budget."""
    hpa = _one(rendered_with_redis, "HorizontalPodAutoscaler", "modelserve")["spec"]
    deployment = _one(rendered_with_redis, "Deployment", "modelserve")
    pdb = _one(rendered_with_redis, "PodDisruptionBudget", "modelserve")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "modelserve",
    }
    (metric,) = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert "cpu" in _container(rendered_with_redis)["resources"]["requests"]
    assert hpa["minReplicas"] == deployment["spec"]["replicas"] <= hpa["maxReplicas"]
    assert pdb["minAvailable"] < hpa["minReplicas"]


def test_kustomize_autoscaler_queue_depth_example_is_valid() -> None:
    """The commented queue-depth metric, uncommented, is a valid HPA metric on a series
    modelserve exports."""
    text = (K8S / "base" / "hpa.yaml").read_text()
    block = re.search(r"# BEGIN queue-depth example\n(.*?)\n\s*# END", text, re.DOTALL)
    assert block is not None
    uncommented = "\n".join(line.replace("# ", "", 1) for line in block.group(1).splitlines())
    (metric,) = yaml.safe_load(uncommented)
    hpa = _one(rendered_once("base"), "HorizontalPodAutoscaler", "modelserve")
    hpa["spec"]["metrics"].append(metric)
    kubernetes_validate.validate(hpa, KUBERNETES_VERSION, strict=True)
    assert metric["pods"]["metric"]["name"] == QUEUE_ROWS._name
    assert f"seriesQuery: '{QUEUE_ROWS._name}" in text


def test_kustomize_pods_spread_over_nodes_and_zones(rendered: list[dict[str, Any]]) -> None:
    """Replicas spread across zones where possible and across nodes always, per ReplicaSet."""
    pod = _pod(rendered)
    labels = _one(rendered, "Deployment", "modelserve")["spec"]["template"]["metadata"]["labels"]
    spread = {c["topologyKey"]: c for c in pod["topologySpreadConstraints"]}
    assert spread["topology.kubernetes.io/zone"]["whenUnsatisfiable"] == "ScheduleAnyway"
    assert spread["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
    for constraint in spread.values():
        assert constraint["labelSelector"]["matchLabels"].items() <= labels.items()
        assert constraint["matchLabelKeys"] == ["pod-template-hash"]


def test_kustomize_probes_have_timeouts(rendered: list[dict[str, Any]]) -> None:
    """Every probe states its timeout, and the startup probe allows two minutes of loading."""
    container = _container(rendered)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["timeoutSeconds"] <= container[probe]["periodSeconds"]
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120


def test_kustomize_network_policy_opens_only_the_serving_and_probe_ports(
    rendered: list[dict[str, Any]],
) -> None:
    """modelserve pods admit clients on the serving port and Prometheus on the probe port."""
    policy = _one(rendered, "NetworkPolicy", "modelserve")["spec"]
    labels = _one(rendered, "Deployment", "modelserve")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    ports = {p["name"]: p["containerPort"] for p in _container(rendered)["ports"]}
    opened = [port["port"] for rule in policy["ingress"] for port in rule["ports"]]
    assert sorted(opened) == sorted(ports.values())
