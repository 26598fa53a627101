"""How long the largest accepted ``/predict-batch`` body holds the event loop, and its RSS.

For each kind of body, positional (``{"batch": [[v, ...], ...]}``) and named
(``{"batch": [{"name": v, ...}, ...]}``), a fresh ``modelserve serve`` is started on the
config and sent the largest body it accepts: ``server.max_batch_rows`` rows of the model's
width, every value of the longest form (``-1.2345678901234567e-300``) and different (no cache
hits), padded with trailing whitespace to exactly the body limit. Each body must be answered
200. While it is uploaded, parsed, predicted and answered, a second connection polls
``/health`` back to back: the slowest ``/health`` is the stall (it includes one ``/health``
round trip, shown idle too).
RSS is the server's before the first body and its peak (``VmHWM``) after the last::

    modelserve demo --out /tmp/demo
    python -m benchmarks.loop_stall --config /tmp/demo/modelserve.yaml --model iris
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from benchmarks.processes import free_port
from modelserve.settings import ModelConfig, Settings, load_settings


@dataclass(frozen=True)
class KindResult:
    kind: str
    body_bytes: int
    idle_ms: float
    stall_ms: list[float]
    rss_before_mb: float
    rss_peak_mb: float


def _status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def _model(settings: Settings, name: str | None) -> ModelConfig:
    for model in settings.models:
        if (name is None and model.feature_names) or model.name == name:
            return model
    raise SystemExit(f"no model {name!r} with feature_names in the config")


def largest_body(settings: Settings, model: ModelConfig, kind: str, seed: int = 0) -> bytes:
    """The largest body of ``kind`` the server accepts for ``model`` (see the docstring).

    Every value differs (17 significant digits, so each is written as long as any), within a
    body and between seeds, so no row is a cache hit: each body costs what a new one does.
    """
    names = model.feature_names or []
    rows = settings.server.max_batch_rows
    rng = random.Random(seed)
    values = iter(
        float(f"-1.{rng.randrange(10**15, 10**16)}e-300") for _ in range(rows * len(names))
    )
    batch: list[object] = []
    for _ in range(rows):
        row = [next(values) for _ in names]
        batch.append(dict(zip(names, row, strict=True)) if kind == "named" else row)
    body = orjson.dumps({"batch": batch})
    limit = settings.body_limit_bytes()
    if len(body) > limit:
        raise SystemExit(f"{kind}: {len(body)} bytes of rows exceed the {limit}-byte limit")
    return body + b" " * (limit - len(body))


def _poll_worst(url: str, polling: threading.Event, done: threading.Event) -> float:
    """Poll ``/health`` back to back (``polling`` once connected) until ``done``, and once
    more after it; the slowest answer, in seconds."""
    worst = 0.0
    with httpx.Client(base_url=url, timeout=60) as probe:
        probe.get("/health")
        polling.set()
        finished = False
        while not finished:
            finished = done.is_set()
            started = time.perf_counter()
            probe.get("/health")
            worst = max(worst, time.perf_counter() - started)
    return worst


def _poller(url: str, polling: threading.Event, done: threading.Event, out: list[float]) -> None:
    out.append(_poll_worst(url, polling, done))


def measure(
    config: Path, settings: Settings, model: ModelConfig, kind: str, repeat: int
) -> KindResult:
    """Start a server, send ``repeat`` largest bodies of ``kind`` while polling; the figures."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "modelserve", "serve", "--config", str(config)]
    proc = subprocess.Popen(
        [*command, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_ready(url)
        with httpx.Client(base_url=url, timeout=60) as client:
            idle = []
            for _ in range(200):
                started = time.perf_counter()
                client.get("/health")
                idle.append(time.perf_counter() - started)
            rss_before = _status_mb(proc.pid, "VmRSS")
            stalls = []
            bodies = [largest_body(settings, model, kind, seed) for seed in range(repeat)]
            for body in bodies:
                polling, done = threading.Event(), threading.Event()
                worst: list[float] = []
                poller = threading.Thread(target=_poller, args=(url, polling, done, worst))
                poller.start()
                polling.wait(60)  # the poller is connected before the body goes out
                response = client.post(
                    f"/predict-batch?model={model.name}",
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
                done.set()
                poller.join()
                if response.status_code != 200:
                    raise SystemExit(f"{kind}: {response.status_code} {response.text[:200]}")
                stalls.append(worst[0] * 1000)
        return KindResult(
            kind,
            len(bodies[0]),
            statistics.median(idle) * 1000,
            stalls,
            rss_before,
            _status_mb(proc.pid, "VmHWM"),
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("server not ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--model", help="model to send to (default: the first with names)")
    parser.add_argument("--repeat", type=int, default=10, help="bodies sent per kind")
    args = parser.parse_args()
    settings = load_settings(args.config)
    model = _model(settings, args.model)
    for kind in ("positional", "named"):
        result = measure(args.config, settings, model, kind, args.repeat)
        print(
            f"{result.kind}: {result.body_bytes} bytes ({settings.server.max_batch_rows} rows) "
            f"-> 200; slowest /health during it: median {statistics.median(result.stall_ms):.1f}"
            f" ms, max {max(result.stall_ms):.1f} ms over {len(result.stall_ms)} bodies "
            f"(idle /health {result.idle_ms:.1f} ms); RSS {result.rss_before_mb:.0f} MB before, "
            f"peak {result.rss_peak_mb:.0f} MB"
        )


if __name__ == "__main__":
    main()
