"""The compose stack (deploy/compose.yaml) holds together: every file, env file, secret,
network and service it names exists, and the services point at each other correctly.

No Docker engine runs here, so the file is checked the way compose would resolve it."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
STACK: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
SERVICES: dict[str, Any] = STACK["services"]


def _services() -> dict[str, Any]:
    return SERVICES


def _mounts(service: str) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts (relative to deploy/)."""
    mounts: dict[str, Path] = {}
    for volume in SERVICES[service].get("volumes", []):
        host, target, *_ = volume.split(":")
        mounts[target] = (COMPOSE.parent / host).resolve()
    return mounts


def test_compose_is_two_replicas_redis_nginx_prometheus_grafana() -> None:
    """The stack has the five services, two modelserve replicas, and nginx as the way in."""
    assert set(SERVICES) == {"redis", "modelserve", "nginx", "prometheus", "grafana"}
    assert SERVICES["modelserve"]["deploy"]["replicas"] == 2
    assert "ports" not in SERVICES["modelserve"], "clients reach the replicas through nginx"
    assert SERVICES["nginx"]["ports"] == ["8080:8080"]


def test_compose_redis_requires_a_password_from_the_environment() -> None:
    """redis-server runs with --requirepass, and compose refuses to start without the value."""
    command = SERVICES["redis"]["command"]
    assert command[command.index("--requirepass") + 1] == "${REDIS_PASSWORD:?set REDIS_PASSWORD}"


def test_compose_modelserve_uses_the_password_and_a_cache_key_secret() -> None:
    """modelserve's Redis URL carries that password; its cache key secret is required from env."""
    env = SERVICES["modelserve"]["environment"]
    assert env["MODELSERVE_REDIS_URL"].startswith("redis://:${REDIS_PASSWORD:?")
    interpolated = re.sub(r"\$\{\w+:\?[^}]*\}", "password", env["MODELSERVE_REDIS_URL"])
    assert urlsplit(interpolated).hostname in SERVICES
    assert env["MODELSERVE_CACHE__KEY_SECRET"].startswith("${MODELSERVE_CACHE_KEY_SECRET:?")


def test_compose_required_variables_are_documented() -> None:
    """Every variable compose requires (``${NAME:?...}`` or a secret from the environment) is
    named in the file's opening instructions."""
    text = COMPOSE.read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    required = set(re.findall(r"\$\{(\w+):\?", text))
    required |= {s["environment"] for s in STACK["secrets"].values() if "environment" in s}
    assert required
    for name in required:
        assert f"export {name}=" in header, name


@pytest.mark.parametrize("service", sorted(SERVICES), ids=sorted(SERVICES))
def test_compose_references_resolve(service: str) -> None:
    """Build context, Dockerfile, bind-mounted files, env files (or the example they are
    copied from), secrets, networks and dependencies all exist."""
    spec = SERVICES[service]
    if "build" in spec:
        context = COMPOSE.parent / spec["build"]["context"]
        assert (context / spec["build"]["dockerfile"]).is_file()
    for host in _mounts(service).values():
        assert host.exists(), host
    for env_file in spec.get("env_file", []):
        path = COMPOSE.parent / env_file
        assert path.is_file() or path.with_name(path.name + ".example").is_file(), path
    for secret in spec.get("secrets", []):
        assert secret["source"] in STACK["secrets"]
    for network in spec.get("networks", {}):
        assert network == "default" or network in STACK.get("networks", {})
    for dependency in spec.get("depends_on", []):
        assert dependency in SERVICES


def test_compose_nginx_config_includes_what_is_mounted() -> None:
    """nginx.conf is mounted where nginx reads it, every file it includes (relative to it) is
    mounted too, and its upstream is the modelserve service on the port the replicas expose."""
    mounts = _mounts("nginx")
    conf = mounts["/etc/nginx/nginx.conf"].read_text()
    pending, seen = ["/etc/nginx/nginx.conf"], set()
    while pending:
        target = pending.pop()
        seen.add(target)
        for include in re.findall(r"^\s*include\s+(\S+);", mounts[target].read_text(), re.M):
            included = include if include.startswith("/") else f"/etc/nginx/{include}"
            assert included in mounts, include
            if included not in seen:
                pending.append(included)
    assert len(seen) == 3
    (upstream,) = re.findall(r"^\s*server\s+([\w.-]+):(\d+)\b", conf, re.MULTILINE)
    assert upstream[0] == "modelserve"
    assert upstream[1] in SERVICES["modelserve"]["expose"]


def test_compose_trusts_forwarded_for_only_from_nginx() -> None:
    """The replicas trust X-Forwarded-For from nginx's fixed address alone, on the stack's
    own network."""
    env = SERVICES["modelserve"]["environment"]
    (trusted,) = json.loads(env["MODELSERVE_RATE_LIMIT__TRUSTED_PROXIES"])
    address = SERVICES["nginx"]["networks"]["default"]["ipv4_address"]
    assert ipaddress.ip_network(trusted) == ipaddress.ip_network(f"{address}/32")
    (pool,) = STACK["networks"]["default"]["ipam"]["config"]
    assert ipaddress.ip_address(address) in ipaddress.ip_network(pool["subnet"])


def test_compose_prometheus_scrapes_the_replicas_with_its_key() -> None:
    """Prometheus reads the mounted config, which finds the replicas by service name on their
    port and sends the key compose mounts where the config expects it."""
    spec = SERVICES["prometheus"]
    mounts = _mounts("prometheus")
    (flag,) = [arg for arg in spec["command"] if arg.startswith("--config.file=")]
    config = yaml.safe_load(mounts[flag.partition("=")[2]].read_text())
    for rule_file in config["rule_files"]:
        assert f"/etc/prometheus/{rule_file}" in mounts
    (job,) = [j for j in config["scrape_configs"] if "dns_sd_configs" in j]
    (discovery,) = job["dns_sd_configs"]
    assert discovery["names"] == ["modelserve"]
    assert str(discovery["port"]) in SERVICES["modelserve"]["expose"]
    targets = {s["target"] for s in spec["secrets"]}
    assert job["authorization"]["credentials_file"] in targets


def test_compose_grafana_provisions_the_prometheus_service_and_dashboard() -> None:
    """Grafana's datasource is the prometheus service, and the dashboard file is mounted where
    the dashboard provider looks."""
    mounts = _mounts("grafana")
    provisioning = mounts["/etc/grafana/provisioning"]
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    url = urlsplit(source["url"])
    assert url.hostname in SERVICES
    assert f"{url.port}:{url.port}" in SERVICES[str(url.hostname)]["ports"]
    providers = yaml.safe_load((provisioning / "dashboards" / "modelserve.yml").read_text())
    (provider,) = providers["providers"]
    dashboards = [t for t in mounts if t.startswith(provider["options"]["path"] + "/")]
    assert dashboards
    for target in dashboards:
        json.loads(mounts[target].read_text())
