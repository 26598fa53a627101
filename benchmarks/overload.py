"""Overload at 10x the measured capacity: ``python -m benchmarks.overload`` (``make overload``).

1. Capacity: wrk, ``--capacity-connections`` keep-alive connections of ``--rows``-row
   ``/predict-batch`` requests to the forest model for ``--capacity-duration`` s; capacity is
   the rate of 200s.
2. Burst: an open-loop generator (uvloop, a new connection per request, sent on schedule
   whatever the answers, the way independent clients arrive) at ``--factor`` x capacity for
   ``--duration`` s. Every outcome is classified: status and error code, a 429/503 without
   ``Retry-After``, a connection reset, no answer within ``--client-timeout`` s (a hang). The
   server's RSS is sampled every 0.25 s.
3. Recovery: single requests every 50 ms after the burst, until one answers 200 within 1.5x
   the idle median; the time that took.

Printed: capacity, the outcome mix, p50/p99 of the 200s against ``timeout_ms``, how fast the
refusals came, RSS before / peak / after against a bound derived from the settings, and the
recovery time. Exit status 1 when a requirement is not met (see ``verdicts``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import uvloop
import yaml

from benchmarks.loadgen import ensure_wrk, run_wrk
from benchmarks.models import build_models, request_rows, write_rows_csv
from benchmarks.processes import free_port, http_request, start_server
from benchmarks.servers import VENV_BIN
from modelserve.settings import BatchingConfig, ServerSettings

WORK = Path(__file__).resolve().parent / ".work"
HOST = "127.0.0.1"
PATH = "/predict-batch"
ACCEPTED = ("200", "429", "503")
RECOVERY_LIMIT_S = 2.0
PARSED_JSON_FACTOR = 8
"""Most bytes of Python objects per byte of JSON body while it is parsed (floats as objects)."""
CONNECTION_BYTES = 64 * 1024
"""Most buffered bytes per connection (uvicorn pauses reading past 64 KiB)."""


@dataclass
class Burst:
    """What the open-loop burst saw."""

    outcomes: Counter[str] = field(default_factory=Counter)
    ok_ms: list[float] = field(default_factory=list)
    refused_ms: list[float] = field(default_factory=list)
    missing_retry_after: int = 0
    sent: int = 0


def write_config(path: Path, model: Path, timeout_ms: float) -> Path:
    config = {
        "models": [{"name": "forest", "path": str(model), "batching": {"timeout_ms": timeout_ms}}],
        "cache": {"backend": "none"},
        "server": {"access_log": False},
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def rss_bound_mb(idle_rss_mb: float, width: int) -> tuple[float, str]:
    """The most RSS overload can add to the idle process, from the default settings."""
    server = ServerSettings()
    max_queue_rows = BatchingConfig().max_queue_rows
    parsing = server.max_inflight_bytes * (1 + PARSED_JSON_FACTOR)
    connections = server.max_connections * CONNECTION_BYTES
    queue = max_queue_rows * width * 8
    bound = idle_rss_mb + (parsing + connections + queue) / 2**20
    how = (
        f"idle {idle_rss_mb:.0f} MB + max_inflight_bytes x (1 + {PARSED_JSON_FACTOR}) "
        f"{parsing / 2**20:.0f} MB + max_connections x 64 KiB {connections / 2**20:.0f} MB "
        f"+ max_queue_rows x {width} x 8 B {queue / 2**20:.1f} MB"
    )
    return bound, how


async def one_request(head: bytes, port: int, burst: Burst, timeout_s: float) -> None:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(HOST, port)
            try:
                writer.write(head)
                data = await reader.read()
            finally:
                writer.close()
    except TimeoutError:
        burst.outcomes["hang"] += 1
        return
    except ConnectionResetError:
        burst.outcomes["reset"] += 1
        return
    except OSError as exc:
        burst.outcomes[f"error:{type(exc).__name__}"] += 1
        return
    took_ms = (time.perf_counter() - started) * 1000
    classify(data, took_ms, burst)


def classify(data: bytes, took_ms: float, burst: Burst) -> None:
    if not data:
        burst.outcomes["reset"] += 1  # closed without an answer
        return
    status_line, _, rest = data.partition(b"\r\n")
    parts = status_line.split(b" ")
    status = parts[1].decode() if len(parts) > 1 else "garbage"
    headers, _, payload = rest.partition(b"\r\n\r\n")
    if status == "200":
        burst.outcomes["200"] += 1
        burst.ok_ms.append(took_ms)
        return
    try:
        code = orjson.loads(payload).get("code")
    except (orjson.JSONDecodeError, AttributeError):
        code = "not-json"
    burst.outcomes[f"{status} {code}"] += 1
    burst.refused_ms.append(took_ms)
    if status in ("429", "503") and b"\r\nretry-after:" not in b"\r\n" + headers.lower():
        burst.missing_retry_after += 1


async def open_loop(
    head: bytes, port: int, rate: float, duration_s: float, timeout_s: float
) -> Burst:
    """Send ``rate`` requests/s for ``duration_s``, on schedule, whatever the answers."""
    burst = Burst()
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    start = loop.time()
    for i in range(int(rate * duration_s)):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = loop.create_task(one_request(head, port, burst, timeout_s))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        burst.sent += 1
    if tasks:
        await asyncio.wait(tasks, timeout=timeout_s + 5)
    return burst


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def burst_with_rss(
    pid: int, head: bytes, port: int, rate: float, duration_s: float, timeout_s: float
) -> tuple[Burst, list[float]]:
    samples: list[float] = []
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            samples.append(rss_mb(pid))
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample())
    burst = await open_loop(head, port, rate, duration_s, timeout_s)
    done.set()
    await sampler
    return burst, samples


def latency_ms(port: int, body: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    status, _ = http_request(port, "POST", PATH, body, timeout_s=10)
    return status, (time.perf_counter() - started) * 1000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spread(values: list[float]) -> str:
    if not values:
        return "none"
    return (
        f"p50 {statistics.median(values):.1f} ms, p99 {percentile(values, 0.99):.1f} ms, "
        f"max {max(values):.1f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--capacity-connections", type=int, default=8)
    parser.add_argument("--capacity-duration", type=float, default=10.0)
    parser.add_argument("--factor", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--timeout-ms", type=float, default=2000.0, help="batching.timeout_ms")
    parser.add_argument("--client-timeout", type=float, default=15.0)
    args = parser.parse_args(argv)

    wrk = ensure_wrk()
    files = build_models(WORK)
    rows = request_rows()
    rows_csv = write_rows_csv(rows, WORK / "rows.csv")
    port = free_port()
    config = write_config(WORK / "overload.yaml", files["forest"].path, args.timeout_ms)
    command = [str(VENV_BIN / "modelserve"), "serve", "--config", str(config)]
    server = start_server(
        "overload", [*command, "--host", HOST, "--port", str(port)], port, WORK / "logs"
    )
    body = orjson.dumps({"batch": rows[: args.rows].tolist()})
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    try:
        server.wait_ready("/ready", 120)
        idle_median = statistics.median(latency_ms(port, body)[1] for _ in range(20))
        capacity = run_wrk(
            wrk,
            f"http://{HOST}:{port}/",
            "batch.lua",
            [str(rows_csv), PATH, str(args.rows)],
            args.capacity_connections,
            args.capacity_duration,
            args.rows,
        ).rps
        rate = capacity * args.factor
        print(f"idle latency median {idle_median:.1f} ms ({args.rows}-row {PATH}, forest)")
        print(
            f"capacity {capacity:.1f} req/s ({capacity * args.rows:.0f} rows/s) at "
            f"{args.capacity_connections} connections; burst {rate:.1f} req/s for "
            f"{args.duration:g} s, a new connection each"
        )
        rss_before = rss_mb(server.proc.pid)
        burst, rss = uvloop.run(
            burst_with_rss(server.proc.pid, head, port, rate, args.duration, args.client_timeout)
        )
        burst_end = time.perf_counter()
        recovered_after = None
        while time.perf_counter() - burst_end < 30:
            status, took = latency_ms(port, body)
            if status == 200 and took <= 1.5 * idle_median:
                recovered_after = time.perf_counter() - burst_end
                break
            time.sleep(0.05)
        rss_after = rss_mb(server.proc.pid)
    finally:
        server.stop()

    answered = sum(burst.outcomes.values())
    unexpected = sum(n for k, n in burst.outcomes.items() if k.split(" ")[0] not in ACCEPTED)
    print(f"sent {burst.sent}, outcomes {answered}: {dict(sorted(burst.outcomes.items()))}")
    print(f"anything but 200/429/503 (hangs, resets, 504s, errors): {unexpected}")
    print(f"429/503 without Retry-After: {burst.missing_retry_after}")
    print(f"200s: {len(burst.ok_ms)}, {spread(burst.ok_ms)} (deadline {args.timeout_ms:g} ms)")
    print(f"refusals: {len(burst.refused_ms)}, {spread(burst.refused_ms)}")
    bound, how = rss_bound_mb(rss_before, width=rows.shape[1])
    peak = max(rss, default=rss_before)
    print(f"RSS MB: before {rss_before:.1f}, peak {peak:.1f}, after {rss_after:.1f}")
    print(f"RSS bound {bound:.0f} MB = {how}")
    if recovered_after is None:
        print("recovery: not back to idle latency within 30 s")
    else:
        print(f"recovery: back to idle latency {recovered_after:.2f} s after the burst")
    verdicts = {
        "only 200/429/503": unexpected == 0,
        "Retry-After on every refusal": burst.missing_retry_after == 0,
        "p99 of the 200s within the deadline": bool(burst.ok_ms)
        and percentile(burst.ok_ms, 0.99) <= args.timeout_ms,
        "RSS within its bound": peak <= bound,
        f"recovered within {RECOVERY_LIMIT_S:g} s": recovered_after is not None
        and recovered_after <= RECOVERY_LIMIT_S,
    }
    for name, met in verdicts.items():
        print(f"  {'met' if met else 'NOT MET'}: {name}")
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
