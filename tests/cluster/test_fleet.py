"""Two replicas of two workers behind nginx act as one service: a shared cache, one rate
limit per key, counters that add up, a rolling restart that loses nothing, and serving that
survives Redis going away."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.cluster.conftest import (
    BATCH_LIMIT,
    LIMITED_KEY,
    OPS_KEY,
    OTHER_KEY,
    SETOSA,
    Fleet,
    Load,
    Replica,
    _auth,
)

# Starting the fleet (two replicas of two workers) takes a while on a loaded machine.
pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(300)]


def _unique_features() -> list[float]:
    """Features no other request of the run sends, so the first look-up is a cache miss."""
    return [round(random.uniform(4.5, 7.5), 6), 3.0, round(random.uniform(1.5, 6.5), 6), 1.0]


def test_fleet_cache_hit_across_replicas(fleet: Fleet) -> None:
    """A row computed by replica a is a cache hit on replica b, with the same answer."""
    first, second = fleet.replicas
    features = _unique_features()
    computed = fleet.predict(first.base_url, features=features)
    shared = fleet.predict(second.base_url, features=features)
    assert (computed.status_code, shared.status_code) == (200, 200)
    assert (computed.headers["x-cache"], shared.headers["x-cache"]) == ("MISS", "HIT")
    assert shared.json()["probabilities"] == computed.json()["probabilities"]


def test_fleet_rate_limit_per_key_holds_exactly_across_replicas_and_workers(
    fleet: Fleet,
) -> None:
    """A key's batch budget is spent once for the whole fleet: of 2x the limit sent at once
    through nginx and to each replica directly, exactly the limit is served, across workers of
    both replicas; another key keeps its own budget."""
    urls = [fleet.nginx.base_url, *(r.base_url for r in fleet.replicas)]
    before = {r.name: r.worker_requests("/predict-batch", "200") for r in fleet.replicas}

    def send(index: int) -> int:
        response = httpx.post(
            urls[index % len(urls)] + "/predict-batch",
            json={"batch": [SETOSA]},
            headers=_auth(LIMITED_KEY),
            timeout=20,
        )
        return response.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(send, range(2 * BATCH_LIMIT)))
    other = httpx.post(
        fleet.nginx.base_url + "/predict-batch",
        json={"batch": [SETOSA]},
        headers=_auth(OTHER_KEY),
        timeout=20,
    )
    # A worker records a request just after its response is sent: wait for the last ones.
    served_by = _settled(lambda: _served_since(fleet, before), BATCH_LIMIT + 1)
    print(
        f"\nper-key limit {BATCH_LIMIT}: {statuses.count(200)} served, "
        f"{statuses.count(429)} refused; served by {served_by}"
    )
    assert statuses.count(200) == BATCH_LIMIT
    assert statuses.count(429) == BATCH_LIMIT
    assert other.status_code == 200
    assert sum(served_by.values()) == BATCH_LIMIT + 1
    assert {name.split("/")[0] for name in served_by} == {"a", "b"}
    assert len(served_by) >= 3, f"the key's requests reached too few workers: {served_by}"


def _served_since(fleet: Fleet, before: dict[str, dict[str, float]]) -> dict[str, float]:
    """Batches served (200) by each worker since ``before``, named replica/worker file."""
    served_by: dict[str, float] = {}
    for replica in fleet.replicas:
        for worker, count in replica.worker_requests("/predict-batch", "200").items():
            served = count - before[replica.name].get(worker, 0.0)
            if served:
                served_by[f"{replica.name}/{worker}"] = served
    return served_by


def _settled(read: Callable[[], dict[str, float]], total: float) -> dict[str, float]:
    """``read()`` once its values add up to ``total``, or its last value after 10 s."""
    deadline = time.monotonic() + 10
    counts = read()
    while sum(counts.values()) != total and time.monotonic() < deadline:
        time.sleep(0.05)
        counts = read()
    return counts


def test_fleet_request_counters_add_up_to_the_traffic_sent(fleet: Fleet) -> None:
    """The replicas' modelserve_http_requests_total for /predict, summed, grows by exactly the
    number of requests sent through nginx, and every replica took some."""
    before = {r.name: r.requests_counted("/predict") for r in fleet.replicas}
    with Load(fleet.nginx.base_url, threads=4, max_requests=400, max_s=120) as load:
        load.finish()
    deltas = _settled(
        lambda: {r.name: r.requests_counted("/predict") - before[r.name] for r in fleet.replicas},
        load.result.sent,
    )
    print(
        f"\nsent {load.result.sent} through nginx ({dict(load.result.statuses)}); "
        f"counted per replica {deltas}"
    )
    assert load.result.statuses[200] == load.result.sent
    assert sum(deltas.values()) == load.result.sent
    assert all(deltas.values())


def test_fleet_rolling_restart_under_load_fails_no_request(fleet: Fleet) -> None:
    """SIGTERM replica a under continuous load through nginx, wait for its drain, start it
    again and wait until nginx sends it traffic; then the same for b: no client request fails.

    nginx finds the stopping replica by itself (refused and reset connections, retried on the
    other one). A starting replica listens before its workers have loaded their models, and
    open-source nginx has no active health check, so it is let back in once its /ready says
    so, as Kubernetes' readiness probe does."""
    with Load(fleet.nginx.base_url, threads=4, max_requests=30_000, max_s=280) as load:
        load.wait_for(100)
        for replica in fleet.replicas:
            assert replica.terminate() == 0, replica.tail()
            load.wait_for(100)  # served by the other replica alone
            fleet.nginx.set_down(replica.port, down=True)
            replica.start()
            fleet.nginx.set_down(replica.port, down=False)
            _wait_until_serving(replica)
            load.wait_for(100)
    result = load.result
    passed_on = len(re.findall(r"\[error\].*\((?:104|111): ", fleet.nginx.errors()))
    print(
        f"\nrolling restart: {result.sent} requests sent, {result.failed} failed "
        f"({dict(result.statuses)}, errors {dict(result.errors)}); nginx logged "
        f"{passed_on} refused or reset upstream connections, each passed to the other replica"
    )
    assert result.sent >= 500
    assert result.failed == 0, fleet.nginx.errors()[-3000:]


def _wait_until_serving(replica: Replica, timeout_s: float = 60) -> None:
    """Wait until nginx passes traffic to the restarted replica again (its passive health
    check puts it back after fail_timeout)."""
    deadline = time.monotonic() + timeout_s
    while replica.requests_counted("/predict") == 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"nginx sent {replica.name} nothing for {timeout_s} s")
        time.sleep(0.2)


def test_fleet_redis_killed_every_replica_keeps_predicting(fleet: Fleet) -> None:
    """With Redis killed mid-run, traffic through nginx and requests to each replica directly
    are all served (the cache is skipped, rate limits fail open); once Redis is back on its
    port, the replicas share cache entries again and control changes reach every process."""
    port = fleet.redis.port
    try:
        with Load(fleet.nginx.base_url, threads=4, max_requests=5_000, max_s=120) as load:
            load.wait_for(50)
            fleet.redis.kill()
            load.wait_for(200)
            direct = [fleet.predict(r.base_url) for r in fleet.replicas]
            load.wait_for(50)
    finally:
        if fleet.redis.proc is None or fleet.redis.proc.poll() is not None:
            fleet.redis.start(port=port)
    print(
        f"\nredis killed: {load.result.sent} sent, {load.result.failed} failed, "
        f"direct {[r.status_code for r in direct]}"
    )
    assert load.result.failed == 0
    assert [r.status_code for r in direct] == [200, 200]
    assert [r.headers["x-cache"] for r in direct] == ["MISS", "MISS"]
    first, second = fleet.replicas
    deadline = time.monotonic() + 30
    while True:
        features = _unique_features()
        assert fleet.predict(first.base_url, features=features).status_code == 200
        if fleet.predict(second.base_url, features=features).headers["x-cache"] == "HIT":
            break
        assert time.monotonic() < deadline, "the replicas did not share the cache again"
        time.sleep(0.2)
    _control_changes_flow(fleet)


def _control_changes_flow(fleet: Fleet) -> None:
    """A routing change through nginx is applied by all four processes again (the Redis that
    came back is empty: the change rebuilds the shared state), then undone."""
    ops = {"Authorization": f"Bearer {OPS_KEY}", "Content-Type": "application/json"}
    deadline = time.monotonic() + 30
    for default in ("2", "1"):
        while True:
            response = httpx.patch(
                fleet.nginx.base_url + "/admin/models/iris/routing",
                json={"default": default},
                headers=ops,
                timeout=30,
            )
            control = response.json().get("control", {})
            if response.status_code == 200 and control.get("applied") == 4:
                break
            assert time.monotonic() < deadline, response.text
            time.sleep(0.5)
