"""The Kubernetes manifests agree with the code: settings names, probe paths, ports, grace."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelserve.api.auth import withheld_reason
from modelserve.app import create_app
from modelserve.settings import Settings, load_settings, unauthenticated_exposure

BASE = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "base"
OVERLAY = BASE.parent / "overlays" / "production"


def _documents(kustomization: Path) -> list[dict[str, Any]]:
    spec = yaml.safe_load(kustomization.read_text())
    docs: list[dict[str, Any]] = []
    for resource in spec.get("resources", []):
        path = kustomization.parent / resource
        if path.is_dir():
            docs.extend(_documents(path / "kustomization.yaml"))
        else:
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def _configmap_env() -> dict[str, str]:
    spec = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    (generator,) = [g for g in spec["configMapGenerator"] if g["name"] == "modelserve-env"]
    return dict(item.split("=", 1) for item in generator["literals"])


def _pod_spec() -> dict[str, Any]:
    (deployment,) = [
        d
        for d in _documents(BASE / "kustomization.yaml")
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "modelserve"
    ]
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def _container() -> dict[str, Any]:
    container: dict[str, Any] = _pod_spec()["containers"][0]
    return container


def _container_env() -> dict[str, str]:
    """The container's own env entries; values from a Secret become a stand-in of 64 hex."""
    env: dict[str, str] = {}
    for item in _container().get("env", []):
        value = "ab" * 32 if "valueFrom" in item else str(item["value"])
        env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], value)
    return env


def _example_keys() -> dict[str, str]:
    """The keys the operator puts in the Secret: the example env file, placeholders filled."""
    lines = (BASE.parents[1] / "api-keys.env.example").read_text().splitlines()
    keys = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {k: re.sub(r"REPLACE_WITH_[A-Z0-9_]+", "0" * 64, v) for k, v in keys.items()}


def _env_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings from the ConfigMap, the container's env and the keys Secret, as a pod gets them."""
    for key, value in {**_configmap_env(), **_container_env(), **_example_keys()}.items():
        if key.startswith("MODELSERVE_"):
            monkeypatch.setenv(key, value)
    return load_settings()


def _redis_resources() -> tuple[dict[str, Any], dict[str, Any]]:
    docs = _documents(BASE / "kustomization.yaml")
    (redis,) = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] != "modelserve"
    ]
    (policy,) = [
        d
        for d in docs
        if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "modelserve-redis"
    ]
    return redis, policy


def test_configmap_every_variable_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every MODELSERVE_ variable of the ConfigMap parses into the settings tree."""
    settings = _env_settings(monkeypatch)
    assert settings.cache.backend == "redis"
    assert settings.rate_limit.storage == "redis"
    assert settings.server.host == "0.0.0.0"


def test_deployment_probes_hit_real_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Liveness, readiness and startup probes name routes the app serves."""
    paths = {getattr(route, "path", None) for route in create_app(Settings()).routes}
    container = _container()
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] in paths
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"


def test_deployment_port_matches_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The container port is the port the settings make the server listen on."""
    settings = _env_settings(monkeypatch)
    ports = {p["containerPort"] for p in _container()["ports"]}
    assert settings.server.port in ports


def test_deployment_probes_and_scrapes_use_the_probe_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Probes and the Prometheus annotation name the probe listener's port, off the loop."""
    settings = _env_settings(monkeypatch)
    ports = {p["name"]: p["containerPort"] for p in _container()["ports"]}
    assert ports["probe"] == settings.server.probe_port
    container = _container()
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == "probe"
    (deployment,) = [
        d for d in _documents(BASE / "kustomization.yaml") if d["kind"] == "Deployment"
    ][:1]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(settings.server.probe_port)


def test_deployment_grace_covers_prestop_and_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kubernetes waits longer than the pre-stop delay plus the drain grace period."""
    settings = _env_settings(monkeypatch)
    budget = settings.server.prestop_delay_s + settings.server.grace_period_s
    assert _pod_spec()["terminationGracePeriodSeconds"] > budget


def test_overlay_builds_on_base() -> None:
    """The production overlay includes every base resource and sets the image."""
    kinds = {(d["kind"], d["metadata"]["name"]) for d in _documents(OVERLAY / "kustomization.yaml")}
    assert ("Deployment", "modelserve") in kinds
    assert ("Service", "modelserve-redis") in kinds
    spec = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    assert spec["images"][0]["name"] == _container()["image"].split(":")[0]


def test_manifests_trust_only_single_proxy_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Base and overlay trust X-Forwarded-For from single addresses only, never a network."""
    spec = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    (generator,) = spec["configMapGenerator"]
    assert (generator["name"], generator["behavior"]) == ("modelserve-env", "merge")
    for item in generator["literals"]:
        monkeypatch.setenv(*item.split("=", 1))
    proxies = _env_settings(monkeypatch).rate_limit.trusted_proxies
    assert proxies
    for proxy in proxies:
        network = ipaddress.ip_network(proxy, strict=False)
        assert network.num_addresses == 1, proxy


def test_modelserve_reaches_redis_with_a_password_and_a_cache_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Redis URL carries the Secret's password and the cache keys derive from a Secret."""
    settings = _env_settings(monkeypatch)
    assert settings.redis_url is not None
    assert settings.redis_url.get_secret_value() == f"redis://:{'ab' * 32}@modelserve-redis:6379/0"
    assert settings.cache.key_secret is not None
    refs = {
        item["name"]: item["valueFrom"]["secretKeyRef"]
        for item in _container()["env"]
        if "valueFrom" in item
    }
    assert refs["REDIS_PASSWORD"] == {"name": "modelserve-redis", "key": "password"}
    assert refs["MODELSERVE_CACHE__KEY_SECRET"]["name"] == "modelserve-redis"


def test_redis_requires_the_password_from_the_same_secret() -> None:
    """redis-server runs with --requirepass set from the Secret modelserve reads."""
    redis, _ = _redis_resources()
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    (password,) = container["env"]
    assert password["valueFrom"]["secretKeyRef"] == {"name": "modelserve-redis", "key": "password"}


def test_redis_network_policy_admits_only_modelserve_pods() -> None:
    """The NetworkPolicy selects the Redis pods and admits only modelserve pods on 6379."""
    redis, policy = _redis_resources()
    redis_labels = redis["spec"]["template"]["metadata"]["labels"]
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"].items() <= redis_labels.items()
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    (source,) = rule["from"]
    assert source == {"podSelector": {"matchLabels": _pod_labels()}}
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]


def _pod_labels() -> dict[str, str]:
    (deployment,) = [
        d
        for d in _documents(BASE / "kustomization.yaml")
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "modelserve"
    ]
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def test_deployment_takes_api_keys_from_a_secret() -> None:
    """The container reads its keys from the modelserve-api-keys Secret, which must exist."""
    sources = _container()["envFrom"]
    (secret,) = [s["secretRef"] for s in sources if "secretRef" in s]
    assert secret["name"] == "modelserve-api-keys"
    assert not secret.get("optional", False)


def test_configmap_turns_auth_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the ConfigMap and the keys of the example env file, auth is on, so the pods may
    listen on every interface, and the admin API is served to the ops key."""
    settings = _env_settings(monkeypatch)
    assert settings.auth.enabled
    assert unauthenticated_exposure(settings) is None
    assert withheld_reason(settings.auth, "admin") is None
