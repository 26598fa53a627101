"""How fast an admin change reaches every process: ``python -m benchmarks.control_convergence``.

Two topologies on 127.0.0.1: one ``modelserve serve --workers 2`` without Redis (the state
file in its run directory), and two servers (``--workers 2`` and ``--workers 1``) sharing a
``redis-server`` started here. Each of ``--changes`` routing changes (the default version
flips between 1 and 2) is sent to a server in turn; for each it prints the admin call's
latency (it answers once every process reported the version, or after ``control.wait_s``)
and the convergence time: from just before the call was sent until the last process logged
``control_state_applied`` for that version (the log's own UTC timestamps).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

from benchmarks.models import build_models
from benchmarks.processes import ServerProcess, free_ports, start_server
from benchmarks.servers import VENV_BIN

ADMIN_KEY = "bench-control-admin-5e7a9c1b3d"
START_TIMEOUT_S = 180.0


def write_config(directory: Path, model: Path, redis_url: str | None) -> Path:
    ops = {"name": "ops", "key": ADMIN_KEY, "scopes": ["predict", "admin"]}
    config: dict[str, object] = {
        "server": {"access_log": False},
        "models": [
            {"name": "iris", "version": "1", "path": str(model), "default": True},
            {"name": "iris", "version": "2", "path": str(model)},
        ],
        "cache": {"backend": "none"},
        "auth": {"enabled": True, "keys": [ops]},
    }
    if redis_url is not None:
        config["redis_url"] = redis_url
    path = directory / "modelserve.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def admin(port: int, default: str) -> tuple[float, dict[str, object]]:
    """PATCH the routing's default; (latency ms, the answer's control section)."""
    import http.client

    body = json.dumps({"default": default}).encode()
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            "PATCH",
            "/admin/models/iris/routing",
            body=body,
            headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        answer = json.loads(response.read())
    finally:
        conn.close()
    latency_ms = (time.perf_counter() - started) * 1000
    if response.status != 200:
        raise RuntimeError(f"admin call answered {response.status}: {answer}")
    control: dict[str, object] = answer["control"]
    return latency_ms, control


def applied_at(servers: list[ServerProcess]) -> dict[int, list[float]]:
    """Per state version, the UTC time each process logged control_state_applied."""
    found: dict[int, list[float]] = {}
    for server in servers:
        for line in server.log_path.read_text(errors="replace").splitlines():
            if '"control_state_applied"' not in line:
                continue
            record = json.loads(line)
            stamp = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
            found.setdefault(int(record["version"]), []).append(stamp.timestamp())
    return found


def measure(name: str, servers: list[ServerProcess], processes: int, changes: int) -> None:
    latencies, convergence, sent = [], [], {}
    for index in range(changes):
        target = servers[index % len(servers)]
        started = time.time()
        latency_ms, control = admin(target.port, "2" if index % 2 == 0 else "1")
        version = int(str(control["version"]))
        sent[version] = started
        latencies.append(latency_ms)
        if control["applied"] != processes:
            print(f"  change {index}: applied by {control['applied']} of {processes}: {control}")
        time.sleep(0.2)  # changes one at a time, as an operator makes them
    time.sleep(1.0)
    stamps = applied_at(servers)
    for version, started in sent.items():
        times = stamps.get(version, [])
        if len(times) < processes:
            print(f"  version {version}: only {len(times)} of {processes} processes applied it")
            continue
        convergence.append((max(times) - started) * 1000)
    print(f"{name}: {processes} processes, {changes} routing changes")
    for label, values in (("admin call", latencies), ("convergence", convergence)):
        ordered = sorted(values)
        print(
            f"  {label:12s} median {statistics.median(ordered):7.1f} ms  "
            f"max {ordered[-1]:7.1f} ms  (n={len(ordered)})"
        )


def serve(name: str, config: Path, port: int, workers: int, logs: Path) -> ServerProcess:
    argv = [str(VENV_BIN / "modelserve"), "serve", "--config", str(config), "--port", str(port)]
    server = start_server(name, [*argv, "--workers", str(workers)], port, logs)
    server.wait_ready("/ready", START_TIMEOUT_S)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelserve-control-bench-"))
    started: list[ServerProcess] = []
    redis: subprocess.Popen[bytes] | None = None
    try:
        model = build_models(work)["logreg"].path
        local_port, a_port, b_port, redis_port = free_ports(4)
        (work / "local").mkdir()
        local = serve("local", write_config(work / "local", model, None), local_port, 2, work)
        started.append(local)
        measure("workers 2, no Redis (state file)", [local], 2, args.changes)
        local.stop()

        binary = shutil.which("redis-server")
        if binary is None:
            sys.exit("redis-server is not installed: the Redis topology needs it")
        redis = subprocess.Popen(
            [binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""],
            stdout=subprocess.DEVNULL,
            cwd=work,
        )
        url = f"redis://127.0.0.1:{redis_port}/0"
        replicas = []
        for name, port, workers in (("a", a_port, 2), ("b", b_port, 1)):
            (work / name).mkdir()
            replica = serve(name, write_config(work / name, model, url), port, workers, work)
            started.append(replica)
            replicas.append(replica)
        measure("2 replicas (workers 2 + 1) on one Redis", replicas, 3, args.changes)
    finally:
        for server in started:
            server.stop()
        if redis is not None:
            redis.terminate()
            redis.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
