"""The KServe manifests (deploy/kserve) agree with the code: rendered as KServe renders them,
their flags, settings, probe paths, ports, protocols and grace period are all real."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from modelserve.app import create_app
from modelserve.cli import serve
from modelserve.settings import Settings, load_settings, unauthenticated_exposure
from tests.unit.test_deploy_container import example_keys, image_env, settings_from
from tests.unit.test_deploy_kustomize import KUBERNETES_VERSION

KSERVE = Path(__file__).resolve().parents[2] / "deploy" / "kserve"


def _load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((KSERVE / name).read_text())
    return document


RUNTIME = _load("servingruntime.yaml")
SERVICE = _load("inferenceservice.yaml")
CONTAINER: dict[str, Any] = RUNTIME["spec"]["containers"][0]


def _rendered_env() -> dict[str, str]:
    """The container env with KServe's {{.Name}} placeholder filled in."""
    name = SERVICE["metadata"]["name"]
    return {e["name"]: e["value"].replace("{{.Name}}", name) for e in CONTAINER["env"]}


def _flag_value(flag: str) -> str:
    args: list[str] = CONTAINER["args"]
    return args[args.index(flag) + 1]


def test_kserve_service_uses_the_runtime_with_a_protocol_and_format_it_declares() -> None:
    """The InferenceService names the runtime, one of its protocols and one of its formats."""
    model = SERVICE["spec"]["predictor"]["model"]
    assert RUNTIME["kind"] == "ClusterServingRuntime"
    assert model["runtime"] == RUNTIME["metadata"]["name"]
    assert model["protocolVersion"] in RUNTIME["spec"]["protocolVersions"]
    formats = {f["name"] for f in RUNTIME["spec"]["supportedModelFormats"]}
    assert model["modelFormat"]["name"] in formats


def test_kserve_container_args_are_serve_flags() -> None:
    """Every flag the runtime passes is an option of ``modelserve serve``."""
    options = {opt for param in serve.params for opt in getattr(param, "opts", [])}
    flags = [arg for arg in CONTAINER["args"] if arg.startswith("--")]
    assert flags
    assert set(flags) <= options


def test_kserve_env_builds_settings_serving_the_service_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The env, rendered, is valid settings: one model named after the InferenceService,
    read from KServe's model mount."""
    for name, value in _rendered_env().items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    (model,) = settings.models
    assert model.name == SERVICE["metadata"]["name"]
    assert model.path.is_relative_to("/mnt/models")
    grace = settings.server.grace_period_s + settings.server.prestop_delay_s
    assert grace < SERVICE["spec"]["predictor"]["terminationGracePeriodSeconds"]


def test_kserve_probes_and_ports_match_the_served_app(
    settings_factory: Callable[..., Settings],
) -> None:
    """Probe paths are V2 routes the app serves, on the port the container listens on."""
    paths = {getattr(route, "path", None) for route in create_app(settings_factory()).routes}
    port = int(_flag_value("--port"))
    assert [p["containerPort"] for p in CONTAINER["ports"]] == [port]
    assert int(RUNTIME["spec"]["annotations"]["prometheus.kserve.io/port"]) == port
    assert RUNTIME["spec"]["annotations"]["prometheus.kserve.io/path"] in paths
    for probe in ("readinessProbe", "livenessProbe"):
        check = CONTAINER[probe]["httpGet"]
        assert check["path"] in paths
        assert check["port"] == port


def test_kserve_runtime_serves_with_auth_on_and_keys_from_the_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The image turns auth on; the runtime reads the keys Secret, so the container may listen
    on 0.0.0.0 (the --host it passes) and starts once the Secret exists."""
    (secret,) = [s["secretRef"] for s in CONTAINER["envFrom"] if "secretRef" in s]
    assert secret["name"] == "modelserve-api-keys"
    env = {**image_env(), **_rendered_env(), **example_keys()}
    settings = settings_from(env, monkeypatch)
    settings.server.host = _flag_value("--host")
    assert settings.auth.enabled
    assert unauthenticated_exposure(settings) is None


def test_kserve_runtime_container_is_a_valid_kubernetes_container() -> None:
    """The runtime's container (KServe puts it in the predictor pod as it is) validates
    strictly against the Kubernetes Container schema; KServe's own kinds have no schema
    there, so the pod around it is the minimal one."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": SERVICE["metadata"]["name"]},
        "spec": {"containers": RUNTIME["spec"]["containers"]},
    }
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
