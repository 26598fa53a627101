"""Control changes reach every worker of both replicas: an admin routing change through nginx,
an artifact reload through one replica, an edit of the shared config file, and a broken edit
that every process rejects while serving on; all of it again after Redis comes back."""

from __future__ import annotations

import copy
import time
from datetime import datetime
from typing import Any

import httpx
import pytest
import redis

from tests import iris_versions as iv
from tests.cluster.conftest import OPS_KEY, Fleet, Replica, write_config

# Starting the fleet (two replicas of two workers) takes a while on a loaded machine.
pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(300)]

ADMIN = {"Authorization": f"Bearer {OPS_KEY}", "Content-Type": "application/json"}
PROCESSES = 4
"""Two replicas of two workers."""


def _wait_for_fleet(fleet: Fleet, timeout_s: float = 30) -> None:
    """Wait until exactly the fleet's four processes report to the control state (a process
    stopped by an earlier test drops out after three missed heartbeats)."""
    client = redis.Redis.from_url(fleet.redis.url)
    deadline = time.monotonic() + timeout_s
    try:
        while len(client.keys("modelserve:control:process:*")) != PROCESSES:
            assert time.monotonic() < deadline, client.keys("modelserve:control:process:*")
            time.sleep(0.1)
    finally:
        client.close()


def _patch_default(url: str, version: str) -> dict[str, Any]:
    response = httpx.patch(
        url + "/admin/models/iris/routing", json={"default": version}, headers=ADMIN, timeout=30
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _default_shown(replica: Replica) -> tuple[str, int, str]:
    """(default version, control version, answering process) of one GET /models, on a fresh
    connection so gunicorn may hand it to either worker."""
    response = httpx.get(replica.base_url + "/models", headers=ADMIN, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    (default,) = [m["version"] for m in body["models"] if m["is_default"]]
    return str(default), int(body["control"]["version"]), str(body["control"]["process"])


def _wait_until_both_workers_show(
    replica: Replica, default: str, version: int = 0, polls: int = 400
) -> set[str]:
    """Poll GET /models until both workers of ``replica`` answered with ``default`` at
    ``version`` or later; an answer at that version with another default fails."""
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    for _ in range(polls):
        shown, applied, process = _default_shown(replica)
        if applied >= version and shown == default:
            seen.add(process)
        if len(seen) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert len(seen) == 2, f"{replica.name}: only {seen} showed default {default}"
    return seen


def _applied_everywhere(fleet: Fleet, version: int) -> float:
    """Wait until every worker of both replicas logged applying ``version``; returns the
    spread in seconds between the first and the last of them (from their log timestamps)."""
    stamps = []
    for replica in fleet.replicas:
        events = replica.wait_for_events(2, event="control_state_applied", version=version)
        assert len({e["process"] for e in events}) == 2, events
        stamps += [_seconds(e["timestamp"]) for e in events]
    return max(stamps) - min(stamps)


def _seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def test_fleet_routing_change_through_nginx_reaches_every_worker(fleet: Fleet) -> None:
    """A routing change sent through nginx is applied by all four processes before the answer
    (which says so), and every worker of both replicas then shows it."""
    _wait_for_fleet(fleet)
    started = time.monotonic()
    body = _patch_default(fleet.nginx.base_url, "2")
    answered_s = time.monotonic() - started
    try:
        control = body["control"]
        assert (control["processes"], control["applied"]) == (PROCESSES, PROCESSES), control
        spread_s = _applied_everywhere(fleet, control["version"])
        for replica in fleet.replicas:
            _wait_until_both_workers_show(replica, "2", control["version"])
        answer = httpx.post(
            fleet.nginx.base_url + "/predict", json={"features": iv.SETOSA_ROW}, headers=ADMIN
        )
        assert answer.json()["prediction"] == "versicolor"
        print(
            f"\nrouting change through nginx: applied by {control['applied']} of "
            f"{control['processes']} processes when answered ({answered_s * 1000:.0f} ms); "
            f"first to last process applying it: {spread_s * 1000:.0f} ms"
        )
    finally:
        _patch_default(fleet.nginx.base_url, "1")


def test_fleet_reload_through_one_replica_reloads_the_artifact_everywhere(fleet: Fleet) -> None:
    """Version 1's file replaced and reloaded through replica a: all four processes reload it,
    and replica b answers with the new artifact."""
    _wait_for_fleet(fleet)
    first, second = fleet.replicas
    path = iv.dump(iv.shifted(), fleet.config_path.with_name("v1.next.joblib"))
    original = fleet.config_path.with_name("v1.joblib").read_bytes()
    path.replace(fleet.config_path.with_name("v1.joblib"))
    try:
        response = httpx.post(
            first.base_url + "/admin/models/iris/versions/1/reload", headers=ADMIN, timeout=60
        )
        assert response.status_code == 200, response.text
        control = response.json()["control"]
        assert (control["processes"], control["applied"]) == (PROCESSES, PROCESSES), control
        spread_s = _applied_everywhere(fleet, control["version"])
        for replica in (second, first):
            for _ in range(6):
                answer = httpx.post(
                    replica.base_url + "/predict?model_version=1",
                    json={"features": iv.SETOSA_ROW},
                    headers=ADMIN,
                    timeout=10,
                )
                assert answer.json()["prediction"] == "versicolor", replica.name
        print(
            f"\nreload through replica a: applied by {control['applied']} processes; "
            f"first to last: {spread_s * 1000:.0f} ms"
        )
    finally:
        fleet.config_path.with_name("v1.joblib").write_bytes(original)
        restored = httpx.post(
            first.base_url + "/admin/models/iris/versions/1/reload", headers=ADMIN, timeout=60
        )
        assert restored.status_code == 200, restored.text


def test_fleet_config_edit_converges_and_a_broken_edit_is_rejected(fleet: Fleet) -> None:
    """The shared config file edited (version 2 the default): every worker of both replicas
    reloads it and shows it. A broken edit is rejected by every worker, and both replicas keep
    serving the last good file."""
    _wait_for_fleet(fleet)
    edited = copy.deepcopy(fleet.config)
    edited["models"][0]["default"] = False
    edited["models"][1]["default"] = True
    before = {r.name: len(r.events(event="config_reloaded")) for r in fleet.replicas}
    rejected_before = {
        r.name: len(r.events(event="config_reload_rejected")) for r in fleet.replicas
    }
    write_config(fleet.config_path, edited)
    try:
        started = time.monotonic()
        for replica in fleet.replicas:
            replica.wait_for_events(before[replica.name] + 2, event="config_reloaded")
        converged_s = time.monotonic() - started
        for replica in fleet.replicas:
            _wait_until_both_workers_show(replica, "2")

        write_config(fleet.config_path, "models:\n  - name: iris\n    version: [not, a, version\n")
        for replica in fleet.replicas:
            rejected = replica.wait_for_events(
                rejected_before[replica.name] + 2, event="config_reload_rejected"
            )
            assert rejected[-1]["reason"]
        for replica in fleet.replicas:
            _wait_until_both_workers_show(replica, "2")
            answer = httpx.post(
                replica.base_url + "/predict",
                json={"features": iv.SETOSA_ROW},
                headers=ADMIN,
                timeout=10,
            )
            assert answer.status_code == 200
            assert answer.json()["prediction"] == "versicolor"
        print(f"\nconfig edit: every worker of both replicas reloaded within {converged_s:.1f} s")
    finally:
        reloaded = {r.name: len(r.events(event="config_reloaded")) for r in fleet.replicas}
        write_config(fleet.config_path, fleet.config)
        for replica in fleet.replicas:
            replica.wait_for_events(reloaded[replica.name] + 2, event="config_reloaded")
    for replica in fleet.replicas:
        _wait_until_both_workers_show(replica, "1")
