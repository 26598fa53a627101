"""Admin changes reach every process: gunicorn workers (a shared file) and replicas (Redis).

Real ``modelserve serve`` processes only. Which process answered a ``GET /models`` is in its
``control.process``; each process also logs ``control_state_applied`` with the version.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import joblib
import pytest
import redis
from google.protobuf.message import Message

from modelserve.rpc import inference_pb2 as pb
from tests import iris_versions as iv
from tests.conftest import free_port, start_redis
from tests.e2e.conftest import RunningServer, wait_for_log_events

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ADMIN_KEY = "e2e-fleet-admin-7a1c3e5f9b2d4068"
KEY_HEADER = {"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"}
MAX_POLLS = 400
POLL_DEADLINE_S = 30.0


def fleet_config(directory: Path, **top: Any) -> Path:
    """iris 1 (answers setosa for SETOSA_ROW, the default) and 2 (answers versicolor), auth on
    with an admin key, no prediction cache."""
    v1 = iv.dump(iv.logistic(), directory / "v1.joblib")
    v2 = iv.dump(iv.shifted(), directory / "v2.joblib")
    ops = {"name": "ops", "key": ADMIN_KEY, "scopes": ["predict", "admin"]}
    return iv.write_config(
        directory / "modelserve.yaml",
        [iv.version_entry("iris", "1", v1, default=True), iv.version_entry("iris", "2", v2)],
        cache={"backend": "none"},
        auth={"enabled": True, "keys": [ops]},
        **top,
    )


def models(server: RunningServer) -> dict[str, Any]:
    """GET /models on a fresh connection (so gunicorn may hand it to any worker)."""
    response = httpx.get(server.base_url + "/models", headers=KEY_HEADER, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def default_version(body: dict[str, Any]) -> str:
    (default,) = [m["version"] for m in body["models"] if m["is_default"]]
    return str(default)


def wait_until_every_process_shows(
    server: RunningServer,
    processes: int,
    version: int,
    default: str,
    statuses: dict[str, str] | None = None,
) -> set[str]:
    """Poll /models until ``processes`` distinct processes answered at ``version`` with
    ``default`` (and these version ``statuses``); fail if an answer at that version differs."""
    seen: set[str] = set()
    deadline = time.monotonic() + POLL_DEADLINE_S
    for _ in range(MAX_POLLS):
        body = models(server)
        if body["control"]["version"] >= version:
            assert default_version(body) == default, body
            shown = {m["version"]: m["status"] for m in body["models"]}
            assert statuses is None or shown == statuses, body
            seen.add(body["control"]["process"])
        if len(seen) >= processes or time.monotonic() > deadline:
            break
    assert len(seen) >= processes, f"only {seen} answered at version {version}"
    return seen


def patch_default(server: RunningServer, version: str) -> dict[str, Any]:
    response = httpx.patch(
        server.base_url + "/admin/models/iris/routing",
        json={"default": version},
        headers=KEY_HEADER,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_workers_share_a_routing_change_without_redis(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path
) -> None:
    """A routing change made through one gunicorn worker is applied by both (file state)."""
    server = serve_modelserve(fleet_config(tmp_path), "--workers", "2")
    wait_for_log_events(server, 2, event="control_state_applied", version=0)
    body = patch_default(server, "2")
    assert body["default"] == "2"
    assert body["control"] == {
        "version": 1,
        "processes": 2,
        "applied": 2,
        "failed": [],
        "pending": [],
    }
    wait_for_log_events(server, 2, event="control_state_applied", version=1)
    assert len(wait_until_every_process_shows(server, 2, 1, "2")) == 2

    # The Open Inference Protocol's repository calls reach every worker too.
    unloaded = httpx.post(
        server.base_url + "/v2/repository/models/iris/unload",
        json={"parameters": {"version": "1"}},
        headers=KEY_HEADER,
        timeout=30,
    )
    assert unloaded.status_code == 200, unloaded.text
    wait_for_log_events(server, 2, event="control_state_applied", version=2)
    wait_until_every_process_shows(server, 2, 2, "2", {"1": "unloaded", "2": "ready"})


def _grpc_repository(port: int, method: str, request: Message, response: type[Message]) -> None:
    """One repository call with the admin key, on a new connection (so any worker takes it)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            f"/inference.GRPCInferenceService/{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=response.FromString,
        )
        call(request, metadata=(("authorization", f"Bearer {ADMIN_KEY}"),), timeout=30)


def test_workers_share_a_grpc_repository_change(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path
) -> None:
    """An unload and a load made through gRPC on one worker reach both workers, as the same
    calls over HTTP do: every process applies each change and shows the version's state."""
    grpc_port = free_port()
    server = serve_modelserve(
        fleet_config(tmp_path), "--workers", "2", "--grpc-port", str(grpc_port)
    )
    wait_for_log_events(server, 2, event="control_state_applied", version=0)
    version_2 = {"version": pb.ModelRepositoryParameter(string_param="2")}

    unload = pb.RepositoryModelUnloadRequest(model_name="iris", parameters=version_2)
    _grpc_repository(grpc_port, "RepositoryModelUnload", unload, pb.RepositoryModelUnloadResponse)
    wait_for_log_events(server, 2, event="control_state_applied", version=1)
    wait_until_every_process_shows(server, 2, 1, "1", {"1": "ready", "2": "unloaded"})

    load = pb.RepositoryModelLoadRequest(model_name="iris", parameters=version_2)
    _grpc_repository(grpc_port, "RepositoryModelLoad", load, pb.RepositoryModelLoadResponse)
    wait_for_log_events(server, 2, event="control_state_applied", version=2)
    wait_until_every_process_shows(server, 2, 2, "1", {"1": "ready", "2": "ready"})


def start_replica(
    serve_modelserve: Callable[..., RunningServer],
    directory: Path,
    redis_url: str,
    *extra: str,
) -> RunningServer:
    directory.mkdir(parents=True, exist_ok=True)
    return serve_modelserve(fleet_config(directory, redis_url=redis_url), *extra)


def test_replicas_share_changes_through_redis(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path, redis_url: str
) -> None:
    """Two servers on one Redis (one with two workers): a routing change through either is
    applied by all three processes, a reload reloads the artifact everywhere, and a server
    started afterwards begins with the changed state."""
    a = start_replica(serve_modelserve, tmp_path / "a", redis_url, "--workers", "2")
    b = start_replica(serve_modelserve, tmp_path / "b", redis_url)
    wait_for_log_events(a, 2, event="control_state_applied", version=0)

    routed = patch_default(b, "2")
    assert routed["control"]["applied"] == routed["control"]["processes"] == 3, routed
    wait_until_every_process_shows(a, 2, routed["control"]["version"], "2")
    assert default_version(models(b)) == "2"

    # Both replicas' version 1 now answer versicolor once reloaded from their own files.
    for replica in ("a", "b"):
        joblib.dump(iv.shifted(), tmp_path / replica / "v1.joblib")
    response = httpx.post(
        a.base_url + "/admin/models/iris/versions/1/reload", headers=KEY_HEADER, timeout=60
    )
    assert response.status_code == 200, response.text
    reload_state = response.json()["control"]
    assert reload_state["applied"] == reload_state["processes"] == 3, reload_state
    wait_for_log_events(a, 2, event="control_state_applied", version=reload_state["version"])
    answer = httpx.post(
        b.base_url + "/predict?model_version=1",
        json={"features": iv.SETOSA_ROW},
        headers=KEY_HEADER,
        timeout=10,
    )
    assert answer.json()["prediction"] == "versicolor"

    late = start_replica(serve_modelserve, tmp_path / "late", redis_url)
    shown = models(late)
    assert shown["control"]["version"] == reload_state["version"]
    assert default_version(shown) == "2"


def test_a_hostile_redis_state_is_refused(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path, redis_url: str
) -> None:
    """A state document that does not validate is refused with a logged reason and the
    process keeps serving its state; the next admin change repairs the document."""
    server = start_replica(serve_modelserve, tmp_path / "a", redis_url)
    client = redis.Redis.from_url(redis_url)
    hostile = b'{"version": 7, "models": {"iris": {"routing": {"weights": {"2": 1e999}}}}}'
    client.set("modelserve:control:state", hostile)
    client.publish("modelserve:control:changed", "7")
    (refused,) = wait_for_log_events(server, 1, event="control_state_refused")
    assert "routing" in str(refused["reason"])
    body = models(server)
    assert (body["control"]["version"], default_version(body)) == (0, "1")

    routed = patch_default(server, "2")
    assert routed["control"]["applied"] == 1
    assert routed["control"]["version"] == 1
    client.close()


def test_a_reload_that_fails_on_one_replica_is_reported(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path, redis_url: str
) -> None:
    """A reload whose artifact is corrupt on replica B only: the answer names B as failed
    with the reason, B keeps serving its previous artifact, and /admin/control shows B
    differing until the next change."""
    a = start_replica(serve_modelserve, tmp_path / "a", redis_url)
    b = start_replica(serve_modelserve, tmp_path / "b", redis_url)
    (tmp_path / "b" / "v1.joblib").write_bytes(b"not a model")
    response = httpx.post(
        a.base_url + "/admin/models/iris/versions/1/reload", headers=KEY_HEADER, timeout=60
    )
    assert response.status_code == 200, response.text
    control = response.json()["control"]
    assert (control["processes"], control["applied"], control["pending"]) == (2, 1, [])
    (failed,) = control["failed"]
    assert failed["process"] == models(b)["control"]["process"]
    assert "iris:1" in failed["errors"][0]
    answer = httpx.post(
        b.base_url + "/predict?model_version=1",
        json={"features": iv.SETOSA_ROW},
        headers=KEY_HEADER,
        timeout=10,
    )
    assert answer.json()["prediction"] == "setosa"
    state = httpx.get(a.base_url + "/admin/control", headers=KEY_HEADER, timeout=10).json()
    assert (state["version"], state["in_sync"]) == (control["version"], False)
    differing = [p for p in state["processes"] if p["errors"]]
    assert [p["process"] for p in differing] == [failed["process"]]


def wait_for_default(server: RunningServer, default: str) -> None:
    """Poll /models until the default version is ``default`` (bounded)."""
    deadline = time.monotonic() + POLL_DEADLINE_S
    for _ in range(MAX_POLLS):
        if default_version(models(server)) == default:
            return
        assert time.monotonic() < deadline, f"the default never became {default}"
        time.sleep(0.05)
    raise AssertionError(f"the default never became {default}")


def test_control_changes_flow_again_once_redis_returns(
    serve_modelserve: Callable[..., RunningServer], tmp_path: Path
) -> None:
    """Redis killed: predictions go on and an admin change answers 503 control_unavailable;
    once Redis is back (empty) that process returns to the shared state and the next change
    reaches both replicas."""
    port = free_port()
    url, redis_proc = start_redis(tmp_path, port=port)
    try:
        a = start_replica(serve_modelserve, tmp_path / "a", url)
        b = start_replica(serve_modelserve, tmp_path / "b", url)
        wait_for_log_events(a, 1, event="control_state_applied", version=0)
        redis_proc.kill()
        redis_proc.wait(timeout=10)
        refused = httpx.patch(
            a.base_url + "/admin/models/iris/routing",
            json={"default": "2"},
            headers=KEY_HEADER,
            timeout=30,
        )
        assert (refused.status_code, refused.json()["code"]) == (503, "control_unavailable")
        predicted = httpx.post(
            b.base_url + "/predict", json={"features": iv.SETOSA_ROW}, headers=KEY_HEADER
        )
        assert predicted.json()["prediction"] == "setosa"

        wait_for_log_events(a, 1, event="control_change_not_shared")
        url, redis_proc = start_redis(tmp_path, port=port)
        wait_for_default(a, "1")  # the change that was not shared is undone
        routed = patch_default(b, "2")
        assert routed["control"]["applied"] == routed["control"]["processes"] == 2, routed
        wait_for_default(a, "2")
    finally:
        redis_proc.kill()
        redis_proc.wait(timeout=10)
