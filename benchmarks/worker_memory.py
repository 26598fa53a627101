"""Memory per worker: ``python -m benchmarks.worker_memory [--config FILE] [--workers N]``.

Starts ``modelserve serve --workers N`` on 127.0.0.1 with the given configuration (default:
the demo models, built into benchmarks/.work/demo), waits until every worker is ready (the
probe port), sends each model a few predictions, then prints the resident (RSS) and
proportional (PSS: shared pages split between the processes sharing them) memory of the
gunicorn master and of each worker, from /proc. Run it once with a config of one model and
once with several to read the cost of a model per worker.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from benchmarks.processes import free_ports, http_request, start_server
from benchmarks.servers import VENV_BIN

WORK = Path(__file__).resolve().parent / ".work"


def _memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in KiB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        fields[name.rstrip(":")] = int(value)
    return fields["Rss"], fields["Pss"]


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rpartition(")")[2].split()[1])
        except OSError:
            continue
        if parent == pid:
            children.append(int(stat.parent.name))
    return sorted(children)


def _models(config: Path) -> list[tuple[str, int]]:
    """(name, feature count) of each model the config serves, for a sample request."""
    data = yaml.safe_load(config.read_text())
    found = []
    for model in data["models"]:
        width = len(model.get("feature_names") or []) or int(model.get("n_features") or 4)
        found.append((str(model["name"]), width))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None, help="default: the demo models")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    config: Path = args.config
    if config is None:
        from modelserve.demo import build_demo

        build_demo(WORK / "demo")
        config = WORK / "demo" / "modelserve.yaml"
    port, probe_port = free_ports(2)
    server = start_server(
        "worker-memory",
        [
            str(VENV_BIN / "modelserve"),
            "serve",
            "--config",
            str(config),
            "--workers",
            str(args.workers),
            "--port",
            str(port),
            "--probe-port",
            str(probe_port),
        ],
        port,
        WORK / "logs",
    )
    try:
        server.port = probe_port
        server.wait_ready("/ready", timeout_s=300)
        for name, width in _models(config):
            body = json.dumps({"model": name, "features": [1.0] * width}).encode()
            for _ in range(4 * args.workers):
                http_request(port, "POST", "/predict", body=body)
        master = server.proc.pid
        rss, pss = _memory_kib(master)
        print(f"config {config}: {len(_models(config))} models, {args.workers} workers")
        print(f"master  pid {master:>7}  RSS {rss / 1024:7.1f} MiB  PSS {pss / 1024:7.1f} MiB")
        for pid in _children(master):
            rss, pss = _memory_kib(pid)
            print(f"worker  pid {pid:>7}  RSS {rss / 1024:7.1f} MiB  PSS {pss / 1024:7.1f} MiB")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
